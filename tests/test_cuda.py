"""The CUDA path, end to end: bf16 + torch.compile training with evaluation, sampling and resume, fp16 with
the GradScaler, NCCL under torchrun, KV-cache decoding and bench.py. Skipped without a GPU (CI has none);
`python -m pytest -q tests/test_cuda.py` on a GPU machine runs them."""

import json
import sys

import pytest
import torch
from conftest import run
from test_generate import steps, tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = ["--n_layer=2", "--n_head=2", "--n_embd=64", "--block_size=32", "--batch_size=8", "--eval_iters=4",
         "--log_interval=5", "--device=cuda", "--warmup_iters=5", "--learning_rate=3e-3", "--lr_decay_iters=60",
         "--sample_tokens=8"]


@pytest.fixture(scope="module")
def bpe_data(tmp_path_factory, text_file):
    """A byte-level BPE dataset: needs no download, unlike GPT-2's tokenizer on a fresh machine."""
    out = tmp_path_factory.mktemp("cuda") / "bpe"
    run("data/prepare.py", f"--input={text_file}", f"--out_dir={out}", "--tokenizer=bpe", "--vocab_size=512")
    return out


def val_losses(out_dir):
    return [r["val_loss"] for r in map(json.loads, open(out_dir / "log.jsonl")) if "val_loss" in r]


def test_bf16_compiled_training_evaluates_and_resumes_without_recompiling(tmp_path, bpe_data):
    out = tmp_path / "out"
    common = [*SMALL, f"--dataset={bpe_data}", f"--out_dir={out}", "--eval_interval=10", "--sample_interval=20"]
    env = {"TORCH_LOGS": "recompiles"}
    p = run("train.py", *common, "--max_iters=40", "--final_eval=False", env=env, timeout=600)
    assert "cuda, bfloat16" in p.stdout and "compiling the model" in p.stdout
    assert val_losses(out)[-1] < val_losses(out)[0] - 1.0
    # Two graphs, each compiled once: evaluation (no grad) and the training step. Five evaluations and two
    # samples later, nothing was compiled again.
    assert p.stderr.count("Recompiling function") <= 1, p.stderr[-2000:]
    p = run("train.py", *common, "--max_iters=50", env=env, timeout=600)  # the same command, longer
    assert "resuming from" in p.stdout and "nats/char" in p.stdout
    assert p.stderr.count("Recompiling function") <= 1, p.stderr[-2000:]
    s = run("sample.py", f"--checkpoint={out}", "-p", "The", "-m", "16", "--device=cuda", "--seed=1")
    assert s.stdout.startswith("The") and len(s.stdout) > 3


def test_fp16_with_grad_scaler(tmp_path, bpe_data):
    out = tmp_path / "out"
    p = run("train.py", *SMALL, f"--dataset={bpe_data}", f"--out_dir={out}", "--dtype=float16", "--compile=False",
            "--max_iters=40", "--eval_interval=20", "--sample_interval=0", "--final_eval=False")
    assert "cuda, float16" in p.stdout
    assert val_losses(out)[-1] < val_losses(out)[0] - 1.0
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ckpt["scaler"]["scale"] > 0  # the loss scale is saved, so a resumed run keeps it


def test_torchrun_nccl(tmp_path, bpe_data):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py",
           *SMALL, f"--dataset={bpe_data}", f"--out_dir={out}", "--compile=False", "--max_iters=10",
           "--eval_interval=10", "--gradient_accumulation_steps=2", "--sample_interval=0", "--final_eval=False"]
    p = run(cmd, timeout=300)
    assert "device: cuda:0" in p.stdout and (out / "ckpt.pt").exists()


def test_kv_cache_decoding_equals_uncached_on_cuda():
    model = tiny().cuda()
    x = torch.randint(0, 60, (3, 5), device="cuda")
    a_tok, a_logits = steps(model, x, 30, temperature=0, vocab_limit=60)
    b_tok, b_logits = steps(model, x, 30, temperature=0, vocab_limit=60, use_cache=False)
    assert torch.equal(a_tok, b_tok) and (a_logits - b_logits).abs().max().item() < 1e-4


def test_bench_reports_both_peaks():
    p = run("bench/bench.py", "--n_layer=2", "--n_head=2", "--n_embd=64", "--block_size=64", "--batch_size=8",
            "--vocab_size=512", "--steps=3", "--warmup=2", "--device=cuda", "--compile=False")
    assert "MFU:" in p.stdout and "matmul peak measured in this process" in p.stdout
