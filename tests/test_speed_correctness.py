"""The speed work changes nothing but speed: the chunked lm_head + loss equals F.cross_entropy's
loss and gradients, training with it follows the same losses, and the time budget (max_seconds)
ends a run."""

import copy
import json

import pytest
import torch
from conftest import TINY, run
from torch.nn import functional as F

from model import GPT, GPTConfig
from support import devices
from support.speedups import (
    ChunkedLMHeadLoss,
    IntMaskDropout,
    causal_attention,
    use_chunked_loss,
    use_cpu_training,
    use_fast_attention,
    use_fast_dropout,
)


@pytest.mark.parametrize("rows,vocab,chunk",
                         [(37, 100, 8), (64, 50, 64), (7, 65, 3), (300, 257, 512)])
def test_chunked_loss_matches_cross_entropy(rows, vocab, chunk):
    # float64 so that any difference is a bug, not rounding; odd row counts leave a short last chunk
    torch.manual_seed(rows)
    x = torch.randn(rows, 16, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(vocab, 16, dtype=torch.float64)).requires_grad_()
    t = torch.randint(vocab, (rows,))
    # ignored positions count neither in the loss nor in the mean
    t[::4] = -1
    ref = F.cross_entropy(x @ w.t(), t, ignore_index=-1)
    # a grad_output other than 1
    ref_gx, ref_gw = torch.autograd.grad(ref * 1.7, (x, w))
    out = ChunkedLMHeadLoss.apply(x, w, t, chunk)
    gx, gw = torch.autograd.grad(out * 1.7, (x, w))
    assert out.item() == pytest.approx(ref.item(), abs=1e-12)
    assert torch.allclose(gx, ref_gx, atol=1e-12) and torch.allclose(gw, ref_gw, atol=1e-12)


def test_chunked_loss_second_backward_is_refused():
    # the gradients are handed over (and scaled in place) on the first backward: a second one must
    # fail loudly rather than return gradients scaled twice
    x = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(10, 4, requires_grad=True)
    out = ChunkedLMHeadLoss.apply(x, w, torch.randint(10, (8,)), 4)
    (out * 2).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass"):
        out.backward()


def test_model_gradients_match_plain_path():
    # the whole model in float32, tied weights: every parameter's gradient agrees with the plain
    # path
    torch.manual_seed(0)
    plain = GPT(GPTConfig(block_size=16, vocab_size=300, n_layer=2, n_head=2, n_embd=32))
    # 48 rows: 6 full chunks and a short one
    chunked = use_chunked_loss(copy.deepcopy(plain), rows=7)
    x, y = torch.randint(300, (2, 3, 16))
    y[0, :5] = -1

    def grads(model):
        logits, loss = model(x, y)
        assert (logits is None) == (model is chunked)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss_plain, g_plain = grads(plain)
    loss_chunked, g_chunked = grads(chunked)
    # without gradients the swapped forward runs the model's own: logits as usual
    with torch.no_grad():
        assert torch.equal(chunked(x, y)[0], plain(x, y)[0])
    assert loss_chunked == pytest.approx(loss_plain, abs=1e-6)
    for name, g in g_plain.items():
        assert torch.allclose(g_chunked[name], g, atol=1e-6, rtol=1e-4), name
    # wte, tied to lm_head: both gradients add up in one
    wte = "transformer.wte.weight"
    assert (g_chunked[wte] - g_plain[wte]).abs().max() < 1e-6


def test_training_losses_unchanged():
    # a few optimizer steps as train.py takes them (2 micro-steps, clipping, fused AdamW): the same
    # losses with and without chunks
    def losses(chunk_rows):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=16, vocab_size=200, n_layer=2, n_head=2, n_embd=32))
        opt = model.configure_optimizers(0.1, 3e-3, (0.9, 0.95), "cpu")
        if chunk_rows:
            use_chunked_loss(model, chunk_rows)
        gen = torch.Generator().manual_seed(1)
        out = []
        for _ in range(6):
            x, y = torch.randint(200, (2, 4, 16), generator=gen)
            total = 0.0
            for _ in range(2):
                loss = model(x, y)[1] / 2
                loss.backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            out.append(total)
        return out

    assert losses(0) == pytest.approx(losses(5), abs=1e-5)


