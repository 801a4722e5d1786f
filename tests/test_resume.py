"""Stopping and rerunning: Ctrl-C and SIGTERM save where the run is, every rerun continues exactly
(with a time budget, from a fine-tune), a finished run says there is nothing left to do, and the log
keeps the trajectory that a checkpoint holds."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY, run

from support.ckpt import load as load_checkpoint

FAST = [*TINY, "--eval_interval=1000", "--peak_flops=1e12"]


def log_of(out) -> list[dict]:
    with open(out / "log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def losses(out) -> dict[int, float]:
    return {e["iter"]: e["loss"] for e in log_of(out) if "loss" in e}


def interrupt(cmd, after_line: str, delay: float,
              signals=(signal.SIGINT,)) -> subprocess.CompletedProcess:
    """Start a run, and once it prints a line starting with after_line, wait `delay` s and send the
    signals."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(after_line):
            time.sleep(delay)
            for sig in signals:
                proc.send_signal(sig)
                time.sleep(0.001)
            break
    lines += proc.stdout.readlines()
    return subprocess.CompletedProcess(cmd, proc.wait(timeout=120), "".join(lines), "")


def train(data, out, *args) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"--dataset={data}", f"--out_dir={out}", *FAST,
            *args]


@pytest.mark.parametrize("signals",
                         [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)])
def test_interrupt_saves_and_the_rerun_continues_bit_for_bit(bpe_data, tmp_path, signals):
    run(train(bpe_data, tmp_path / "whole", "--max_iters=30", "--dropout=0.1"))
    # any moment: within a step, between steps, during a log line
    delay = random.uniform(0, 0.2)
    p = interrupt(train(bpe_data, tmp_path / "cut", "--max_iters=30", "--dropout=0.1"), "iter 3:",
                  delay, signals)
    assert p.returncode == 130 and "interrupted at iteration" in p.stdout, (delay, p.stdout[-2000:])
    # the only save: eval_interval=1000
    stopped = load_checkpoint(str(tmp_path / "cut" / "ckpt.pt"))["iter_num"]
    assert 3 <= stopped < 30 and "saved checkpoint" in p.stdout
    again = run(train(bpe_data, tmp_path / "cut", "--max_iters=30", "--dropout=0.1"))
    assert "resuming from" in again.stdout and f"iter {stopped + 1}:" in again.stdout
    # every step, bit for bit
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_interrupt_keeps_the_best_checkpoint_when_only_the_best_is_saved(bpe_data, tmp_path):
    # always_save_checkpoint=False keeps the weights with the best val loss: Ctrl-C must not replace
    # them
    p = interrupt(train(bpe_data, tmp_path / "o", "--max_iters=1000", "--eval_interval=3",
                        "--always_save_checkpoint=False"), "iter 4:", 0.0)
    assert p.returncode == 130 and "continue from the last checkpoint" in p.stdout
    state = load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))
    assert state["iter_num"] % 3 == 0
    assert state["best_val_loss"] == min(e["val_loss"] for e in log_of(tmp_path / "o")
                                         if "val_loss" in e)


def test_time_budget_continues_its_clock_and_a_finished_run_stops(bpe_data, tmp_path):
    cmd = train(bpe_data, tmp_path / "o", "--max_iters=1000000", "--max_seconds=3",
                "--warmup_iters=0")
    p = interrupt(cmd, "iter 1:", 1.0)
    assert p.returncode == 130
    before = log_of(tmp_path / "o")[-1]
    run(cmd)
    state = load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))
    # one clock over both runs, not a second budget
    assert 3 <= state["train_seconds"] < 4
    resumed = next(e for e in log_of(tmp_path / "o")
                   if "loss" in e and e["iter"] == before["iter"] + 1)
    # the cosine goes on from where it was, not from its peak
    assert resumed["lr"] <= before["lr"]
    log = (tmp_path / "o" / "log.jsonl").read_text()
    # the same command once more: nothing left to do
    again = run(cmd)
    assert "nothing left to do" in again.stdout and "iter " not in again.stdout
    assert (tmp_path / "o" / "log.jsonl").read_text() == log


