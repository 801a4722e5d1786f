"""Bad input, everywhere: every setting of train.py and every flag of sample.py, data/prepare.py,
export.py, and eval.py, given boundary values (0, -1, huge, empty, NaN, a wrong type, a folder, a
file, a path that does not exist), either works or stops with one line, `error: ...`, exit status 1,
no traceback, and nothing written. The scripts run in this process (runpy / main()) so that hundreds
of runs take a minute; the contract they are held to is what common.one_line_errors() turns into
that one line. Also: every script answers --help, every config file loads, the error messages a user
met are the ones listed in the docstring of each test, and each check of train.py's settings and of
meta.json gives its own message, also under `python -O` (.ci/run)."""

import argparse
import contextlib
import io
import json
import os
import runpy
import shutil
import signal
import sys

import pytest
from conftest import ROOT, SHAKESPEARE, run, script_in_this_process
from hypothesis import HealthCheck, given, settings, strategies as st

import eval as eval_script
import export
import sample
from data import prepare
from support import common

sys.path.insert(0, str(ROOT / "bench"))
import bench_generate
import bench_tokenizer

USER_ERRORS = (ValueError, OSError, MemoryError, FloatingPointError)


def outcome(fn) -> str:
    """'ok', or the one-line error fn ended with (as the scripts print it); fails the test on
    anything else."""
    out, err = io.StringIO(), io.StringIO()
    # train.py installs its own handlers: the ones found come back, and Ctrl-C stops pytest
    with script_in_this_process():
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                fn()
        except SystemExit as e:
            if e.code not in (0, None):
                lines = [line for line in err.getvalue().splitlines()
                         if line.startswith("error: ")]
                assert e.code == 1 and len(lines) == 1, (e.code, err.getvalue()[-2000:])
                return lines[0]
        except USER_ERRORS as e:
            assert "\n" not in str(e) and str(e), f"not one line: {e!r}"
            return f"error: {e}"
    return "ok"


def values_for(default, tmp) -> list:
    """The boundary values for a setting of this default's type."""
    paths = ["", str(tmp), str(tmp / "a_file"), str(tmp / "missing" / "x")]
    if isinstance(default, bool) or default is None:
        return ["maybe", "", "2", "None"]
    if isinstance(default, int):
        return ["0", "-1", str(10**30), "abc", "", "1.5"]
    if isinstance(default, float):
        return ["0", "-1", "nan", "inf", "1e300", "abc"]
    return [*paths, "x"]


def train_settings() -> dict:
    """train.py's settings and their defaults: its source up to the line where they are read."""
    ns = {"__file__": str(ROOT / "train.py")}
    exec((ROOT / "train.py").read_text(encoding="utf-8").split("\none_line_errors()")[0], ns)
    simple = (int, float, bool, str, type(None))
    return {k: v for k, v in ns.items() if not k.startswith("_") and isinstance(v, simple)}


BASE = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=2",
        "--eval_iters=1", "--max_iters=2", "--eval_interval=2", "--log_interval=1", "--device=cpu",
        "--peak_flops=1e12", "--final_eval=False", "--sample_tokens=4", "--compile=False"]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "a_file").write_text("not a folder\n")
    return d


@pytest.mark.parametrize("name", sorted(train_settings()))
def test_every_train_setting(name, tmp, bpe_data, monkeypatch):
    default = train_settings()[name]
    # relative paths land here
    monkeypatch.chdir(tmp)

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=st.sampled_from(values_for(default, tmp)))
    def check(value):
        out = tmp / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        args = [a for a in [f"--dataset={bpe_data}", f"--out_dir={out}", *BASE]
                if not a.startswith(f"--{name}=")]
        monkeypatch.setattr(sys, "argv", ["train.py", *args, f"--{name}={value}"])
        result = outcome(lambda: runpy.run_path(str(ROOT / "train.py"), run_name="__main__"))
        assert result == "ok" or not out.exists() or any(out.iterdir()), \
            f"--{name}={value!r}: empty {out} left"

    found = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    check()
    # the handlers that train.py installed in this process are gone
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == found