# ~10 s on a quiet machine (4 s of training plus start-up and the final eval); slower when shared
def test_max_seconds_ends_run_and_reports(data_dir, tmp_path):
    # a time budget stops a run that max_iters would not, with the final eval and report
    out = tmp_path / "out"
    p = run("train.py", f"--dataset={data_dir}", f"--out_dir={out}", *TINY, "--max_iters=100000",
            "--max_seconds=4", "--eval_interval=100000", "--final_eval=True", "--peak_flops=1e12")
    assert "final val over all" in p.stdout
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    iters = [e["iter"] for e in entries if "loss" in e]
    assert 0 < iters[-1] < 100000
    assert entries[-1]["iter"] == iters[-1] and "val_nats_per_char" in entries[-1]
    # the learning rate decayed by time: the last steps ran close to min_lr
    lrs = [e["lr"] for e in entries if "loss" in e]
    assert lrs[-1] < 0.5 * max(lrs)


def test_bench_runs(tmp_path):
    p = run("bench/bench.py", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16",
            "--batch_size=2", "--vocab_size=128", "--gradient_accumulation_steps=1", "--device=cpu",
            "--steps=2", "--warmup=1", "--peak_flops=1e11", f"--dataset={tmp_path / 'none'}", "--profile=True")
    # --profile: the operators of our steps, the matmuls among them
    assert "aten::mm" in p.stdout and "Self CPU" in p.stdout
    for key in ("tokens/s:", "ms/iter:", "GFLOP/s", "MFU:", "peak memory:",
                "speed-up of our step over one with the plain loss",
                "speed-up of our step over a nanoGPT-equivalent one"):
        assert key in p.stdout
    # each alternating variant printed its own median step time
    for name in ("ours", "plain loss", "nanoGPT-equivalent"):
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(name + ":"))
        # "ours: 62.9 ms/iter, ..."
        assert float(line.partition(":")[2].split()[0]) > 0


def test_int_mask_dropout_keeps_the_expectation_and_its_gradient_uses_the_same_mask():
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = IntMaskDropout.apply(x, 0.25)
    kept = y != 0
    # about 1 - p of the elements kept, each scaled so that the mean stays 1
    assert abs(kept.float().mean().item() - 0.75) < 3e-3
    assert torch.all(y[kept] == y[kept][0]) and y[kept][0].item() == pytest.approx(1 / 0.75, rel=1e-4)
    assert y.mean().item() == pytest.approx(1.0, abs=5e-3)
    # the gradient of sum(y) flows through exactly the kept elements, scaled the same
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())


def test_causal_attention_is_scaled_dot_product_attentions():
    # float64, no dropout: the written-out attention gives SDPA's numbers, the future masked
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 9, 8, dtype=torch.float64)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(causal_attention(q, k, v, 0.0), ref, atol=1e-12)


def test_fast_dropout_swaps_every_dropout_while_training_only(monkeypatch):
    torch.manual_seed(0)
    cfg = dict(block_size=16, vocab_size=300, n_layer=2, n_head=2, n_embd=32)
    plain = GPT(GPTConfig(**cfg, dropout=0.2))
    fast = use_fast_attention(use_fast_dropout(copy.deepcopy(plain)))
    x, y = torch.randint(300, (2, 3, 16))
    calls = []
    apply = IntMaskDropout.apply
    monkeypatch.setattr(IntMaskDropout, "apply", lambda t, p: calls.append(p) or apply(t, p))
    # evaluating: no dropout, the model's own numbers
    plain.eval(), fast.eval()
    assert torch.equal(fast(x, y)[1], plain(x, y)[1]) and not calls
    # training: the embeddings' dropout, then per block the attention weights', attention's
    # output's and the MLP's, all through the integer masks
    fast.train()
    fast(x, y)[1].backward()
    assert calls == [0.2] * (1 + 3 * cfg["n_layer"])
    assert all(p.grad is not None for p in fast.parameters())
    # at dropout 0 no Dropout module is swapped
    none = use_fast_dropout(GPT(GPTConfig(**cfg, dropout=0.0)))
    assert not any("forward" in m.__dict__ for m in none.modules())


