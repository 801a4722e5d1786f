"""HellaSwag while training (train.py's hellaswag_interval): scored over the processes by the code
eval.py uses, so that a checkpoint's logged accuracy is the number eval.py gives for it."""

import json
import random
import re
import sys

import pytest
from conftest import ROOT, TINY, run, sample_text


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Seven HellaSwag-shaped examples from Shakespeare's lines: a line as the context, the line
    that follows it as the right ending, and three strings of letters the text hardly uses as the
    wrong ones, so that a model a few steps old gets most of them right on every process. Seven:
    two processes take turns unevenly."""
    lines = [line for line in sample_text(20_000).splitlines() if len(line) > 20]
    path = tmp_path_factory.mktemp("hellaswag") / "hs.jsonl"
    rng, rows = random.Random(0), []
    for i in range(7):
        ctx, right = lines[10 * i], lines[10 * i + 1]
        endings = ["".join(rng.choice("qxzjQXZJ") for _ in right) for _ in range(3)]
        endings.insert(i % 4, right)
        rows.append(json.dumps(dict(ctx=ctx, endings=endings, label=i % 4)))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_hellaswag_during_training_is_evals_number_under_torchrun(bpe_data, tmp_path, examples):
    out = tmp_path / "o"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "train.py")]
    p = run(torchrun + [f"--dataset={bpe_data}", f"--out_dir={out}", *TINY, "--max_iters=6",
                        "--eval_interval=1000", "--hellaswag_interval=4", f"--hellaswag={examples}"])
    logged = {e["iter"]: e["hellaswag"] for e in map(json.loads, open(out / "log.jsonl"))
              if "hellaswag" in e}
    # at the start, every hellaswag_interval, and at the end
    assert sorted(logged) == [0, 4, 6]
    assert re.search(r"step 6: hellaswag acc_norm [0-9.]+ \(\d/7\)", p.stdout)
    # the checkpoint at the end (iteration 6), scored alone by eval.py
    e = run("eval.py", f"--checkpoint={out}", f"--hellaswag={examples}", "--device=cpu")
    right = int(re.search(r"hellaswag: (\d+)/7 acc_norm", e.stdout).group(1))
    assert logged[6] == pytest.approx(right / 7)
    # right on both processes' shares: a count left unsummed would show
    assert right >= 5


def test_a_tokenizer_that_cannot_encode_hellaswag_is_one_line(tmp_path, examples):
    text = tmp_path / "abc.txt"
    text.write_text("abc cab bca\n" * 300, encoding="utf-8")
    run("data/prepare.py", f"--input={text}", f"--out_dir={tmp_path / 'chars'}", "--tokenizer=char")
    p = run("train.py", f"--dataset={tmp_path / 'chars'}", f"--out_dir={tmp_path / 'o'}", *TINY,
            "--hellaswag_interval=2", f"--hellaswag={examples}", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: HellaSwag example 1 cannot be encoded by the char tokenizer")
    assert not (tmp_path / "o").exists()
