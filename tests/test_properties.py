"""The command lines of train.py, sample.py, eval.py, export.py and data/prepare.py, fuzzed:
hypothesis draws a few of a script's settings at a time, each from its whole type (integers and
floats with 0, negatives, huge values, nan and inf, wrong types; strings with empty, unicode, a NUL
byte, a file, a folder, a path that does not exist; switches on and off), and the script runs in
this process. The property: either the run is accepted, every value it accepted is in the range its
--help gives, and what it wrote lies where it says (and nowhere else); or it ends as the script
would, with exit status 1, exactly one `error: ...` line on stderr, no traceback, and nothing
written or changed on disk.

Two kinds of test: a whole run per example, for each script (does what it says, files where they
belong); and, for each setting whose --help gives a range, examples that all draw it, each stopped
where the script, its settings accepted, would begin its work (milliseconds each). A run still
going after a few seconds (max_iters=2**40 with no time limit) was accepted: it is stopped there
and only its ranges are checked. Sizes from 2**40 up fail at once when allocated; sizes that fit in
memory but take minutes are not drawn. A fixed seed in CI; `HYPOTHESIS_PROFILE=long` draws ten
times as many examples, at random.
"""

import ast
import contextlib
import io
import math
import os
import runpy
import shutil
import signal
import sys

import pytest
import torch
from conftest import ROOT, sample_text, script_in_this_process
from hypothesis import HealthCheck, example, given, settings, strategies as st

import eval as eval_script
import export
import sample
from data import corpus, prepare
from support import ckpt, common, devices

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("long", settings.get_profile("ci"), derandomize=False)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = 10 if PROFILE == "long" else 1
# a run still going after this long was accepted: stopped there, its ranges checked
WATCHDOG_S = 3.0
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=2",
        "--eval_iters=1", "--max_iters=2", "--eval_interval=2", "--log_interval=1",
        "--device=cpu", "--peak_flops=1e12", "--final_eval=False", "--sample_tokens=4",
        "--compile=False", "--warmup_iters=0", "--gradient_accumulation_steps=1"]


def examples(n: int):
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


# ---------------------------------------------------------------------------------------------
# values: every kind a command line can carry, as the text the user types

INTS = st.one_of(st.integers(-3, 6),
                 st.sampled_from([0, -1, 2**40, 2**62 - 1, 2**62, 2**63, 10**30, -(2**40)])
                 ).map(str) | st.sampled_from(["1.5", "abc", "", " 3", "1e3", "0x10"])
FLOATS = st.one_of(st.floats(-2, 2, allow_nan=False).map(repr),
                   st.sampled_from(["0", "-0.0", "1", "nan", "inf", "-inf", "1e300", "-1e300",
                                    "1e-300", "abc", "", "2**-1"]))
BOOLS = st.sampled_from(["True", "False", "true", "0", "1", "yes", "maybe", "", "None", "2"])


def texts(run_dir, fixed) -> st.SearchStrategy:
    """Strings: empty, odd, unicode, a NUL byte, the fixture's files and folders, a file, a folder,
    a path that does not exist; and random names (no '/' nor '..': every path stays in run_dir)."""
    special = ["", ".", " ", "-x", "données ☃", "a\x00b", "a_file", "a_dir", "new", str(run_dir),
               str(run_dir / "a_file"), str(run_dir / "missing" / "x"), str(fixed / "text.txt"),
               str(fixed / "data"), str(fixed / "out"), str(fixed / "out" / "ckpt.pt"),
               str(fixed / "hellaswag.jsonl"), "*", "a_file,a_file"]
    names = st.text(st.characters(blacklist_characters="/\\\0", blacklist_categories=("Cs",)),
                    min_size=1, max_size=6).filter(lambda s: s.strip("."))
    return st.sampled_from(special) | names


