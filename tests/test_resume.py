"""Stopping and rerunning: Ctrl-C and SIGTERM save where the run is, every rerun continues exactly
(with a time budget, from a fine-tune), a finished run says there is nothing left to do, and the log
keeps the trajectory that a checkpoint holds."""

import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import ROOT, SHAKESPEARE, TINY, run, script_in_this_process

from support.ckpt import load as load_checkpoint

FAST = [*TINY, "--eval_interval=1000", "--peak_flops=1e12"]


def log_of(out) -> list[dict]:
    with open(out / "log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def losses(out) -> dict[int, float]:
    return {e["iter"]: e["loss"] for e in log_of(out) if "loss" in e}


class Job:
    """A command started in a session of its own, its output read line by line as it comes. On
    leaving the `with` block whatever is left of it is killed, torchrun's workers too (each runs in
    a session of its own); a run that outlives `limit` seconds is killed as well, and fails."""

    def __init__(self, cmd, limit=120, env=None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.cmd, self.lines, self.workers, self.signalled = cmd, [], {}, 0.0
        self.timer = threading.Timer(limit, self.kill)
        self.timer.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.kill()

    def wait_for(self, prefix: str) -> str:
        """Read the output up to the first line that starts with prefix."""
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r}:\n{''.join(self.lines)[-3000:]}")

    def find_workers(self) -> dict[int, int]:
        """torchrun's workers, rank -> pid (each in a session of its own)."""
        pids = [int(pid) for f in glob.glob(f"/proc/{self.proc.pid}/task/*/children")
                for pid in open(f).read().split()]
        for pid in pids:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            self.workers[int(env[b"RANK"])] = pid
        return self.workers

    def signal(self, *signals, pid=None):
        """Send the signals (to the command, or to pid), one after the other."""
        self.signalled = time.monotonic()
        for sig in signals:
            os.kill(pid or self.proc.pid, sig)

    def finish(self) -> subprocess.CompletedProcess:
        self.lines += self.proc.stdout.readlines()
        code = self.proc.wait()
        self.seconds = time.monotonic() - self.signalled
        return subprocess.CompletedProcess(self.cmd, code, "".join(self.lines), "")

    def kill(self):
        for pid in (self.proc.pid, *self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def interrupt(cmd, after_line: str, signals=(signal.SIGINT,)) -> subprocess.CompletedProcess:
    """Start a run, and once it prints a line starting with after_line, send it the signals."""
    with Job(cmd) as job:
        job.wait_for(after_line)
        job.signal(*signals)
        p = job.finish()
    # within a few seconds, wherever the run was
    assert job.seconds < 10, (job.seconds, p.stdout[-2000:])
    return p


def train(data, out, *args) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), f"--dataset={data}", f"--out_dir={out}", *FAST,
            *args]


@pytest.mark.parametrize("signals",
                         [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)])
def test_interrupt_saves_and_the_rerun_continues_bit_for_bit(bpe_data, tmp_path, signals):
    # the run would go on for a million steps: it stops where the signal finds it, after step 3
    # at the earliest, and both runs then end 3 steps later. With always_save_checkpoint=False and
    # no checkpoint yet, the weights so far are saved all the same, so that the rerun continues
    args = ["--dropout=0.1", "--always_save_checkpoint=False"]
    p = interrupt(train(bpe_data, tmp_path / "cut", "--max_iters=1000000", *args), "iter 3:",
                  signals)
    # the only save: eval_interval=1000
    stopped = load_checkpoint(str(tmp_path / "cut" / "ckpt.pt"))["iter_num"]
    assert p.returncode == 130 and stopped >= 3 and "saved checkpoint" in p.stdout
    assert f"interrupted at iteration {stopped}: rerun the same command to continue from the " \
           f"checkpoint of iteration {stopped}\n" in p.stdout, p.stdout[-2000:]
    again = run(train(bpe_data, tmp_path / "cut", f"--max_iters={stopped + 3}", *args))
    assert "resuming from" in again.stdout and f"iter {stopped + 1}:" in again.stdout
    # a given peak, 1 TFLOP/s, far above what this model reaches: its MFU is shown
    assert "per process), mfu 0." in again.stdout
    run(train(bpe_data, tmp_path / "whole", f"--max_iters={stopped + 3}", *args))
    # every step, bit for bit
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def step_ms(stdout: str, it: int) -> float:
    return float(re.search(rf"^iter {it}: .*?, ([\d.]+)ms,", stdout, re.M).group(1))