def test_fast_attention_without_dropout_is_the_models_in_float32():
    # float32, dropout 0: the swapped attention gives the model's loss and gradients
    torch.manual_seed(0)
    plain = GPT(GPTConfig(block_size=16, vocab_size=300, n_layer=2, n_head=2, n_embd=32))
    fast = use_fast_attention(copy.deepcopy(plain))
    x, y = torch.randint(300, (2, 3, 16))
    losses, grads = [], []
    for model in (plain, fast):
        loss = model(x, y)[1]
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)
    for name, g in grads[0].items():
        assert torch.allclose(grads[1][name], g, atol=1e-6, rtol=1e-4), name


def test_fast_attention_runs_in_float32_under_bf16_autocast(monkeypatch):
    # under bf16 autocast, SDPA would run its bf16 kernel (whose backward is slow on a CPU): while
    # training, the swapped attention runs it in float32; evaluating, the model's own bf16 one runs
    sdpa, seen = F.scaled_dot_product_attention, []

    def recorded(*args, **kwargs):
        y = sdpa(*args, **kwargs)
        seen.append(y.dtype)
        return y

    monkeypatch.setattr(F, "scaled_dot_product_attention", recorded)
    model = use_cpu_training(GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32)))
    x = torch.randint(64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, x)[1].backward()
        assert seen == [torch.float32] * 2
        model.eval()
        model(x, x)
    assert seen[2:] == [torch.bfloat16] * 2
    assert all(p.grad is not None for p in model.parameters())


def test_bfloat16_on_a_cpu_only_where_it_is_native(monkeypatch, capsys):
    # emulated bf16 matmuls are far slower than fp32 ones: asked for there, bf16 becomes float32
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert devices.resolve_device("cpu", "bfloat16") == ("cpu", "float32")
    assert "no native bfloat16" in capsys.readouterr().out
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert devices.resolve_device("cpu", "bfloat16") == ("cpu", "bfloat16")
    assert devices.resolve_device("cpu", "auto") == ("cpu", "float32")
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(not devices.cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_bfloat16_autocast_on_a_cpu_trains_like_float32(dropout):
    # train.py's CPU step (chunked loss, integer dropout masks, attention in float32 or written out,
    # fused AdamW) under bf16 autocast: its matmuls run in bf16, and it learns a batch by heart as
    # float32 does
    def run_steps(dtype):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=32, vocab_size=128, n_layer=2, n_head=2, n_embd=64, dropout=dropout))
        opt = model.configure_optimizers(0.0, 3e-3, (0.9, 0.95), "cpu")
        use_cpu_training(model)
        x, y = torch.randint(128, (2, 8, 32), generator=torch.Generator().manual_seed(1))
        out = []
        for _ in range(40):
            with devices.autocast("cpu", dtype):
                loss = model(x, y)[1]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            out.append(loss.item())
        with devices.autocast("cpu", dtype):
            kind = model.transformer.h[0].mlp.c_fc(torch.zeros(1, 64)).dtype
        return out, kind

    (fp32, kind32), (bf16, kind16) = run_steps("float32"), run_steps("bfloat16")
    assert (kind32, kind16) == (torch.float32, torch.bfloat16)
    assert bf16[-1] < bf16[0] - 2
    assert bf16 == pytest.approx(fp32, abs=0.05)
