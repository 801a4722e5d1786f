"""Fault suite: training survives kill -9, a full disk, a dead rank and bad files, and says what
went wrong.

Every fault and every bad input is counted in conftest.FAULT_FIGURES; the totals print at the end of
the run. The slow parts carry the `faults` marker (pytest -m faults runs only them, -m "not faults"
skips them).
"""

import json
import os
import pickle
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import FAULT_FIGURES as FIG, ROOT, TINY, run, sample_text
from hypothesis import example, given, settings, strategies as st

from configurator import configure
from data.prepare import prepare
from data.shards import read_meta, read_shard
from support.ckpt import load as load_checkpoint

EVAL = 4  # evaluate and checkpoint every 4 iterations, so checkpoints are frequent
PY = sys.executable


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Subprocess environment without matplotlib: train.py plots at every evaluation, which would
    dominate these tiny runs; the scripts are documented to work without it."""
    stub = tmp_path_factory.mktemp("nompl") / "matplotlib"
    stub.mkdir()
    (stub / "__init__.py").write_text(
        "raise ImportError('matplotlib disabled in the fault tests')\n")
    return {"PYTHONPATH": str(stub.parent)}


def train_cmd(data, out, *extra) -> list[str]:
    return [PY, str(ROOT / "train.py"), f"--dataset={data}", f"--out_dir={out}", *TINY,
            f"--eval_interval={EVAL}", "--peak_flops=1e12", *extra]


@pytest.fixture(scope="module")
def trained(bpe_data, tmp_path_factory, env) -> Path:
    """An out_dir holding the checkpoint of 8 iterations."""
    out = tmp_path_factory.mktemp("trained")
    run(train_cmd(bpe_data, out, "--max_iters=8"), env=env)
    return out


def read_log(out) -> list[dict]:
    with open(Path(out) / "log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tmp_files(out) -> set[str]:
    return {n for n in os.listdir(out) if n.endswith(".tmp")} if os.path.isdir(out) else set()


def ckpt_iter(out) -> int | None:
    path = Path(out) / "ckpt.pt"
    return load_checkpoint(str(path))["iter_num"] if path.exists() else None


def evals_at(out, it: int) -> int:
    """How many evaluations of iteration `it` the log holds."""
    if not (Path(out) / "log.jsonl").exists():
        return 0
    return sum(e.get("iter") == it for e in read_log(out) if "val_loss" in e)


def clear_error(p: subprocess.CompletedProcess, *needles: str) -> bool:
    """The contract for bad input: exit code 1, one `error: ...` line naming the problem, no
    traceback."""
    err = p.stderr.strip().splitlines()
    ok = p.returncode == 1 and "Traceback" not in p.stderr and err \
        and err[-1].startswith("error: ") and all(n in err[-1] for n in needles)
    FIG["bad inputs tried"] += 1
    FIG["clear errors given"] += bool(ok)
    assert ok, f"rc={p.returncode}\nstdout:{p.stdout[-1500:]}\nstderr:{p.stderr[-3000:]}"
    return True


class Segment:
    """A training process whose output lines are read by a thread, so the test can watch and kill
    it."""

    def __init__(self, cmd, env):
        self.t0 = time.time()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **env)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))
            self.q.put(line)

    def finish(self, timeout=300):
        self.proc.wait(timeout=timeout)
        self.thread.join()
        return self.proc.returncode

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first_iter(self) -> int | None:
        for _, line in self.lines:
            if line.startswith("iter "):
                return int(line.split()[1].rstrip(":"))
        return None

    def time_of(self, prefix: str) -> float:
        return next(t for t, line in self.lines if line.startswith(prefix)) - self.t0


# --------------------------------------------------------------------------------------------------
# kill -9 at 20 moments, rerun the same command each time

@pytest.mark.faults
def test_kill9_twenty_times_resumes_bitwise(bpe_data, tmp_path, env):
    # ~100 s on 2 shared cores: 22 training processes (a baseline, 20 killed runs, the final rerun).
    max_iters = 2 * EVAL * 20 + 4 * EVAL  # each killed run advances by at most 2 checkpoints
    base = Segment(train_cmd(bpe_data, tmp_path / "base", f"--max_iters={max_iters}",
                             "--eval_iters=30"), env)
    assert base.finish() == 0, base.text()
    # the window for timed kills: from the run's first line (imports done) to its second checkpoint
    span = base.time_of(f"iter {2 * EVAL}:") - base.time_of("tokens per iteration")
    base_log = read_log(tmp_path / "base")
    base_loss = {e["iter"]: e["loss"] for e in base_log if "loss" in e}
    base_eval = {e["iter"]: (e["train_loss"], e["val_loss"]) for e in base_log if "val_loss" in e}
    assert sorted(base_loss) == list(range(1, max_iters + 1))

    rng = random.Random(1337)
    kinds = ["time", "eval", "step", "tmp"] * 5
    rng.shuffle(kinds)
    kinds.remove("tmp")
    # the first fault comes after a checkpoint exists, so every rerun can resume
    kinds.insert(0, "tmp")
    out = tmp_path / "chain"
    # evals long enough to hit
    cmd = train_cmd(bpe_data, out, f"--max_iters={max_iters}", "--eval_iters=30")
    landed = {"in checkpoint write": 0, "in eval": 0}
    resumed_ok = lost = 0
    prev = None
    for kind in kinds:
        start = ckpt_iter(out)
        tmp_before = tmp_files(out)
        target = (start or 0) + 2 * EVAL  # the second evaluation after the resume point
        evals_before = evals_at(out, target)
        seg = Segment(cmd, env)
        t_kill, at_target = None, False
        while seg.proc.poll() is None:
            lines = [seg.q.get_nowait() for _ in range(seg.q.qsize())]
            if kind == "time" and t_kill is None and \
                    any(x.startswith("tokens per iteration") for x in lines):
                t_kill = time.time() + rng.uniform(0, span)
            # its eval and save come next
            reached = any(x.startswith(f"iter {target}:") for x in lines)
            # (a timed kill fires at the target line at the latest, so no run gets past two
            # checkpoints when this run is slower than the baseline was)
            fire = (kind == "time"
                    and ((t_kill is not None and time.time() >= t_kill) or reached)) \
                or (kind == "eval" and reached) \
                or (kind == "step" and any(x.startswith(f"step {target}:") for x in lines)) \
                or (kind == "tmp" and at_target and (
                    tmp_files(out) - tmp_before
                    or any(x.startswith("saved checkpoint") for x in lines)))
            at_target |= reached
            if fire:
                seg.proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        seg.finish()
        assert seg.proc.returncode == -signal.SIGKILL, \
            f"{kind}: the run ended before its fault\n{seg.text()}"
        FIG["faults injected"] += 1
        landed["in checkpoint write"] += bool(tmp_files(out) - tmp_before)
        # killed before its eval ended
        landed["in eval"] += kind == "eval" and evals_at(out, target) == evals_before
        # this run was a rerun after a kill: it must have resumed from the checkpoint
        if prev is not None:
            assert f"resuming from {out / 'ckpt.pt'}" in seg.text(), seg.text()
            assert seg.first_iter() in (None, start + 1), seg.text()
            resumed_ok += 1
        # loads it: a checkpoint is always readable after a kill
        now = ckpt_iter(out)
        # a checkpoint destroyed or rolled back
        lost += start is not None and (now is None or now < start)
        prev = now

    final = Segment(cmd, env)
    assert final.finish() == 0, final.text()
    assert f"resuming from {out / 'ckpt.pt'}" in final.text() and final.first_iter() == prev + 1
    resumed_ok += 1
    FIG["resumed"] += resumed_ok
    assert not tmp_files(out), "a rerun must remove the temporary files of interrupted saves"

    # Every loss any segment logged equals the uninterrupted run's, bit for bit: same seed, same
    # single-threaded CPU kernels, and the checkpoint restores weights, AdamW state and both RNGs
    # exactly.
    log = read_log(out)
    mismatched = [e for e in log if "loss" in e and e["loss"] != base_loss[e["iter"]]]
    mismatched += [e for e in log
                   if "val_loss" in e and (e["train_loss"], e["val_loss"]) != base_eval[e["iter"]]]
    missing = set(base_loss) - {e["iter"] for e in log if "loss" in e}
    lost += len(missing)
    FIG["data lost"] += lost
    print(f"kill -9: {len(kinds)} faults "
          f"({', '.join(f'{kinds.count(k)} {k}' for k in sorted(set(kinds)))}), "
          f"landed {landed}, {resumed_ok} reruns resumed, {len(log)} log entries compared")
    assert not mismatched and not missing and lost == 0, (mismatched[:3], sorted(missing)[:10])
    assert resumed_ok == len(kinds)  # 19 killed reruns and the final one
    assert landed["in checkpoint write"] >= 1 and landed["in eval"] >= 1, landed


# --------------------------------------------------------------------------------------------------
# A full disk during a save

ENOSPC_WRAPPER = """
import errno, os, runpy, sys, torch
calls = [0]
def failing(real, mode):
    def f(*a, **k):
        calls[0] += 1
        if calls[0] >= 2:  # the first checkpoint is written, the second hits a full disk
            if mode == "write":
                a[1].write(b"partial" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)
    return f
