"""eval.py: its loss equals train.py's final report and transformers' perplexity, its HellaSwag
scores equal a direct computation of build-nanogpt's method, and bad input ends in one line."""

import json
import math
import re
import sys

import pytest
import torch
from conftest import ROOT, TINY, run, sample_text
from torch.nn import functional as F

from data.tokenizer import get_gpt2_tokenizer

transformers = pytest.importorskip("transformers")
BLOCK = 64  # the windows' length in tokens; the model below has one position more


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    """A small random transformers GPT-2 with GPT-2's vocabulary, saved with save_pretrained."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=BLOCK + 1)
    model = transformers.GPT2LMHeadModel(config).eval()
    path = tmp_path_factory.mktemp("hf")
    model.save_pretrained(path)
    return model, path


def measures(stdout: str) -> dict[str, float]:
    found = re.findall(r"^([a-z/]+):\s+([\d.]+)$", stdout, re.M)
    return {name: float(value) for name, value in found}


def test_a_data_folder_gives_train_py_final_report(tmp_path, data_dir):
    out = tmp_path / "out"
    p = run("train.py", *TINY, f"--dataset={data_dir}", f"--out_dir={out}", "--max_iters=4",
            "--eval_interval=4", "--final_eval=True")
    final = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    got = run("eval.py", f"--checkpoint={out}", f"--input={data_dir}", "--device=cpu").stdout
    m = measures(got)
    assert m["nats/token"] == pytest.approx(final["final_val_loss"], abs=5e-5)
    assert m["nats/char"] == pytest.approx(final["val_nats_per_char"], abs=5e-5)
    assert m["bits/byte"] == pytest.approx(final["val_bits_per_byte"], abs=5e-5)
    count = re.search(r"final val over all ([\d,]+) tokens", p.stdout).group(1)
    assert f"(val split): {count} tokens" in got
    fixture = "tests/fixtures/pre_redesign"  # a checkpoint and its data folder, 38,552 train tokens
    train = run("eval.py", f"--checkpoint={fixture}/ckpt.pt", f"--input={fixture}/data",
                "--split=train", "--device=cpu").stdout
    assert "(train split): 38,551 tokens" in train


def test_the_final_report_is_on_the_weights_kept(tmp_path, data_dir):
    """Keeping the best val loss, ckpt.pt holds an earlier step's weights when the last evaluation is
    worse: the final report describes those, as eval.py does, not the last step's."""
    out = tmp_path / "out"
    run("train.py", *TINY, f"--dataset={data_dir}", f"--out_dir={out}", "--max_iters=2",
        "--eval_interval=2")
    # a learning rate far too high: the val loss rises, and the step-2 weights stay
    p = run("train.py", *TINY, f"--dataset={data_dir}", f"--out_dir={out}", "--max_iters=4",
            "--eval_interval=2", "--learning_rate=1.0", "--warmup_iters=0", "--grad_clip=0",
            "--always_save_checkpoint=False", "--final_eval=True")
    vals = [e["val_loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if "val_loss" in e]
    assert vals[-1] > vals[-2], vals  # the fixture's premise: the last evaluation is not the best
    assert "saved checkpoint" not in p.stdout
    assert "the final report is on ckpt.pt's weights: step 2's" in p.stdout
    final = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    m = measures(run("eval.py", f"--checkpoint={out}", f"--input={data_dir}", "--device=cpu").stdout)
    assert m["nats/token"] == pytest.approx(final["final_val_loss"], abs=5e-5)


def test_a_text_file_gives_transformers_perplexity(tmp_path, hf_gpt2):
    model, path = hf_gpt2
    text = "Ünïcödé — “quotes” 日本語 🙂\n" + sample_text(3000)
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    m = measures(run("eval.py", f"--checkpoint={path}", f"--input={tmp_path / 'text.txt'}",
                     f"--block_size={BLOCK}", "--batch_size=3", "--device=cpu").stdout)
    ids = torch.tensor(get_gpt2_tokenizer().encode(text))
    nats = 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, BLOCK):  # consecutive windows of BLOCK + 1 tokens
            x = ids[None, start : start + BLOCK + 1]
            # the loss is the mean over the window's targets
            nats += model(input_ids=x, labels=x).loss.item() * (x.size(1) - 1)
    assert m["perplexity"] == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-5)
    assert m["nats/char"] == pytest.approx(nats / len(text), abs=1e-4)
    assert m["bits/byte"] == pytest.approx(nats / len(text.encode("utf-8")) / math.log(2), abs=1e-4)


def ending_losses(model, ex: dict) -> list[tuple[float, float]]:
    """(total, mean) loss over each ending's tokens: one full forward pass per ending, context cut
    on the left."""
    tok, out = get_gpt2_tokenizer(), []
    for ending in ex["endings"]:
        end = tok.encode(" " + ending)
        row = (tok.encode(ex["ctx"]) + end)[-model.config.n_positions :]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row])).logits[0]
        losses = F.cross_entropy(logits[-len(end) - 1 : -1], torch.tensor(end), reduction="none")
        out.append((losses.sum().item(), losses.mean().item()))
    return out