def test_ctrl_c_abandons_a_long_step_and_the_rerun_continues_bit_for_bit(bpe_data, tmp_path):
    # 2,400 micro-steps make a step take seconds, several times what saving and exiting take on a
    # machine of any speed (with 800, a fast machine's step of 1.9 s was under twice the exit's
    # 1.0 s). After the sample at step 1 the run checks for
    # Ctrl-C only in the next step: stopped there, long before that step would end, it drops the
    # step (the batch and dropout masks drawn too), saves step 1's state, and the rerun gives the
    # uninterrupted run's numbers
    args = ["--gradient_accumulation_steps=2400", "--dropout=0.1", "--sample_interval=1",
            "--sample_tokens=4"]
    with Job(train(bpe_data, tmp_path / "cut", "--max_iters=1000000", *args)) as job:
        job.wait_for("sample at step 1:")
        job.signal(signal.SIGINT)
        p = job.finish()
    assert p.returncode == 130 and "iter 2:" not in p.stdout, p.stdout[-2000:]
    assert job.seconds < step_ms(p.stdout, 1) / 1000 / 2, (job.seconds, p.stdout[-2000:])
    assert "interrupted at iteration 1: rerun the same command to continue from the checkpoint " \
           "of iteration 1\n" in p.stdout, p.stdout[-2000:]
    assert load_checkpoint(str(tmp_path / "cut" / "ckpt.pt"))["iter_num"] == 1
    run(train(bpe_data, tmp_path / "cut", "--max_iters=2", *args))
    run(train(bpe_data, tmp_path / "whole", "--max_iters=2", *args))
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    cut, whole = (load_checkpoint(str(tmp_path / d / "ckpt.pt"))["model"] for d in ("cut", "whole"))
    assert all(torch.equal(cut[k], whole[k]) for k in whole)


@pytest.fixture(scope="module")
def long_val(tmp_path_factory):
    """A 320-token BPE dataset whose val split is 90% of three copies of tinyshakespeare (millions
    of tokens): the final report of a tiny model takes a while."""
    from data.prepare import prepare

    src = tmp_path_factory.mktemp("long_val") / "corpus.txt"
    src.write_text(SHAKESPEARE.read_text(encoding="utf-8") * 3, encoding="utf-8")
    prepare([str(src)], str(src.parent / "data"), "bpe", 320, val_fraction=0.9, num_proc=1,
            progress=False)
    return src.parent / "data"


def test_ctrl_c_during_the_final_report_leaves_it_out(long_val, tmp_path):
    # the report starts once the last step is saved; Ctrl-C stops it at once, says so, and leaves
    # the checkpoint as it was
    out = tmp_path / "o"
    p = interrupt(train(long_val, out, "--max_iters=2", "--final_eval=True"), "final report:")
    assert p.returncode == 130, p.stdout[-2000:]
    assert f"interrupted: the final report is left out; the checkpoint is saved, and eval.py " \
           f"--checkpoint={out} --input={long_val} computes it\n" in p.stdout, p.stdout[-2000:]
    assert "final val" not in p.stdout and "Traceback" not in p.stdout, p.stdout[-2000:]
    assert load_checkpoint(str(out / "ckpt.pt"))["iter_num"] == 2
    assert not any("final_val_loss" in e for e in log_of(out))


def test_interrupt_keeps_the_best_checkpoint_when_only_the_best_is_saved(bpe_data, tmp_path):
    # always_save_checkpoint=False keeps the weights with the best val loss: Ctrl-C must not replace
    # them
    p = interrupt(train(bpe_data, tmp_path / "o", "--max_iters=1000", "--eval_interval=3",
                        "--always_save_checkpoint=False"), "iter 4:")
    state = load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))
    assert p.returncode == 130 and state["iter_num"] % 3 == 0
    assert state["best_val_loss"] == min(e["val_loss"] for e in log_of(tmp_path / "o")
                                         if "val_loss" in e)
    assert f"continue from the checkpoint of iteration {state['iter_num']}, kept as the best " \
           f"(val loss {state['best_val_loss']:.4f})" in p.stdout