mode, script = sys.argv[1], sys.argv[2]
if mode == "fsync":
    os.fsync = failing(os.fsync, mode)
else:
    torch.save = failing(torch.save, mode)
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.faults
@pytest.mark.parametrize("where", ["fsync", "write"])
def test_full_disk_keeps_previous_checkpoint(bpe_data, tmp_path, env, where):
    wrapper = tmp_path / "enospc.py"
    wrapper.write_text(ENOSPC_WRAPPER)
    out = tmp_path / "out"
    cmd = [PY, str(wrapper), where] + train_cmd(bpe_data, out, "--max_iters=20")[1:]
    p = run(cmd, check=False, env=env)
    FIG["faults injected"] += 1
    clear_error(p, "could not write checkpoint", "No space left on device",
                "previous checkpoint is intact")
    assert f"iter {2 * EVAL + 1}:" not in p.stdout, "the run must stop, not continue unsaved"
    assert ckpt_iter(out) == EVAL  # the previous checkpoint is intact and loads
    assert not tmp_files(out)


# --------------------------------------------------------------------------------------------------
# A rank dies under torchrun

def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.faults
def test_dead_rank_stops_the_job_and_rerun_resumes(bpe_data, tmp_path, env):
    # ~25 s: two DDP launches of two processes each
    out = tmp_path / "ddp"
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *train_cmd(bpe_data, out, "--max_iters=40", "--backend=gloo")[1:]]
    seg = Segment(cmd, env)
    try:
        saves = 0
        while saves < 2:  # wait for the checkpoint at iteration 8
            line = seg.q.get(timeout=120)
            saves += line.startswith("saved checkpoint")
        workers = [c for c in _children(seg.proc.pid)]
        ranks = {}
        for w in workers:
            with open(f"/proc/{w}/environ", "rb") as f:
                e = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            ranks[int(e[b"RANK"])] = w
        assert sorted(ranks) == [0, 1], workers
        t0 = time.time()
        os.kill(ranks[1], signal.SIGKILL)
        FIG["faults injected"] += 1
        rc = seg.finish(timeout=120)
        stopped = time.time() - t0
    finally:
        if seg.proc.poll() is None:
            seg.proc.kill()
    print(f"rank 1 killed: the whole job stopped in {stopped:.1f}s (rc {rc})")
    # the whole job stops within seconds: 1.4 s here with the CPU loaded 6-fold, 5.7 s at worst
    assert rc != 0 and stopped < 10 and not _alive(ranks[0])
    start = ckpt_iter(out)
    assert start is not None and start >= 2 * EVAL
    again = Segment(cmd, env)
    assert again.finish() == 0, again.text()
    assert "resuming from" in again.text() and again.first_iter() == start + 1, again.text()
    FIG["resumed"] += 1
    # iterations done twice (before the kill and after the resume) give identical losses
    seen: dict[int, float] = {}
    for e in read_log(out):
        if "loss" in e:
            assert seen.setdefault(e["iter"], e["loss"]) == e["loss"], e
    assert max(seen) == 40


