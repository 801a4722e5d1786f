"""The model: causality, GPT-2's init, shapes and the initial loss, the optimizer's groups, the
config's checks, the GELU variants, learning, FLOPs."""

import math

import pytest
import torch

from model import GPT, GPTConfig


def tiny(**kw):
    cfg = dict(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def test_causality():
    # changing a later token never changes the logits at earlier positions
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randint(0, 64, (2, 16))
    x2 = x.clone()
    x2[:, 10] = (x2[:, 10] + 1) % 64
    with torch.no_grad():
        # with targets: logits for every position
        a, _ = model(x, x)
        b, _ = model(x2, x2)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_init_statistics():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=512, n_layer=4, n_head=4, n_embd=256))
    sd = dict(model.named_parameters())
    assert sd["transformer.wte.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert sd["transformer.h.0.attn.c_attn.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    resid = 0.02 / math.sqrt(2 * 4)
    assert sd["transformer.h.0.attn.c_proj.weight"].std().item() == pytest.approx(resid, rel=0.05)
    assert sd["transformer.h.3.mlp.c_proj.weight"].std().item() == pytest.approx(resid, rel=0.05)
    assert all(p.abs().max() == 0 for n, p in sd.items() if n.endswith(".bias") and "ln" not in n)
    # tied
    assert model.lm_head.weight is model.transformer.wte.weight


def test_forward_shapes_and_initial_loss():
    torch.manual_seed(0)
    model = tiny()
    x, y = torch.randint(0, 64, (2, 3, 16))
    # the same with and without gradients, on every device
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 64) and loss.requires_grad
    with torch.no_grad():
        logits2, loss2 = model(x, y)
    assert torch.equal(logits, logits2) and loss.item() == loss2.item()
    # ~uniform at init
    assert loss.item() == pytest.approx(math.log(64), abs=0.3)
    logits, loss = model(x)
    assert logits.shape == (3, 1, 64) and loss is None
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_weight_decay_groups(capsys):
    model = tiny()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    assert "decayed" in capsys.readouterr().out
    # the fused AdamW on CPUs and CUDA; fused=False, or another device, leaves PyTorch's choice
    assert opt.defaults["fused"] is True
    for device, fused in (("cpu", False), ("mps", True)):
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), device, fused=fused)
        assert opt.defaults["fused"] is None


def test_crop_block_size():
    model = tiny()
    model.crop_block_size(8)
    assert model.config.block_size == 8 and model.transformer.wpe.weight.shape == (8, 32)
    assert model(torch.zeros(1, 8, dtype=torch.long))[0].shape == (1, 1, 64)
    # a longer context than the model has cannot be made up
    with pytest.raises(ValueError, match="block_size must be in 1..8, got 9"):
        model.crop_block_size(9)


@pytest.mark.parametrize("kw,msg", [(dict(n_embd=30, n_head=4), "divisible"),
                                    (dict(n_layer=0), "positive"),
                                    (dict(vocab_size=-5), "positive"),
                                    (dict(dropout=1.5), "dropout"),
                                    (dict(gelu="fast"), "gelu must be 'tanh' or 'exact'")])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**kw)


def test_gelu_exact_is_erf():
    # gelu="exact" swaps only the activation: same parameters, outputs within the approximation's
    # error of each other
    a, b = tiny(), tiny(gelu="exact")
    b.load_state_dict(a.state_dict())
    x = torch.randint(64, (2, 16))
    la, lb = a(x)[0], b(x)[0]
    assert not torch.equal(la, lb) and (la - lb).abs().max().item() < 1e-2
    h = torch.linspace(-4, 4, 101)
    erf_gelu = 0.5 * h * (1 + torch.erf(h / 2**0.5))
    assert torch.allclose(b.transformer.h[0].mlp.gelu(h), erf_gelu, atol=1e-6)


def test_loss_falls():
    # a tiny model learns a repeating sequence: loss drops well below ln(vocab) in a few dozen steps
    torch.manual_seed(0)
    model = tiny()
    opt = model.configure_optimizers(0.0, 3e-3, (0.9, 0.95), "cpu")
    seq = torch.arange(17) * 7 % 64
    x, y = seq[:-1].repeat(8, 1), seq[1:].repeat(8, 1)
    for _ in range(40):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * math.log(64)


def test_flops_per_token():
    model = tiny()
    n = model.get_num_params()
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 16