@pytest.mark.parametrize("where", ["evaluation", "sample"])
def test_interrupt_stops_an_evaluation_or_a_sample_at_once(bpe_data, tmp_path, where):
    # the first evaluation (or sample) would take minutes; the run is in it once the line before
    # it is out. An evaluation cut off is not logged
    out = tmp_path / "o"
    if where == "evaluation":
        p = interrupt(train(bpe_data, out, "--eval_iters=1000000"), "device:")
        assert "interrupted at iteration 0: no step was finished, nothing is saved" in p.stdout
        assert "step 0:" not in p.stdout
        # nothing was written, so out_dir was never made: no empty folder is left behind
        assert not out.exists()
    else:
        p = interrupt(train(bpe_data, out, "--sample_interval=1", "--sample_tokens=1000000"),
                      "step 0:")
        # the sample ends, and the step after it stops before its first micro-step
        assert "sample at step 0:" in p.stdout and "iter 1:" not in p.stdout
        assert "interrupted at iteration 0: no step was finished, nothing is saved" in p.stdout
        assert not (out / "ckpt.pt").exists()
    assert p.returncode == 130, p.stdout[-2000:]


def test_time_budget_continues_its_clock_and_a_finished_run_stops(bpe_data, tmp_path):
    cmd = train(bpe_data, tmp_path / "o", "--max_iters=1000000", "--max_seconds=3",
                "--warmup_iters=0")
    p = interrupt(cmd, "iter 1:")
    assert p.returncode == 130
    assert load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))["train_seconds"] < 3
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
    cmd = train(bpe_data, tmp_path / "o", "--eval_interval=4")
    # killed after iteration 10 at the earliest: the steps after the last checkpoint are lost
    p = interrupt([*cmd, "--max_iters=1000000"], "iter 10:", [signal.SIGKILL])
    assert p.returncode == -signal.SIGKILL
    end = load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))["iter_num"] + 8
    run([*cmd, f"--max_iters={end}"])
    log = log_of(tmp_path / "o")
    # each once: the lost ones were dropped
    assert [e["iter"] for e in log if "loss" in e] == list(range(1, end + 1))
    assert [e["iter"] for e in log if "val_loss" in e] == list(range(0, end + 1, 4))


def test_settings_come_from_this_call_only(bpe_data, tmp_path, monkeypatch):
    # train.py is a script: run twice in one process (as from a notebook), the second run must not
    # see the first one's settings
    import runpy

    for out, extra in (("a", ["--n_layer=3"]), ("b", [])):
        argv = train(bpe_data, tmp_path / out, "--max_iters=1", *extra)[1:]
        monkeypatch.setattr(sys, "argv", argv)
        with script_in_this_process():
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
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


def torchrun(data, out, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            *train(data, out, "--gradient_accumulation_steps=2", *args)[1:]]


@pytest.mark.parametrize("who", ["every process", "rank 1 alone"])
def test_ctrl_c_under_torchrun_saves_once_every_rank_agrees(bpe_data, tmp_path, who):
    # Ctrl-C in a terminal reaches torchrun, which passes it on to its workers; a signal may also
    # reach one worker alone. Every rank stops after the same step, rank 0 saves, every worker
    # exits with 130 and none is left behind, and the rerun continues the single-process
    # trajectory
    with Job(torchrun(bpe_data, tmp_path / "two", "--max_iters=1000000")) as job:
        job.wait_for("iter 3:")
        workers = job.find_workers()
        if who == "every process":
            # the launcher's process group, as a terminal's Ctrl-C does
            job.signal(signal.SIGINT, pid=-job.proc.pid)
        else:
            job.signal(signal.SIGINT, pid=workers[1])
        p = job.finish()
        alive = [pid for pid in workers.values() if os.path.exists(f"/proc/{pid}")]
    assert sorted(workers) == [0, 1] and not alive, p.stdout[-3000:]
    assert job.seconds < 15, (job.seconds, p.stdout[-3000:])
    stopped = load_checkpoint(str(tmp_path / "two" / "ckpt.pt"))["iter_num"]
    assert stopped >= 3 and p.stdout.count("interrupted at iteration") == 1, p.stdout[-3000:]
    if who == "rank 1 alone":
        # torchrun lists each worker that exited with a status other than 0
        codes = re.findall(r"rank\s*: (\d) \(local_rank.*\n\s*exitcode\s*: (-?\d+)", p.stdout)
        assert sorted(codes) == [("0", "130"), ("1", "130")], p.stdout[-3000:]
        return
    assert "Sending process" in p.stdout and "closing signal SIGINT" in p.stdout
    end = f"--max_iters={stopped + 2}"
    p = run(torchrun(bpe_data, tmp_path / "two", end))
    assert "resuming from" in p.stdout and f"iter {stopped + 1}:" in p.stdout
    run(train(bpe_data, tmp_path / "one", "--gradient_accumulation_steps=2", end))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one.keys() == two.keys() and all(abs(one[i] - two[i]) < 1e-5 for i in one)