# --------------------------------------------------------------------------------------------------
# Corrupt files: detected at load, never trained on

def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape \
            and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def test_corrupt_checkpoint_is_detected(trained, tmp_path):
    good = (trained / "ckpt.pt").read_bytes()
    original = load_checkpoint(str(trained / "ckpt.pt"))
    rng = random.Random(0)
    bad = tmp_path / "ckpt.pt"
    detected = harmless = 0
    cases = [("flip", rng.randrange(len(good))) for _ in range(40)]
    cases += [("truncate", n) for n in (0, 10, len(good) // 2, len(good) - 1)]
    cases += [("random", 4096), ("text", 0), ("not a checkpoint", 0)]
    for kind, n in cases:
        data = bytearray(good)
        if kind == "flip":
            data[n] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            data = data[:n]
        elif kind == "random":
            data = bytearray(rng.randbytes(n))
        elif kind == "text":
            data = bytearray(b"not a checkpoint\n")
        bad.write_bytes(bytes(data))
        if kind == "not a checkpoint":
            torch.save({"weights": torch.zeros(3)}, bad)
        FIG["bad inputs tried"] += 1
        try:
            ck = load_checkpoint(str(bad))
        except ValueError as e:
            assert str(bad) in str(e) and "\n" not in str(e)
            detected += 1
            FIG["clear errors given"] += 1
            continue
        # loaded: only acceptable when the flip hit bytes that carry nothing (zip alignment padding)
        assert kind == "flip" and _same(ck, original), \
            f"{kind} at {n} loaded silently with changed contents"
        harmless += 1
        # an unchanged checkpoint is not a bad input
        FIG["bad inputs tried"] -= 1
    print(f"checkpoint corruption: {detected} of {len(cases)} detected, {harmless} flips hit "
          f"padding only")
    assert detected >= len(cases) - 8


def test_corrupt_checkpoint_end_to_end(trained, bpe_data, tmp_path, env):
    out = tmp_path / "out"
    out.mkdir()
    data = bytearray((trained / "ckpt.pt").read_bytes())
    # one flipped bit in the middle of the embedding
    with zipfile.ZipFile(trained / "ckpt.pt") as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = \
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    with zipfile.ZipFile(trained / "ckpt.pt") as z:
        with z.open(info) as f:
            # it is the tensor's byte
            assert f.read()[info.file_size // 2] == data[at]
    data[at] ^= 0x10
    (out / "ckpt.pt").write_bytes(bytes(data))
    clear_error(run(train_cmd(bpe_data, out, "--max_iters=12"), check=False, env=env), "corrupt")
    clear_error(run("sample.py", f"--checkpoint={out}", "-m", "5", check=False, env=env), "corrupt")
    assert (out / "ckpt.pt").read_bytes() == bytes(data), \
        "a corrupt checkpoint is left for the user"


def test_corrupt_shard_and_meta_are_detected(bpe_data, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(bpe_data, d)
    shard = d / "train_000.bin"
    good = shard.read_bytes()
    rng = random.Random(1)
    cases = [good[:i] + bytes([good[i] ^ 0x01]) + good[i + 1 :]
             for i in (0, 20, 64, 1000, len(good) - 1)]
    cases += [good[: len(good) // 2], good[:-1], b"", rng.randbytes(len(good)),
              b"\x93NUMPY" + good[6:]]
    for data in cases:
        shard.write_bytes(data)
        FIG["bad inputs tried"] += 1
        with pytest.raises(ValueError, match=str(shard)):
            read_shard(str(shard))
        FIG["clear errors given"] += 1
    shard.write_bytes(good)
    meta_path = d / "meta.json"
    meta = json.loads(meta_path.read_text())
    metas = ["", meta_path.read_text()[:100], "[]", json.dumps({**meta, "vocab_size": "320"}),
             json.dumps({k: v for k, v in meta.items() if k != "splits"}),
             rng.randbytes(300).decode("latin-1")]
    for text in metas:
        meta_path.write_text(text, encoding="latin-1")
        FIG["bad inputs tried"] += 1
        with pytest.raises(ValueError, match="meta.json"):
            read_meta(str(d))
        FIG["clear errors given"] += 1


# --------------------------------------------------------------------------------------------------
# A checkpoint that would run code when unpickled

class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")  # unpickling creates the marker file


def test_malicious_checkpoint_runs_nothing(bpe_data, tmp_path, env):
    control = tmp_path / "control_marker"
    torch.save({"model": Evil(control), "model_args": {}}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)  # proves the plant is live when trusted
    assert control.exists()

    marker = tmp_path / "marker"
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"model": Evil(marker), "model_args": {}, "iter_num": 1}, out / "ckpt.pt")
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"model": Evil(marker), "model_args": {}}, protocol=2))
    for path in (out / "ckpt.pt", raw):
        FIG["bad inputs tried"] += 1
        with pytest.raises(ValueError, match="refusing to load|corrupt"):
            load_checkpoint(str(path))
        FIG["clear errors given"] += 1
    clear_error(run(train_cmd(bpe_data, out, "--max_iters=12"), check=False, env=env),
                "refusing to load")
    clear_error(run(train_cmd(bpe_data, out, "--eval_only=True", "--init_from=resume"), check=False,
                    env=env), "refusing to load")
    clear_error(run("sample.py", f"--checkpoint={out / 'ckpt.pt'}", "-m", "5", check=False,
                    env=env), "refusing to load")
    p = run("export.py", f"--checkpoint={out / 'ckpt.pt'}", f"--out_dir={tmp_path / 'exp'}",
            check=False, env=env)
    clear_error(p, "refusing to load")
    assert not marker.exists(), "unpickling ran code"


