"""Shared helpers: run the scripts as a user would (subprocesses), and small prepared datasets."""

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "data" / "tinyshakespeare.txt"  # ships with the repository
sys.path.insert(0, str(ROOT))

# Small, fast settings shared by the training tests.
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
        "--gradient_accumulation_steps=2", "--eval_iters=2", "--log_interval=1", "--compile=False",
        "--device=cpu", "--peak_flops=1e11", "--warmup_iters=2", "--lr_decay_iters=100", "--learning_rate=3e-3",
        "--final_eval=False"]


def run(script, *args, check=True, env=None, timeout=300, cwd=ROOT):
    """Run a repo script with this interpreter; return the CompletedProcess (stdout+stderr as text)."""
    cmd = [sys.executable, str(ROOT / script), *map(str, args)] if not isinstance(script, list) else script
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# Python imports a sitecustomize module it finds on its path as it starts: this one registers, before
# the script runs, a last exit handler that writes the names of the threads still running (in a
# file named after the process's RANK) once the script's own clean-up is over
_THREAD_PROBE = """
import atexit, glob, os

def _write_threads():
    names = sorted(open(task + "/comm").read().strip() for task in glob.glob("/proc/self/task/*"))
    path = os.path.join(os.path.dirname(__file__), "threads-" + os.environ.get("RANK", "none"))
    with open(path, "w") as f:
        f.write("\\n".join(names))

atexit.register(_write_threads)
"""


def thread_probe(folder: Path) -> tuple[dict, Callable[[], dict[str, list[str]]]]:
    """(env for run(), a function returning {RANK: names of the threads left at exit}) for the
    processes a run starts. Linux only: the names come from /proc."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_THREAD_PROBE)

    def threads():
        return {f.name.removeprefix("threads-"): f.read_text().split("\n")
                for f in folder.glob("threads-*")}
    return dict(PYTHONPATH=str(folder)), threads


def assert_no_gloo_threads(threads: dict[str, list[str]]):
    """Both ranks' process group was gone, its threads joined, before Python began to exit: a group
    left to the interpreter's teardown can abort a rank that has finished (SIGABRT)."""
    assert threads.keys() >= {"0", "1"}, threads
    for rank in "01":
        assert not [t for t in threads[rank] if "gloo" in t], threads


def sample_text(n_chars: int = 200_000) -> str:
    """Public-domain text for tests: the start of tinyshakespeare."""
    return SHAKESPEARE.read_text(encoding="utf-8")[:n_chars]


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(sample_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bpe_data(tmp_path_factory) -> Path:
    """A small dataset with a 320-token BPE: the model is tiny and an iteration takes milliseconds."""
    from data.prepare import prepare

    src = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    src.write_text(sample_text(100_000), encoding="utf-8")
    prepare([str(src)], str(src.parent / "data"), "bpe", 320, num_proc=1, progress=False)
    return src.parent / "data"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, text_file) -> Path:
    """A prepared GPT-2-tokenized dataset (~50k tokens)."""
    out = tmp_path_factory.mktemp("data") / "corpus"
    run("data/prepare.py", f"--input={text_file}", f"--out_dir={out}")
    return out


@contextlib.contextmanager
def script_in_this_process():
    """Around a script run in this process (runpy, or its main()): the Ctrl-C and SIGTERM handlers
    that it installs give way to the ones found, and a Ctrl-C that reached it (train.py's handler
    turns one into a checkpoint and exit status 130) is raised again as KeyboardInterrupt once it
    returns, so that Ctrl-C stops pytest too instead of failing one test."""
    found = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # the interpreter writes the number of each signal it receives to this pipe, whatever handles it
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    before = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(before)
        for sig, handler in found.items():
            signal.signal(sig, handler)
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(read, 4096):
                received += chunk
        os.close(read)
        os.close(write)
        if signal.SIGINT in received:
            raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """train.py run in this process installs its own Ctrl-C and SIGTERM handlers: each test leaves
    the ones it found."""
    found = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in found.items():
        signal.signal(sig, handler)


# -----------------------------------------------------------------------------------------------------
# Reliability figures: tests/test_faults.py counts what it injects and what it sees here, and the totals
# are printed at the end of the run (the README's reliability section quotes them).
FAULT_FIGURES = {"faults injected": 0, "resumed": 0, "data lost": 0, "bad inputs tried": 0,
                 "clear errors given": 0}


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: fault-injection tests (kill -9, full disk, dead rank); slower")


def pytest_terminal_summary(terminalreporter):
    if any(FAULT_FIGURES.values()):
        terminalreporter.section("reliability figures (tests/test_faults.py)")
        for name, count in FAULT_FIGURES.items():
            terminalreporter.write_line(f"{name}: {count}")