# Every range and type that train.py checks, with the message it gives. The dataset does not exist:
# each check must come first, before any data is read, so a case takes milliseconds. .ci/run runs
# these again under `python -O`, where an assert would check nothing.
BAD_SETTINGS = [
    *[([f"--{k}=0"], f"{k} must be > 0, got 0") for k in
      ("eval_interval", "log_interval", "eval_iters", "sample_tokens", "batch_size",
       "gradient_accumulation_steps")],
    *[([f"--{k}=0"], f"{k} must be > 0, got 0.0") for k in ("learning_rate", "eps")],
    *[([f"--{k}=-1"], f"{k} must be >= 0, got -1") for k in
      ("sample_interval", "vocab_size", "max_iters", "warmup_iters", "lr_decay_iters", "seed")],
    *[([f"--{k}=-1"], f"{k} must be >= 0, got -1.0") for k in
      ("max_seconds", "weight_decay", "grad_clip", "min_lr", "peak_flops")],
    *[([f"--{k}=1"], f"{k} must be in [0, 1), got 1.0") for k in ("beta1", "beta2")],
    *[([f"--{k}=0"], f"{k} must be a positive integer, got 0") for k in
      ("block_size", "n_layer", "n_head", "n_embd")],
    (["--n_embd=30", "--n_head=4"], "n_embd (30) must be divisible by n_head (4)"),
    (["--dropout=1"], "dropout must be in [0, 1), got 1.0"),
    (["--gelu=relu"], "gelu must be 'tanh' or 'exact'"),
    (["--init_from=gpt3"], "init_from='gpt3' is none of auto, scratch, resume, gpt2"),
    (["--backend=nccl2"], "backend must be '', nccl, gloo or mpi, got 'nccl2'"),
    (["--out_dir="], "an empty folder name was given"),
    (["--device=tpu"], "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["--dtype=int8"], "dtype must be auto, float32, bfloat16 or float16, got 'int8'"),
    (["--batch_size=1.5"], "config key 'batch_size' expects an int"),
    (["--learning_rate=nan"], "config key 'learning_rate' expects a finite float"),
    (["--compile=maybe"], "config key 'compile' expects a bool"),
    (["--batch_sise=4"], "unknown config key 'batch_sise' (did you mean 'batch_size'?)"),
]


@pytest.mark.parametrize("args,message", BAD_SETTINGS, ids=[" ".join(a) for a, _ in BAD_SETTINGS])
def test_each_bad_train_setting_gives_its_message(args, message, tmp, monkeypatch):
    monkeypatch.chdir(tmp)
    out = tmp / "out-bad"
    keys = {a.split("=")[0] for a in args}
    base = [a for a in [f"--out_dir={out}", *BASE] if a.split("=")[0] not in keys]
    monkeypatch.setattr(sys, "argv", ["train.py", f"--dataset={tmp / 'no_data'}", *base, *args])
    result = outcome(lambda: runpy.run_path(str(ROOT / "train.py"), run_name="__main__"))
    assert result.startswith("error: ") and message in result, result
    assert not out.exists()


GOOD_META = dict(format="gpt-shards", version=1, tokenizer="gpt2", vocab_size=50257,
                 eot_token=50256, splits={"train": {"shards": []}, "val": {"shards": []}})
BAD_METAS = [("[]", "not a JSON object"), ("{", "unreadable, or not JSON"),
             (json.dumps({**GOOD_META, "version": 2}), "format/version"),
             (json.dumps({**GOOD_META, "vocab_size": "320"}), "vocab_size"),
             (json.dumps({k: v for k, v in GOOD_META.items() if k != "tokenizer"}), "tokenizer"),
             (json.dumps({**GOOD_META, "eot_token": None}), "eot_token"),
             (json.dumps({**GOOD_META, "splits": {"train": {"shards": []}}}), "splits.val.shards")]


@pytest.mark.parametrize("text,problem", BAD_METAS, ids=[p for _, p in BAD_METAS])
def test_a_bad_meta_json_says_what_is_wrong(text, problem, tmp, monkeypatch):
    data = tmp / "bad_meta"
    data.mkdir(exist_ok=True)
    (data / "meta.json").write_text(text)
    argv = ["train.py", f"--dataset={data}", f"--out_dir={tmp / 'out-meta'}", *BASE]
    monkeypatch.setattr(sys, "argv", argv)
    result = outcome(lambda: runpy.run_path(str(ROOT / "train.py"), run_name="__main__"))
    assert result.startswith(f"error: {data / 'meta.json'} is corrupt"), result
    assert problem in result, result


# script: (main, the flags and the kinds of value they take, the arguments that make a valid call)
FLAGS = {
    "sample.py": (sample.main, dict(max_new_tokens=int, num_samples=int, temperature=float,
                                    top_k=int, top_p=float, repetition_penalty=float, seed=int,
                                    device=str, dtype=str, checkpoint=str, init_from=str,
                                    out_dir=str, prompt=str, prompt_file=str, stop=str, out=str,
                                    compile=bool),
                  ["-m", "2", "--device=cpu"]),
    "data/prepare.py": (prepare.main, dict(input=str, name=str, out_dir=str, split=str, column=str,
                                           tokenizer=str, vocab_size=int, val_fraction=float,
                                           num_proc=int, seed=int), []),
    "export.py": (export.main, dict(checkpoint=str, out_dir=str, half=str), []),
    "eval.py": (eval_script.main, dict(checkpoint=str, input=str, split=str, batch_size=int,
                                       block_size=int, hellaswag=str, limit=int, device=str),
                ["--device=cpu"]),
}


def valid_call(script, tmp, text) -> list[str]:
    ckpt = str(ROOT / "tests" / "fixtures" / "pre_redesign" / "ckpt.pt")
    return {"sample.py": [f"--checkpoint={ckpt}"],
            "export.py": [f"--checkpoint={ckpt}", f"--out_dir={tmp / 'hf'}"],
            "data/prepare.py": [f"--input={text}", f"--out_dir={tmp / 'prepared'}"],
            "eval.py": [f"--checkpoint={ckpt}", f"--input={text}"]}[script]


@pytest.mark.parametrize("script,flag",
                         [(s, f) for s, (_, flags, _) in FLAGS.items() for f in flags])
def test_every_flag(script, flag, tmp, monkeypatch):
    main, flags, extra = FLAGS[script]
    monkeypatch.chdir(tmp)
    text = tmp / "text.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:3000])
    default = {int: 0, float: 0.0, bool: False, str: ""}[flags[flag]]

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=st.sampled_from(values_for(default, tmp)))
    def check(value):
        args = [a for a in [*valid_call(script, tmp, text), *extra]
                if not a.startswith(f"--{flag}=")]
        outcome(lambda: main([*args, f"--{flag}={value}"]))

    check()