# --------------------------------------------------------------------------------------------------
# The spine's bad inputs: one-line error, exit 1, nothing already written lost

def test_bad_data_dirs(tmp_path, env):
    (tmp_path / "empty").mkdir()
    clear_error(run(train_cmd(tmp_path / "missing", tmp_path / "o1"), check=False, env=env),
                "does not exist")
    clear_error(run(train_cmd(tmp_path / "empty", tmp_path / "o2"), check=False, env=env),
                "meta.json")
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be, that is the question. " * 12)
    run("data/prepare.py", f"--input={short}", f"--out_dir={tmp_path / 'short'}", env=env)
    clear_error(run(train_cmd(tmp_path / "short", tmp_path / "o3"), check=False, env=env),
                "block_size")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    clear_error(run("data/prepare.py", f"--input={empty}", f"--out_dir={tmp_path / 'e'}",
                    check=False, env=env), "empty")
    f = tmp_path / "a_file"
    f.write_text("x")
    clear_error(run(train_cmd(tmp_path / "short", f / "sub"), check=False, env=env), "not writable")


def test_truncated_shard_is_never_trained_on(bpe_data, tmp_path, env):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(bpe_data, d)
    shard = d / "val_000.bin"
    shard.write_bytes(shard.read_bytes()[:-7])
    clear_error(run(train_cmd(d, tmp_path / "o"), check=False, env=env), "val_000.bin", "truncated")
    assert not (tmp_path / "o" / "ckpt.pt").exists()