def number(text: str, kind):
    """The value a script reads from text with kind (int, float, or train.py's literals), or None
    where it cannot."""
    try:
        return kind(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def literal(kind):
    """train.py's reading of a --key=value: a Python literal, of the setting's type (an int is
    fine for a float)."""
    def parse(text: str):
        v = ast.literal_eval(text)
        if type(v) is int or kind is float and type(v) is float:
            return kind(v)
        raise ValueError(text)
    return parse


def within(lo, hi, kind=int, open_lo=False):
    """Whether a text is a finite `kind` from lo (excluded with open_lo) to hi: the range a --help
    line gives."""
    def inside(text: str) -> bool:
        v = number(text, kind)
        return v is not None and math.isfinite(v) and (lo < v if open_lo else lo <= v) and v <= hi
    return inside


def one_of(*choices):
    return lambda text: text in choices


# ---------------------------------------------------------------------------------------------
# running a script as `python script.py ...` would, in this process


class Accepted(BaseException):
    """Raised where a script, its settings accepted, would begin its work (the range tests)."""


class StillRunning(Accepted):
    """Raised by the watchdog in a run that was accepted and is still going."""


@contextlib.contextmanager
def watchdog(seconds: float):
    def ring(*_):
        # rings again soon, in case code that swallows exceptions (a gc callback) got this one
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        raise StillRunning
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def in_process(call, seconds: float = WATCHDOG_S) -> tuple[str, str, str]:
    """(status, stdout, stderr) of call(): status 'exit N' as the interpreter would end it, what
    escapes printed by the scripts' own hook (one_line_errors), or 'running' if the watchdog
    stopped it."""
    out, err = io.StringIO(), io.StringIO()
    hook, status = sys.excepthook, "exit 0"
    try:
        # the script's signal handlers go when it returns, and a Ctrl-C that it caught stops pytest
        with script_in_this_process(), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                with watchdog(seconds):
                    call()
            except SystemExit as e:
                status = f"exit {e.code if isinstance(e.code, int) else 1}"
            except Accepted:
                status = "running"
            # an uncaught exception: Python prints it with the script's hook and exits 1
            except BaseException as e:
                common.one_line_errors()
                sys.excepthook(type(e), e, e.__traceback__)
                status = "exit 1"
    finally:
        sys.excepthook = hook
    return status, out.getvalue(), err.getvalue()


def run_train(argv: list[str]):
    """train.py with these arguments, as `python train.py ...` runs it."""
    saved = sys.argv
    sys.argv = ["train.py", *argv]
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    finally:
        sys.argv = saved


def snapshot(root) -> dict:
    """Every file and folder under root, with its size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st_ = os.lstat(path)
            found[path] = (st_.st_size, st_.st_mtime_ns) if name in files else "dir"
    return found


def changes(before: dict, after: dict) -> set:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


# ---------------------------------------------------------------------------------------------
# fixtures: a tiny BPE data folder, a checkpoint trained on it, a HellaSwag file


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    (root / "text.txt").write_text(sample_text(6000), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        prepare.prepare([str(root / "text.txt")], str(root / "data"), "bpe", 300, num_proc=1,
                        progress=False)
    status, out, err = in_process(lambda: run_train([f"--dataset={root / 'data'}",
                                                     f"--out_dir={root / 'out'}", *TINY]),
                                     seconds=300)
    assert status == "exit 0" and (root / "out" / "ckpt.pt").exists(), err
    example = '{"ctx": "A man", "endings": ["runs", "sits", "is", "was"], "label": 0}\n'
    (root / "hellaswag.jsonl").write_text(example * 2, encoding="utf-8")
    return root


@pytest.fixture
def run_dir(tmp_path_factory, fixed, monkeypatch):
    """An empty folder to run in (relative paths land here), with a file and a folder in it;
    data/ (where --name and HellaSwag write) is its data/."""
    where = tmp_path_factory.mktemp("run")
    monkeypatch.chdir(where)
    # every module that names the repository's data/ (prepare's --name, HellaSwag's download)
    for module in list(sys.modules.values()):
        if getattr(module, "DATA_ROOT", None) == str(ROOT / "data"):
            monkeypatch.setattr(module, "DATA_ROOT", str(where / "data"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "stdin", io.StringIO("ROMEO:\n"))
    return where


def reset(run_dir):
    """run_dir as each example finds it."""
    for entry in run_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    (run_dir / "a_file").write_text("not a folder\n")
    (run_dir / "a_dir").mkdir()


def arguments(flags: dict, run_dir, fixed, first: str | None = None) -> st.SearchStrategy:
    """1 to 3 of a script's flags (`first`, if given, and up to 2 others), each with a value from
    its kind: a list of (flag, value) pairs; a switch's value is '' (present) and a repeatable flag
    can come several times."""
    kinds = {int: INTS, float: FLOATS, bool: BOOLS, str: texts(run_dir, fixed)}

    def values(name):
        kind = flags[name][0]
        if kind == "switch":
            return st.just([(name, "")])
        if kind == "repeat":
            return st.lists(kinds[str], min_size=1, max_size=3).map(
                lambda vs: [(name, v) for v in vs])
        strategy = kinds[kind] | st.sampled_from(flags[name][2]) if len(flags[name]) > 2 \
            else kinds[kind]
        return strategy.map(lambda v: [(name, v)])

    names = st.lists(st.sampled_from(sorted(flags)), min_size=1, max_size=3, unique=True)
    if first:
        others = st.lists(st.sampled_from(sorted(set(flags) - {first})), max_size=2, unique=True)
        names = others.map(lambda ns: [first, *ns])
    return names.flatmap(lambda ns: st.tuples(*map(values, ns))).map(lambda t: sum(t, []))


def argv_of(base: list[str], drawn: list[tuple]) -> list[str]:
    """The base arguments, less those drawn, then the drawn ones."""
    keys = {f"--{name}" for name, _ in drawn}
    kept = [a for a in base if a.split("=")[0] not in keys]
    return kept + [f"--{n}={v}" if v != "" or n not in SWITCHES else f"--{n}" for n, v in drawn]


SWITCHES = {"force", "prompts_per_line", "no_stop", "no_prompt", "interactive", "stream",
            "no-stream"}


def check(drawn, flags, status, out, err, written, allowed):
    """The property, for one run: see the module's docstring. `allowed(path)`: where an accepted
    run may write."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err, err[-3000:]
    if status == "exit 1":
        assert len(errors) == 1, err[-3000:]
        # a run that began, then diverged or ran out of memory, keeps its folder and its log
        began = "diverged" in errors[0] or "out of memory" in errors[0]
        assert not written or began and all(map(allowed, written)), (errors[0], sorted(written))
        return
    assert status in ("exit 0", "running") and not errors, (status, err[-3000:])
    wrong = [(name, v) for name, v in drawn if len(flags[name]) > 1 and flags[name][1] is not None
             and not flags[name][1](v)]
    assert not wrong, f"accepted out of range: {wrong}\n{err[-2000:]}"
    if status == "exit 0":
        stray = sorted(p for p in written if not allowed(p))
        assert not stray, f"written where it does not belong: {stray}"


def fuzz(main, flags, base, run_dir, fixed, n, allowed, done, first=None, known=()):
    """Draw n command lines of a script (with the flag `first` in each, if given) and hold each run
    to the property; `done(argv, out)` checks that an accepted run did what it says. `known`: drawn
    lists that once failed it, tried first in every run."""
    def one(drawn):
        reset(run_dir)
        argv = argv_of(base(run_dir, fixed, {name for name, _ in drawn}), drawn)
        before = snapshot(run_dir.parent)
        status, out, err = in_process(lambda: main(argv))
        written = changes(before, snapshot(run_dir.parent))
        check(drawn, flags, status, out, err, written, lambda p: allowed(argv, p))
        if status == "exit 0":
            done(argv, out)

    test = given(drawn=arguments(flags, run_dir, fixed, first))(one)
    for drawn in known:
        test = example(drawn=drawn)(test)
    examples(n)(test)()


def value(argv: list[str], flag: str, default=None):
    """The last value of --flag in argv."""
    found = [a.partition("=")[2] for a in argv if a.startswith(f"--{flag}=")]
    return found[-1] if found else default


def under(path, folder) -> bool:
    """Whether path is folder, inside it, or one of the folders that lead to it."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder + os.sep) or folder.startswith(path + os.sep)


# ---------------------------------------------------------------------------------------------
# the scripts: each flag's kind, the range its --help line gives (None: any value), and values
# worth drawing more often

INT, FLOAT = literal(int), literal(float)
POSITIVE, NON_NEGATIVE = within(1, 2**62 - 1, INT), within(0, 2**62 - 1, INT)
TRAIN = {
    **{k: (int, POSITIVE) for k in ("eval_interval", "log_interval", "eval_iters", "sample_tokens",
                                    "batch_size", "gradient_accumulation_steps", "n_layer",
                                    "n_head", "n_embd", "block_size")},
    **{k: (int, NON_NEGATIVE) for k in ("sample_interval", "vocab_size", "max_iters",
                                        "warmup_iters", "lr_decay_iters", "seed")},
    **{k: (float, within(0, math.inf, FLOAT, open_lo=True)) for k in ("learning_rate", "eps")},
    **{k: (float, within(0, math.inf, FLOAT)) for k in ("max_seconds", "weight_decay",
                                                        "grad_clip", "min_lr", "peak_flops")},
    **{k: (float, lambda t: within(0, 1, FLOAT)(t) and FLOAT(t) < 1)
       for k in ("beta1", "beta2", "dropout")},
    **{k: (bool, one_of("True", "False", "true", "0", "1", "yes")) for k in
       ("eval_only", "always_save_checkpoint", "final_eval", "wandb_log", "decay_lr", "bias")},
    "compile": (bool, one_of("True", "False", "true", "0", "1", "yes", "None")),
    "out_dir": (str, None, ["out", "a_file", "a_dir", ""]),
    "dataset": (str, None, ["openwebtext"]),
    "init_from": (str, None, ["auto", "scratch", "resume", "gpt3"]),
    "device": (str, one_of("cpu", "auto"), ["cpu", "auto", "cuda", "cuda:1", "mps", "tpu"]),
    "dtype": (str, one_of("auto", "float32", "bfloat16", "float16"),
              ["auto", "float32", "bfloat16", "float16", "int8"]),
    "gelu": (str, one_of("tanh", "exact"), ["tanh", "exact", "relu"]),
    "backend": (str, one_of("", "nccl", "gloo", "mpi"), ["", "gloo", "nccl", "mpi", "ncl"]),
    "wandb_project": (str, None), "wandb_run_name": (str, None),
}


def train_base(run_dir, fixed, names):
    return [f"--dataset={fixed / 'data'}", "--out_dir=out", *TINY, "--max_seconds=1"]


def test_train_command_line(run_dir, fixed, monkeypatch):
    # compile=True runs eagerly here: torch.compile takes a minute on a CPU
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    def allowed(argv, path):
        return under(path, value(argv, "out_dir"))

    def done(argv, out):
        assert "step 0:" in out or "nothing left to do" in out, out[-2000:]
        if "step 0:" in out:
            assert os.path.isfile(os.path.join(value(argv, "out_dir"), "log.jsonl"))

    # sizes that once ended in a traceback (torch's allocator refusing them)
    known = [[("eval_iters", str(2**40))], [("batch_size", str(2**40))]]
    fuzz(run_train, TRAIN, train_base, run_dir, fixed, 20, allowed, done, known=known)


SAMPLE = {
    "max_new_tokens": (int, within(1, 10**6)), "num_samples": (int, within(1, 10**4)),
    "temperature": (float, within(0, math.inf, float)), "top_k": (int, within(0, math.inf)),
    "top_p": (float, within(0, 1, float, open_lo=True)),
    "repetition_penalty": (float, within(0, math.inf, float, open_lo=True)),
    "seed": (int, within(0, 2**63 - 1)), "device": (str, one_of("cpu", "auto"), ["cpu", "cuda"]),
    "dtype": (str, one_of("auto", "float32", "bfloat16", "float16"), ["float32", "bfloat16"]),
    "compile": (bool, None), "checkpoint": (str, None), "init_from": (str, None, ["resume"]),
    "out_dir": (str, None), "prompt": ("repeat",), "stop": ("repeat",),
    "prompt_file": (str, None), "out": (str, None, ["s.txt", "s.jsonl", "new/s.txt"]),
    **{k: ("switch",) for k in ("prompts_per_line", "no_stop", "no_prompt", "interactive",
                                "stream", "no-stream")},
}


def sample_base(run_dir, fixed, names):
    # -i reads its prompts from stdin: then no -p
    prompt = ["--prompt=ROMEO:"] if "interactive" not in names else []
    return [f"--checkpoint={fixed / 'out'}", "--max_new_tokens=3", "--device=cpu", *prompt]


def test_sample_command_line(run_dir, fixed):
    def allowed(argv, path):
        return value(argv, "out") is not None and under(path, value(argv, "out"))

    def done(argv, out):
        target = value(argv, "out")
        if target:
            assert os.path.isfile(target) and not out, out
        elif "--interactive" not in argv:
            assert out.strip(), "no sample printed"

    # settings that once ended in a traceback (scores overflowing to nan)
    known = [[("temperature", "1e-300")], [("repetition_penalty", "1e-300")], [("top_p", "1e-300")]]
    fuzz(sample.main, SAMPLE, sample_base, run_dir, fixed, 40, allowed, done, known=known)


EVAL = {
    "batch_size": (int, within(1, math.inf)), "block_size": (int, within(1, 16)),
    "limit": (int, within(1, math.inf)), "split": (str, one_of("val", "train"), ["val", "train"]),
    "checkpoint": (str, None), "input": (str, None), "hellaswag": (str, None, ["val"]),
    "device": (str, one_of("cpu", "auto"), ["cpu", "cuda"]),
}


def eval_base(run_dir, fixed, names):
    # --input, unless HellaSwag is drawn
    source = [f"--input={fixed / 'data'}"] if "hellaswag" not in names else []
    return [f"--checkpoint={fixed / 'out'}", "--device=cpu", *source]


def test_eval_command_line(run_dir, fixed):
    def done(argv, out):
        assert "nats/token" in out or "hellaswag:" in out, out

    # a download that failed once left an empty data/hellaswag/ behind
    fuzz(eval_script.main, EVAL, eval_base, run_dir, fixed, 30, lambda argv, path: False, done,
         known=[[("hellaswag", "val")]])


EXPORT = {"checkpoint": (str, None), "out_dir": (str, None, ["hf", "a_dir", "a_file"]),
          "half": (str, None, ["half.pt", "new/half.pt"]), "force": ("switch",)}


def test_export_command_line(run_dir, fixed):
    def target(argv):
        return value(argv, "half") or value(argv, "out_dir")

    def done(argv, out):
        if value(argv, "half"):
            assert os.path.isfile(value(argv, "half"))
        else:
            names = os.listdir(value(argv, "out_dir"))
            assert {"config.json", "model.safetensors", "vocab.json"} <= set(names), names

    base = lambda run_dir, fixed, names: [f"--checkpoint={fixed / 'out'}", "--out_dir=hf"]
    fuzz(export.main, EXPORT, base, run_dir, fixed, 20,
         lambda argv, path: under(path, target(argv)), done)


PREPARE = {
    "vocab_size": (int, None), "val_fraction": (float, within(0, 1, float, open_lo=True)),
    "num_proc": (int, within(1, 1024)), "seed": (int, within(0, 2**32 - 1)),
    "input": (str, None), "name": (str, None), "out_dir": (str, None, ["prepared"]),
    "split": (str, None, ["line", "", "%"]), "column": (str, None),
    "hf_dataset": (str, None), "hf_config": (str, None), "hf_split": (str, None),
    "shard_tokens": (int, within(1, 2**40)),
    "tokenizer": (str, None, ["gpt2", "bpe", "char"]),
}


def prepare_base(run_dir, fixed, names):
    # --input, unless a Hugging Face dataset is drawn
    source = [f"--input={fixed / 'text.txt'}"] if "hf_dataset" not in names else []
    return [*source, "--out_dir=prepared", "--tokenizer=char", "--num_proc=1"]


def test_prepare_command_line(run_dir, fixed):
    def folder(argv):
        if value(argv, "out_dir"):
            return value(argv, "out_dir")
        source = value(argv, "input") or value(argv, "hf_dataset")
        name = value(argv, "name") or os.path.basename(source).split(".")[0]
        return os.path.join(run_dir / "data", name)

    def done(argv, out):
        names = os.listdir(folder(argv))
        assert {"meta.json", "train_000.bin", "val_000.bin"} <= set(names), names

    fuzz(prepare.main, PREPARE, prepare_base, run_dir, fixed, 30,
         lambda argv, path: under(path, folder(argv)), done)


# Where each script, its settings accepted, would begin its work: the range tests stop there, so
# that every setting with a range gets its own examples at a few milliseconds each.
SCRIPTS = {"train.py": (run_train, TRAIN, train_base, (devices, "setup_training")),
           "sample.py": (sample.main, SAMPLE, sample_base, (ckpt, "load_for_inference")),
           "eval.py": (eval_script.main, EVAL, eval_base, (ckpt, "load_for_inference")),
           "data/prepare.py": (prepare.main, PREPARE, prepare_base, (corpus, "tokenizer_for"))}
RANGED = [(script, flag) for script, (_, flags, _, _) in SCRIPTS.items()
          for flag, spec in flags.items() if len(spec) > 1 and spec[1] is not None]


@pytest.mark.parametrize("script,flag", RANGED)
def test_every_range(script, flag, run_dir, fixed, monkeypatch):
    """Each setting whose --help gives a range, drawn in every example (with up to 2 others): a
    value outside the range is refused in one line, before anything is written."""
    main, flags, base, (module, name) = SCRIPTS[script]

    def accept(*args, **kwargs):
        raise Accepted
    monkeypatch.setattr(module, name, accept)
    fuzz(main, flags, base, run_dir, fixed, 8, lambda argv, path: False, lambda argv, out: None,
         first=flag)