# Values the help text puts out of range, each refused in one line before a model is loaded;
# every other argument makes a valid call
OUT_OF_RANGE = [
    *[("eval.py", [f"--{k}={v}"], "--batch_size, --block_size and --limit must be at least 1")
      for k in ("batch_size", "block_size", "limit") for v in (0, -1)],
    ("eval.py", ["--block_size=100000"], "--block_size=100000 is longer than the model's context"),
    *[("sample.py", [f"--{k}={v}"], "need int from 1") for k in ("max_new_tokens", "num_samples")
      for v in (0, -1)],
    ("sample.py", ["--seed=-1"], "need int from 0"),
    *[("sample.py", [f"--{k}={v}"], "need temperature >= 0 and repetition_penalty > 0")
      for k, v in (("temperature", -1), ("temperature", "nan"), ("temperature", "inf"),
                   ("repetition_penalty", 0), ("repetition_penalty", -1))],
    ("sample.py", ["--top_k=-1"], "top_k must be a positive number of tokens"),
    # refused whatever the tokenizer, not only where a BPE is trained
    *[("data/prepare.py", [f"--vocab_size={v}"], "need int from 257") for v in (-5, 0, 256)],
    *[("sample.py", [f"--top_p={v}"], "top_p must be in (0, 1]") for v in (0, -0.5, 1.5, "nan")],
]