def test_checkpoint_config_and_vocab_mismatch(trained, data_dir, bpe_data, tmp_path, env):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    before = (out / "ckpt.pt").read_bytes()
    clear_error(run(train_cmd(bpe_data, out, "--n_layer=3"), check=False, env=env), "n_layer=2")
    clear_error(run(train_cmd(data_dir, out), check=False, env=env), "different tokenizer")
    assert (out / "ckpt.pt").read_bytes() == before


def test_diverging_run_keeps_last_good_checkpoint(trained, bpe_data, tmp_path, env):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    before = (out / "ckpt.pt").read_bytes()
    p = run(train_cmd(bpe_data, out, "--learning_rate=1e30", "--max_iters=40"), check=False,
            env=env)
    FIG["faults injected"] += 1
    clear_error(p, "diverged")
    assert (out / "ckpt.pt").read_bytes() == before


def test_non_utf8_input_is_replaced_and_counted(tmp_path, env):
    src = tmp_path / "bad.txt"
    text = sample_text(20_000).encode()
    src.write_bytes(text[:5000] + b"\xff\xfe" + text[5000:9000] + b"\xc3" + text[9000:])
    p = run("data/prepare.py", f"--input={src}", f"--out_dir={tmp_path / 'd'}", env=env)
    FIG["bad inputs tried"] += 1
    assert "warning: 3 invalid UTF-8 sequences" in p.stdout and "Traceback" not in p.stderr
    assert read_meta(str(tmp_path / "d"))["decode_errors"] == 3
    FIG["clear errors given"] += 1