def test_ctrl_c_abandons_a_long_step_under_torchrun(bpe_data, tmp_path):
    # the same under torchrun, Ctrl-C reaching rank 1 alone: every rank abandons the step in the
    # same micro-step (each rank's 1,200 take seconds), and the rerun continues the single-process
    # trajectory
    args = ["--gradient_accumulation_steps=2400", "--sample_interval=1", "--sample_tokens=4"]
    with Job(torchrun(bpe_data, tmp_path / "two", "--max_iters=1000000", *args)) as job:
        job.wait_for("sample at step 1:")
        workers = job.find_workers()
        job.signal(signal.SIGINT, pid=workers[1])
        p = job.finish()
        alive = [pid for pid in workers.values() if os.path.exists(f"/proc/{pid}")]
    assert sorted(workers) == [0, 1] and not alive, p.stdout[-3000:]
    assert "iter 2:" not in p.stdout and p.stdout.count("interrupted at iteration 1:") == 1, \
        p.stdout[-3000:]
    assert job.seconds < step_ms(p.stdout, 1) / 1000, (job.seconds, p.stdout[-3000:])
    assert load_checkpoint(str(tmp_path / "two" / "ckpt.pt"))["iter_num"] == 1
    run(torchrun(bpe_data, tmp_path / "two", "--max_iters=2", *args))
    run(train(bpe_data, tmp_path / "one", "--max_iters=2", *args))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one.keys() == two.keys() and all(abs(one[i] - two[i]) < 1e-5 for i in one)


# a test file that runs train.py in the pytest process, as tests/test_cli.py and
# tests/test_properties.py do, for a million steps; the test after it leaves a file behind
IN_PROCESS = """
import runpy
import sys
from pathlib import Path

from test_cli import outcome
from test_properties import in_process, run_train


def test_a_long_run():
    if {helper!r} == "outcome":
        sys.argv = ["train.py", *{argv!r}]
        outcome(lambda: runpy.run_path({train!r}, run_name="__main__"))
    else:
        in_process(lambda: run_train({argv!r}), seconds=600)


def test_the_next_one():
    Path({ran!r}).touch()
"""


@pytest.mark.parametrize("helper", ["outcome", "in_process"])
def test_ctrl_c_stops_pytest_while_a_test_runs_train_in_its_process(bpe_data, tmp_path, helper):
    # train.py's handler turns Ctrl-C into a checkpoint and exit status 130: in pytest's process
    # that must still stop pytest, not fail the one test and go on to the next
    out, ran = tmp_path / "o", tmp_path / "the next test ran"
    argv = train(bpe_data, out, "--max_iters=1000000")[2:]
    tests = tmp_path / "test_in_process.py"
    tests.write_text(IN_PROCESS.format(helper=helper, argv=argv, train=str(ROOT / "train.py"),
                                       ran=str(ran)))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
           f"--basetemp={tmp_path / 'base'}", f"--rootdir={tmp_path}"]
    with Job(cmd, limit=300, env={"PYTHONPATH": str(ROOT / "tests")}) as job:
        # train.py is in its loop once its first step is logged (its output goes to a buffer)
        log = out / "log.jsonl"
        while not (log.exists() and '"loss"' in log.read_text()):
            assert job.proc.poll() is None, job.finish().stdout[-3000:]
            time.sleep(0.05)
        job.signal(signal.SIGINT)
        # pytest's "!!! KeyboardInterrupt !!!"
        job.wait_for("!!!")
        seconds = time.monotonic() - job.signalled
        p = job.finish()
    assert p.returncode == pytest.ExitCode.INTERRUPTED and "KeyboardInterrupt" in p.stdout, \
        p.stdout[-3000:]
    assert not ran.exists() and seconds < 10, (seconds, p.stdout[-3000:])