@pytest.mark.parametrize("script,args,message", OUT_OF_RANGE,
                         ids=[f"{s} {' '.join(a)}" for s, a, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_refused(script, args, message, tmp, monkeypatch):
    main, _, extra = FLAGS[script]
    monkeypatch.chdir(tmp)
    text = tmp / "text.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:3000])
    result = outcome(lambda: main([*valid_call(script, tmp, text), *extra, *args]))
    assert result.startswith("error: ") and message in result, result


@pytest.mark.parametrize("module",
                         [sample, prepare, export, eval_script, bench_generate, bench_tokenizer])
def test_every_flag_has_help_and_its_default(module, monkeypatch):
    parsers = []

    class Spy(common.ArgumentParser):
        def parse_args(self, *args, **kwargs):
            parsers.append(self)
            raise SystemExit(0)

    monkeypatch.setattr(module, "ArgumentParser", Spy)
    with pytest.raises(SystemExit):
        module.main([])
    for action in parsers[0]._actions:
        assert action.help, action.option_strings
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in action.help, (action.option_strings, action.help)


@pytest.mark.parametrize("script", ["train.py", "bench/bench.py", "sample.py", "eval.py",
                                    "export.py", "data/prepare.py"])
def test_help_runs(script):
    p = run(script, "--help")
    assert p.returncode == 0 and "usage:" in p.stdout
    # each setting, its default and what it does, on one line
    if script in ("train.py", "bench/bench.py"):
        settings_ = [line for line in p.stdout.split("settings:")[1].splitlines() if " = " in line]
        bare = [x for x in settings_ if "  # " not in x]
        assert settings_ and not bare, bare


@pytest.mark.parametrize("config", sorted(os.listdir(ROOT / "config")))
def test_every_config_file_loads(config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", str(ROOT / "config" / config), "--help"])
    assert outcome(lambda: runpy.run_path(str(ROOT / "train.py"), run_name="__main__")) == "ok"


@pytest.mark.parametrize("args,message", [
    (["sample.py", "--top_k=-1"], "top_k must be a positive number of tokens"),
    (["sample.py", "--checkpoint=README.md"], "README.md is not a checkpoint"),
    (["train.py", "--batch_size=0"], "batch_size must be > 0"),
    (["train.py", "--gradient_accumulation_steps=0"], "gradient_accumulation_steps must be > 0"),
    (["train.py", "--eval_interval=0"], "eval_interval must be > 0"),
    (["train.py", "--log_interval=0"], "log_interval must be > 0"),
    (["train.py", "--device=cuda"], "device=cuda is not available"),
    (["train.py", "--eval_iters=0"], "eval_iters must be > 0"),
    (["data/prepare.py", "--out_dir=OUT"], "cannot reach OpenWebText"),
])
def test_the_errors_users_met(args, message, tmp_path):
    """Each of these once gave a traceback or a wrong message; now one line, run as a user runs
    it."""
    args = [a.replace("OUT", str(tmp_path / "owt")) for a in args]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    p = run(*args, *(["--dataset=nothing"] if args[0] == "train.py" else []), check=False, env=env)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1], p.stderr
    # nothing left behind
    assert not (tmp_path / "owt").exists()


def test_no_checkpoint_yet(tmp_path):
    (tmp_path / "out-custom").mkdir()
    p = run("sample.py", f"--checkpoint={tmp_path / 'out-custom'}", check=False)
    assert p.returncode == 1
    assert "holds no checkpoint yet: train.py saves one at every eval_interval" in p.stderr
