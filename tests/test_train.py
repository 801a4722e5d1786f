"""train.py end to end: a run, resume equality, DDP equality, and the bad inputs of the spine."""

import json
import sys

import pytest
import torch
from conftest import ROOT, TINY, assert_no_gloo_threads, run, thread_probe

from support.ckpt import load as load_checkpoint


def losses(out_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in open(out_dir / "log.jsonl")]
    return {r["iter"]: r["loss"] for r in rows if "loss" in r}


def test_train_writes_outputs_and_loss_falls(tmp_path, data_dir):
    out = tmp_path / "out"
    p = run("train.py", *TINY, f"--dataset={data_dir}", f"--out_dir={out}", "--max_iters=30",
            "--eval_interval=15", "--final_eval=True", "--sample_interval=30", "--sample_tokens=8")
    assert "starting from scratch" in p.stdout
    assert (out / "ckpt.pt").exists() and (out / "log.jsonl").exists()
    evals = [r for r in map(json.loads, open(out / "log.jsonl")) if "val_loss" in r]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0  # from ~ln(50304)=10.8 down
    assert "nats/char" in p.stdout and "sample at step 30" in p.stdout and "min left" in p.stdout
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    assert ckpt["iter_num"] == 30 and ckpt["tokenizer"]["name"] == "gpt2"
    assert ckpt["config"]["max_iters"] == 30 and ckpt["model_args"]["vocab_size"] == 50304


def test_resume_continues_the_same_trajectory(tmp_path, data_dir):
    common = [f"--dataset={data_dir}", "--eval_interval=4", "--dropout=0.1", *TINY]
    # a peak of 1 FLOP/s: an MFU of millions of percent, never shown
    whole = run("train.py", f"--out_dir={tmp_path / 'a'}", "--max_iters=12", *common,
                "--peak_flops=1")
    assert "iter 12:" in whole.stdout and "mfu" not in whole.stdout
    log = [json.loads(line) for line in open(tmp_path / "a" / "log.jsonl")]
    assert all(r["mfu"] is None for r in log if "loss" in r)
    run("train.py", f"--out_dir={tmp_path / 'b'}", "--max_iters=6", *common)
    # the same command, longer
    p = run("train.py", f"--out_dir={tmp_path / 'b'}", "--max_iters=12", *common)
    assert "resuming from" in p.stdout
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert set(b) == set(range(1, 13))
    assert [a[i] for i in range(7, 13)] == [b[i] for i in range(7, 13)]  # bitwise equal on CPU
    # a fresh start in the same folder keeps the finished run's checkpoint beside its own
    p = run("train.py", f"--out_dir={tmp_path / 'b'}", "--max_iters=2", "--init_from=scratch", *common)
    assert f"moved the existing checkpoint to {tmp_path / 'b' / 'ckpt.pt'}.old" in p.stdout
    assert load_checkpoint(str(tmp_path / "b" / "ckpt.pt.old"))["iter_num"] == 12
    assert load_checkpoint(str(tmp_path / "b" / "ckpt.pt"))["iter_num"] == 2


def test_ddp_matches_single_process_and_ends_its_group(tmp_path, data_dir):
    common = [f"--dataset={data_dir}", "--max_iters=4", "--eval_interval=100", *TINY]
    common = [a for a in common if not a.startswith("--gradient_accumulation_steps")]
    run("train.py", f"--out_dir={tmp_path / 'one'}", "--gradient_accumulation_steps=4", *common)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "train.py")]
    env, threads_at_exit = thread_probe(tmp_path / "probe")
    p = run(torchrun + [f"--out_dir={tmp_path / 'two'}", "--gradient_accumulation_steps=4",
                        *common], env=env)
    assert "2 process(es) x 2 micro-steps" in p.stdout
    assert_no_gloo_threads(threads_at_exit())
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == 4 and one.keys() == two.keys()
    for i in one:
        assert two[i] == pytest.approx(one[i], abs=1e-5)
    w1 = load_checkpoint(str(tmp_path / "one/ckpt.pt"))["model"]
    w2 = load_checkpoint(str(tmp_path / "two/ckpt.pt"))["model"]
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5


def test_ddp_rejects_indivisible_batch(tmp_path, data_dir):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(ROOT / "train.py")]
    p = run(torchrun + [f"--dataset={data_dir}", f"--out_dir={tmp_path / 'o'}", *TINY,
                        "--gradient_accumulation_steps=3"], check=False)
    assert p.returncode != 0
    assert ("gradient_accumulation_steps (3) must be divisible by the number of processes (2)"
            in p.stderr)


@pytest.fixture
def short_data(tmp_path):
    (tmp_path / "short.txt").write_text("To be or not to be. " * 20)
    run("data/prepare.py", f"--input={tmp_path / 'short.txt'}", f"--out_dir={tmp_path / 'short'}")
    return tmp_path / "short"


