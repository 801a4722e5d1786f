"""The optimizers and schedules train.py offers: Muon beside AdamW (support/optim.py) and the
warmup-stable-decay schedule. Muon takes exactly the blocks' matrices, resumes bit for bit after
Ctrl-C, gives the same losses under torchrun as in one process, and a checkpoint of one optimizer is
not resumed with the other."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, TINY, assert_no_gloo_threads, run, thread_probe

from model import GPT, GPTConfig
from support.ckpt import load as load_checkpoint
from support.optim import MuonWithAdamW

MUON = ["--optimizer=muon", "--muon_lr=2e-2", "--eval_interval=1000", "--dropout=0.1"]


def train(data, out, *args) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"--dataset={data}", f"--out_dir={out}", *TINY,
            *args]


def log_of(out) -> list[dict]:
    with open(out / "log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def losses(out) -> dict[int, float]:
    return {e["iter"]: e["loss"] for e in log_of(out) if "loss" in e}


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest(capsys):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64))
    opt = MuonWithAdamW(model, 0.02, 0.95, 0.1, 1e-3, (0.9, 0.95), "cpu")
    muon = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    adamw = {id(p) for g in opt.adamw.param_groups for p in g["params"]}
    blocks = {id(p) for n, p in model.named_parameters() if n.startswith("transformer.h.")
              and p.dim() == 2}
    assert muon == blocks and len(blocks) == 2 * 4
    # every other parameter once: the embeddings (lm_head is tied to wte), biases and gains
    assert not muon & adamw and muon | adamw == {id(p) for p in model.parameters()}
    # the schedule scales each group to its own peak
    assert [g["lr_scale"] for g in opt.muon.param_groups] == [pytest.approx(20.0)]
    assert all(g.get("lr_scale", 1.0) == 1.0 for g in opt.adamw.param_groups)


def test_muon_resumes_bit_for_bit_after_ctrl_c(bpe_data, tmp_path):
    run(train(bpe_data, tmp_path / "whole", "--max_iters=16", *MUON))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(train(bpe_data, tmp_path / "cut", "--max_iters=16", *MUON), cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the signal lands while the run is at step 5 or a little later: the moment is the test's
    for line in proc.stdout:
        if line.startswith("iter 5:"):
            proc.send_signal(signal.SIGINT)
            break
    out = line + proc.stdout.read()
    assert proc.wait(timeout=120) == 130 and "saved checkpoint" in out, out[-2000:]
    stopped = load_checkpoint(str(tmp_path / "cut" / "ckpt.pt"))
    assert 5 <= stopped["iter_num"] < 16 and set(stopped["optimizer"]) == {"muon", "adamw"}
    again = run(train(bpe_data, tmp_path / "cut", "--max_iters=16", *MUON))
    assert f"iter {stopped['iter_num'] + 1}:" in again.stdout
    # every step, bit for bit: Muon's momentum, AdamW's moments and the random states all resumed
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_muon_under_torchrun_matches_one_process(tmp_path, data_dir):
    common = [f"--dataset={data_dir}", "--max_iters=4", *TINY, *MUON[:3], "--dropout=0.0"]
    common = [a for a in common if not a.startswith("--gradient_accumulation_steps")]
    run("train.py", f"--out_dir={tmp_path / 'one'}", "--gradient_accumulation_steps=4", *common)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "train.py")]
    run(torchrun + [f"--out_dir={tmp_path / 'two'}", "--gradient_accumulation_steps=4", *common])
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == 4 and one.keys() == two.keys()
    for i in one:
        assert two[i] == pytest.approx(one[i], abs=1e-4)
    w1 = load_checkpoint(str(tmp_path / "one/ckpt.pt"))["model"]
    w2 = load_checkpoint(str(tmp_path / "two/ckpt.pt"))["model"]
    # Muon orthogonalises in bfloat16: a last-bit difference in the all-reduced gradient can round
    # one element differently, so the weights agree to a few 1e-4, not bitwise
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-3


def test_a_checkpoint_is_not_resumed_with_the_other_optimizer(bpe_data, tmp_path):
    run(train(bpe_data, tmp_path / "o", "--max_iters=2"))
    before = (tmp_path / "o" / "ckpt.pt").read_bytes()
    p = run(train(bpe_data, tmp_path / "o", "--max_iters=4", "--optimizer=muon"), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'o' / 'ckpt.pt'} was trained with optimizer=adamw, but "
        f"optimizer=muon is set: set optimizer=adamw to resume, or use another out_dir")
    assert (tmp_path / "o" / "ckpt.pt").read_bytes() == before


def test_wsd_holds_the_peak_then_falls_linearly_to_min_lr(bpe_data, tmp_path):
    run(train(bpe_data, tmp_path / "o", "--max_iters=12", "--lr_decay_iters=12",
              "--warmup_iters=2", "--lr_schedule=wsd", "--wsd_decay=0.5", "--learning_rate=1e-3",
              "--min_lr=1e-4", "--eval_interval=1000"))
    lr = {e["iter"]: e["lr"] for e in log_of(tmp_path / "o") if "loss" in e}
    # iteration i's log line shows the rate of step i-1; steps 2..7 are the held peak (the decay
    # takes the last half of the 10 steps after warmup), then a straight line down to min_lr
    assert [lr[i] for i in range(3, 9)] == [pytest.approx(1e-3)] * 6
    falls = [lr[i] - lr[i + 1] for i in range(8, 12)]
    assert falls == [pytest.approx(falls[0])] * 4 and falls[0] > 0
    assert lr[12] == pytest.approx(1e-4 + 0.2 * 9e-4)


def test_zero1_gives_ddps_losses_and_resumes_exactly_in_one_process(tmp_path, data_dir):
    common = [f"--dataset={data_dir}", *TINY, "--gradient_accumulation_steps=4",
              "--eval_interval=1000"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "train.py")]
    run(torchrun + [f"--out_dir={tmp_path / 'ddp'}", "--max_iters=6", *common])
    env, threads_at_exit = thread_probe(tmp_path / "probe")
    p = run(torchrun + [f"--out_dir={tmp_path / 'zero'}", "--max_iters=6", "--zero_stage=1",
                        *common], env=env)
    # each process steps half of the parameters with the same AdamW: the same numbers, bit for bit
    assert "2 process(es)" in p.stdout and losses(tmp_path / "zero") == losses(tmp_path / "ddp")
    # the sharded optimizer let its process group go too
    assert_no_gloo_threads(threads_at_exit())
    # the checkpoint holds the whole optimizer state, gathered: one process carries it on
    run(torchrun + [f"--out_dir={tmp_path / 'cut'}", "--max_iters=3", "--zero_stage=1", *common])
    run("train.py", f"--out_dir={tmp_path / 'cut'}", "--max_iters=6", *common)
    ddp, cut = losses(tmp_path / "ddp"), losses(tmp_path / "cut")
    assert ddp.keys() == cut.keys() == set(range(1, 7))
    for i in ddp:
        assert cut[i] == pytest.approx(ddp[i], abs=1e-5)


@pytest.mark.parametrize("settings", [["--optimizer=sgd"], ["--lr_schedule=linear"],
                                      ["--wsd_decay=0"], ["--muon_momentum=1.0"], ["--muon_lr=-1"],
                                      ["--zero_stage=2"], ["--zero_stage=1", "--optimizer=muon"]])
def test_bad_optimizer_settings_are_one_line(tmp_path, bpe_data, settings):
    p = run(train(bpe_data, tmp_path / "o", *settings), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: {settings[0][2:].split('=')[0]}")
    assert not (tmp_path / "o").exists()


def test_the_muon_config_is_nanogpts_char_recipe_with_muon():
    base, muon = (ROOT / "config" / f"train_shakespeare_char_cpu{s}.py" for s in ("", "_muon"))
    assert muon.exists()
    ours, theirs = {}, {}
    exec(base.read_text(encoding="utf-8"), {}, theirs)
    exec(muon.read_text(encoding="utf-8"), {}, ours)
    assert ours.pop("optimizer") == "muon" and "optimizer" not in theirs
    changed = {k for k in ours if ours[k] != theirs.get(k) and not k.startswith("__")}
    assert changed <= {"muon_lr", "muon_momentum", "out_dir", "wandb_run_name"}, changed