def test_hellaswag_scores_total_and_mean_ending_losses(tmp_path, hf_gpt2):
    model, path = hf_gpt2
    # 1 token and 9-10: the total favours the first
    endings = ["a", "went to the market to buy bread and cheese",
               "slept all through the long and quiet night",
               "ran away as fast as his legs could carry him"]
    # the first context is longer than the model's: it is cut on the left
    contexts = [sample_text(600), "The man", "ROMEO: Wherefore art thou", "She opened the door and"]
    examples = [dict(ctx=c, endings=endings[i:] + endings[:i]) for i, c in enumerate(contexts)]
    acc = 0
    for ex in examples:
        losses = ending_losses(model, ex)
        # the lowest mean: acc_norm is 1, acc is not
        ex["label"] = min(range(4), key=lambda i: losses[i][1])
        acc += ex["label"] == min(range(4), key=lambda i: losses[i][0])
    assert acc < len(examples)
    lines = [json.dumps(ex) for ex in examples] + ["not an example: --limit=4 never reads it"]
    (tmp_path / "h.jsonl").write_text("\n".join(lines) + "\n")
    p = run("eval.py", f"--checkpoint={path}", f"--hellaswag={tmp_path / 'h.jsonl'}", "--limit=4",
            "--device=cpu")
    assert f"hellaswag: 4/4 acc_norm 1.0000, acc {acc / 4:.4f}" in p.stdout


def test_bad_input_gives_one_line(tmp_path, data_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 0}\n'
                   '{"ctx": "a", "endings": ["b", "c"], "label": 0}\n')
    # bytes 128-255, no NUL among them: mostly invalid UTF-8
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(128, 256)) * 100)
    # a checkpoint with a BPE tokenizer of its own, not the data's GPT-2
    fixture = "tests/fixtures/pre_redesign/ckpt.pt"
    for args, words in [
            (["--hellaswag=missing.jsonl"], "cannot read missing.jsonl"),
            ([f"--hellaswag={bad}"], "line 2 is not a HellaSwag example"),
            ([f"--checkpoint={fixture}", f"--input={data_dir}"],
             f"{fixture} was trained with a different tokenizer (bpe) than {data_dir} was prepared "
             f"with (gpt2)"),
            (["--input=missing.txt", "--batch_size=0"], "--batch_size, --block_size and --limit"),
            ([f"--input={binary}"], f"{binary} is not text (it is mostly invalid UTF-8)"),
            (["--input=missing.txt", "--split=test"], "argument --split: invalid choice: 'test'")]:
        p = run("eval.py", *args, "--device=cpu", check=False)
        assert p.returncode == 1 and words in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    # the example checks are no asserts: python -O keeps them
    p = run([sys.executable, "-O", str(ROOT / "eval.py"), f"--hellaswag={bad}", "--device=cpu"],
            check=False)
    assert p.returncode == 1 and "line 2 is not a HellaSwag example" in p.stderr


def test_padded_vocabulary_rows_never_enter_the_loss(tmp_path):
    # a model of 320 rows for a tokenizer of 300 tokens, its 20 padded rows made the likeliest by
    # far: eval.py's loss is the softmax over the 300 real tokens, computed here directly
    from support import ckpt
    from support.ckpt import load_for_inference

    fixture = str(ROOT / "tests/fixtures/pre_redesign/ckpt.pt")
    model, tok, _, _ = load_for_inference(fixture, "cpu")
    assert (tok.n_vocab, model.config.vocab_size) == (300, 320)
    text = sample_text(2000)
    with torch.no_grad():
        # the text's mean last hidden state, scaled to give the padded rows a logit of about 20
        h = model.hidden_states(torch.tensor([tok.encode(text)[:32]]))[0].mean(0)
        model.lm_head.weight[300:] = h * 20 / h.dot(h)
    state = ckpt.load(fixture)
    state["model"] = model.state_dict()
    ckpt.save(state, str(tmp_path / "ckpt.pt"))
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    got = measures(run("eval.py", f"--checkpoint={tmp_path}", f"--input={tmp_path / 'text.txt'}",
                       "--device=cpu").stdout)
    ids, block = torch.tensor(tok.encode(text)), model.config.block_size
    nats = padded = 0.0
    with torch.no_grad():
        # consecutive windows of block + 1 tokens
        for start in range(0, len(ids) - 1, block):
            x = ids[None, start : start + block + 1]
            logits, _ = model(x[:, :-1], x[:, 1:])
            nats += F.cross_entropy(logits[0, :, :300], x[0, 1:], reduction="sum").item()
            padded += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
    assert got["nats/token"] == pytest.approx(nats / (len(ids) - 1), abs=1e-4)
    # the padded rows would have taken most of the probability
    assert padded > nats + len(ids)