def bad(tmp_path, *args, out_dir=None):
    out_dir = out_dir or tmp_path / "out"
    p = run("train.py", f"--out_dir={out_dir}", *TINY, "--max_iters=2", *args, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_bad_inputs(tmp_path, data_dir, short_data):
    (tmp_path / "empty").mkdir()
    assert "does not exist" in bad(tmp_path, f"--dataset={tmp_path / 'nothing'}")
    assert "no meta.json" in bad(tmp_path, f"--dataset={tmp_path / 'empty'}")
    assert "fewer than block_size+1" in bad(tmp_path, f"--dataset={short_data}", "--block_size=256")
    assert "did you mean 'batch_size'" in bad(tmp_path, f"--dataset={data_dir}", "--batch_sise=4")
    assert "expects an int" in bad(tmp_path, f"--dataset={data_dir}", "--batch_size=four")
    assert "not found" in bad(tmp_path, "config/no_such_file.py")
    assert "divisible by n_head" in bad(tmp_path, f"--dataset={data_dir}", "--n_embd=30",
                                        "--n_head=4")
    assert "smaller than the data's tokenizer" in bad(tmp_path, f"--dataset={data_dir}",
                                                      "--vocab_size=1000")
    (tmp_path / "afile").write_text("")
    assert "not writable" in bad(tmp_path, f"--dataset={data_dir}",
                                 out_dir=tmp_path / "afile" / "sub")
    assert "diverged" in bad(tmp_path, f"--dataset={data_dir}", "--learning_rate=1e30",
                             "--grad_clip=0.0", "--max_iters=20", out_dir=tmp_path / "nan")


def test_bad_shard_and_checkpoint(tmp_path, data_dir, short_data):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    shard = d / "train_000.bin"
    shard.write_bytes(shard.read_bytes()[:-7])
    assert "truncated" in bad(tmp_path, f"--dataset={d}")
    shard.write_bytes(b"PK\x03\x04 not a shard at all" * 10)
    assert "not a token shard" in bad(tmp_path, f"--dataset={d}")

    out = tmp_path / "run"
    run("train.py", f"--dataset={data_dir}", f"--out_dir={out}", *TINY, "--max_iters=2")
    good = (out / "ckpt.pt").read_bytes()
    # a different model shape than the checkpoint's
    assert "was trained with n_layer=2" in bad(tmp_path, f"--dataset={data_dir}", "--n_layer=3",
                                               out_dir=out)
    # a dataset with another tokenizer than the checkpoint's
    (tmp_path / "bpe.txt").write_text("Some text for a small vocabulary. " * 200
                                      + "More words here. " * 100)
    run("data/prepare.py", f"--input={tmp_path / 'bpe.txt'}", f"--out_dir={tmp_path / 'bpe'}",
        "--tokenizer=bpe", "--vocab_size=300")
    assert "different tokenizer" in bad(tmp_path, f"--dataset={tmp_path / 'bpe'}", out_dir=out)
    (out / "ckpt.pt").write_bytes(good[: len(good) // 2])
    assert "corrupt or truncated" in bad(tmp_path, f"--dataset={data_dir}", out_dir=out)
    (out / "ckpt.pt").write_bytes(good)  # nothing else was touched: the good one still resumes
    assert torch.is_tensor(load_checkpoint(str(out / "ckpt.pt"))["model"]["transformer.wte.weight"])


def test_sample_end_to_end(tmp_path, data_dir):
    out = tmp_path / "out"
    run("train.py", f"--dataset={data_dir}", f"--out_dir={out}", *TINY, "--max_iters=2")
    p = run("sample.py", f"--checkpoint={out}", "-p", "ROMEO:", "-m", "12", "--seed=1",
            "--device=cpu")
    assert p.stdout.startswith("ROMEO:") and len(p.stdout) > len("ROMEO:")
    again = run("sample.py", f"--checkpoint={out / 'ckpt.pt'}", "-p", "ROMEO:", "-m", "12",
                "--seed=1", "--device=cpu")
    assert again.stdout == p.stdout  # the seed makes it reproducible
    p = run("sample.py", f"--checkpoint={out}", "-p", "", check=False)
    assert p.returncode == 1 and "prompt is empty" in p.stderr


def test_half_checkpoint_for_sharing(tmp_path, data_dir):
    out = tmp_path / "out"
    run("train.py", f"--dataset={data_dir}", f"--out_dir={out}", *TINY, "--max_iters=2")
    run("export.py", f"--checkpoint={out}", f"--half={tmp_path / 'small.pt'}")
    full, half = load_checkpoint(str(out / "ckpt.pt")), load_checkpoint(str(tmp_path / "small.pt"))
    assert "optimizer" not in half and half["tokenizer"] == full["tokenizer"]
    assert (tmp_path / "small.pt").stat().st_size < 0.2 * (out / "ckpt.pt").stat().st_size
    w, h = full["model"]["transformer.wte.weight"], half["model"]["transformer.wte.weight"]
    assert h.dtype == torch.float16 and (w - h.float()).abs().max() < 1e-3
    p = run("sample.py", f"--checkpoint={tmp_path / 'small.pt'}", "-p", "ROMEO:", "-m", "5",
            "--device=cpu")
    assert p.stdout.startswith("ROMEO:")