def test_finetune_rerun_resumes_its_own_checkpoint(tmp_path, data_dir):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "hf")
    cmd = ["train.py", f"--dataset={data_dir}", f"--out_dir={tmp_path / 'ft'}",
           f"--init_from={tmp_path / 'hf'}", *FAST, "--block_size=32"]
    first = run(*cmd, "--max_iters=2")
    assert "initializing from pretrained weights" in first.stdout
    p = run(*cmd, "--max_iters=4")
    assert f"resuming from {tmp_path / 'ft' / 'ckpt.pt'} (a run that began from" in p.stdout
    assert sorted(losses(tmp_path / "ft")) == [1, 2, 3, 4]


def test_log_keeps_the_trajectory_of_the_checkpoint(bpe_data, tmp_path):
    cmd = train(bpe_data, tmp_path / "o", "--max_iters=16", "--eval_interval=4")
    # the last checkpoint is at 8: iterations 9-10 are lost
    p = interrupt(cmd, "iter 10:", 0, [signal.SIGKILL])
    assert p.returncode == -signal.SIGKILL
    run(cmd)
    log = log_of(tmp_path / "o")
    # each once: the lost ones were dropped
    assert [e["iter"] for e in log if "loss" in e] == list(range(1, 17))
    assert [e["iter"] for e in log if "val_loss" in e] == [0, 4, 8, 12, 16]


def test_settings_come_from_this_call_only(bpe_data, tmp_path, monkeypatch):
    # train.py is a script: run twice in one process (as from a notebook), the second run must not
    # see the first one's settings
    import runpy

    for out, extra in (("a", ["--n_layer=3"]), ("b", [])):
        argv = train(bpe_data, tmp_path / out, "--max_iters=1", *extra)[1:]
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert load_checkpoint(str(tmp_path / "a" / "ckpt.pt"))["model_args"]["n_layer"] == 3
    assert load_checkpoint(str(tmp_path / "b" / "ckpt.pt"))["model_args"]["n_layer"] == 2


def test_wandb_logs_offline_and_its_absence_is_one_line(bpe_data, tmp_path):
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    p = run("train.py", f"--dataset={bpe_data}", f"--out_dir={tmp_path / 'o'}", *FAST,
            "--max_iters=2", "--wandb_log=True", "--wandb_project=test", env=env, cwd=tmp_path)
    assert p.returncode == 0 and any((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    stub = tmp_path / "nowandb" / "wandb"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
    p = run("train.py", f"--dataset={bpe_data}", f"--out_dir={tmp_path / 'o2'}", *FAST,
            "--wandb_log=True", env={"PYTHONPATH": str(stub.parent)}, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "error: wandb_log=True needs Weights & Biases: pip install wandb"
    # a bad setting costs nothing and writes nothing
    assert not (tmp_path / "o2").exists()


def test_ctrl_c_under_torchrun_saves_once_every_rank_agrees(bpe_data, tmp_path):
    # Ctrl-C in a terminal reaches torchrun and its workers alike: every rank stops after the same
    # step, rank 0 saves, and the rerun continues the single-process trajectory
    run(train(bpe_data, tmp_path / "one", "--max_iters=16", "--gradient_accumulation_steps=2"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *train(bpe_data, tmp_path / "two", "--max_iters=16",
                  "--gradient_accumulation_steps=2")[1:]]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("iter 3:"):
            # the whole group, as a terminal's Ctrl-C does
            os.killpg(proc.pid, signal.SIGINT)
            break
    out += proc.stdout.readlines()
    proc.wait(timeout=120)
    with contextlib.suppress(ProcessLookupError):
        # nothing of this job may outlive it
        os.killpg(proc.pid, signal.SIGKILL)
    stopped = load_checkpoint(str(tmp_path / "two" / "ckpt.pt"))["iter_num"]
    text = "".join(out)
    assert 3 <= stopped < 16 and text.count("interrupted at iteration") == 1, text[-2000:]
    p = run(cmd)
    assert "resuming from" in p.stdout and f"iter {stopped + 1}:" in p.stdout
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one.keys() == two.keys() and all(abs(one[i] - two[i]) < 1e-5 for i in one)