# --------------------------------------------------------------------------------------------------
# Property-based: the configurator and prepare's documents

KEY = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
DEFAULTS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.text(max_size=20))


@settings(max_examples=40, deadline=None, derandomize=True)  # reproducible figures
@given(key=KEY, default=DEFAULTS, value=DEFAULTS)
def test_configurator_typed_values_round_trip(key, default, value):
    ns = {key: default}
    text = repr(value) if not isinstance(value, str) else value
    try:
        configure(ns, [f"--{key}={text}"], verbose=False)
    except ValueError:
        FIG["bad inputs tried"] += 1
        FIG["clear errors given"] += 1
        # only a value of the wrong type may be refused
        assert type(value) is not type(default) and \
            not (isinstance(default, float) and type(value) is int)
        return
    assert type(ns[key]) is type(default)
    if isinstance(default, str):
        assert ns[key] == text  # strings are taken verbatim
    elif not isinstance(value, str):  # (text for a typed key is parsed: "5" is fine for an int)
        assert ns[key] == value


@settings(max_examples=40, deadline=None, derandomize=True)  # reproducible figures
@given(key=KEY, default=DEFAULTS, text=st.text(max_size=30))
@example(key="batch_size", default=12, text="{[]}")
@example(key="batch_size", default=12, text="9" * 5000)
def test_configurator_never_raises_anything_but_value_error(key, default, text):
    ns = {key: default}
    try:
        configure(ns, [f"--{key}={text}", f"--no_{key}=1"], verbose=False)
        raise AssertionError("an unknown key was accepted")
    except ValueError:
        pass  # the known key may be fine or refused; the unknown one must be refused


DOC = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda d: "<|endoftext|>" not in d)


@settings(max_examples=25, deadline=None, derandomize=True)  # reproducible figures
@given(docs=st.lists(DOC, min_size=2, max_size=8), fmt=st.sampled_from(["split", "jsonl"]))
@example(docs=["one", "\x1f", "two", " \u2003\n"], fmt="split")
def test_prepare_round_trips_documents(tmp_path_factory, docs, fmt):
    from data.tokenizer import load_tokenizer

    d = tmp_path_factory.mktemp("rt")
    if fmt == "split":
        # a line that is only the delimiter would cut a document in two
        docs = [x for x in docs if all(line.strip() != "%" for line in x.split("\n"))]
        src = d / "docs.txt"
        src.write_bytes("".join(f"{x}\n%\n" for x in docs).encode())
        # a document of nothing that str.strip keeps (Unicode spaces, \x1c-\x1f too) is none
        expected, split = [x.strip("\n") for x in docs if x.strip()], "%"
        if len(expected) < 2:
            return
    else:
        src = d / "docs.jsonl"
        src.write_text("".join(json.dumps({"text": x}) + "\n" for x in docs), encoding="utf-8")
        expected, split = docs, None
    try:
        prepare([str(src)], str(d / "out"), "gpt2", split=split, val_fraction=0.3, num_proc=1,
                progress=False)
    except ValueError as e:
        assert "split is empty" in str(e)
        return
    tok = load_tokenizer(str(d / "out"))
    got = []
    for part in ("train", "val"):
        ids = [int(t) for s in read_meta(str(d / "out"))["splits"][part]["shards"]
               for t in read_shard(str(d / "out" / s))]
        got += tok.decode(ids).split("<|endoftext|>")
    assert sorted(got) == sorted(expected)
