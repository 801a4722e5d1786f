"""
CPU fast paths: the same numbers as model.py computes, sooner (for dropout, masks drawn from the same
distribution; under bf16 autocast, attention in float32). A reader of the model can skip this file.

    use_cpu_training(model)      train.py on a CPU, the three below together:
      use_chunked_loss(model)    lm_head + cross-entropy in chunks of rows
      use_fast_dropout(model)    dropout masks drawn as random integers
      use_fast_attention(model)  attention while training: in float32 under bf16 autocast, and
                                 written out with integer dropout masks when it has dropout
    with row_blocks(model, V):   GPT.generate on a CPU, and sample.py around all its decoding: each
                                 Linear reads its weight as one block of rows per thread

Each replaces forward methods on one model instance, and says so where it is switched on:
train.py names the loss it computes and the dropout it draws, GPT.forward says where the CPU's loss
lives, and GPT.generate says why it decodes through row_blocks. docs/performance.md has the measurements and
the commands that take them.
"""

import functools
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn import functional as F


class ChunkedLMHeadLoss(torch.autograd.Function):
    """lm_head + mean cross-entropy (ignore_index=-1), computed `chunk` rows at a time, gradient
    included.

    With a 50k vocabulary the (rows x vocab) logits are most of a small model's work, and on a CPU
    the plain path spends much of the step writing that tensor, its softmax and its gradient to
    memory and reading them back. Here each chunk's logits become their gradient
    (softmax - one_hot) / n while still in cache and are used at once for the gradients of the
    hidden states and of the weight; backward only scales them."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk: int):
        # x: (N, C) final hidden states, weight: (V, C) lm_head, targets: (N,) with -1 = ignore
        valid = targets != -1
        # no valid target gives 0/0 = nan, as F.cross_entropy does
        n = valid.sum().to(x.dtype)
        loss, grad_x, grad_w = x.new_zeros(()), torch.empty_like(x), torch.zeros_like(weight)
        # one logits buffer, reused: no page faults from a fresh allocation per chunk
        buf = x.new_empty(min(chunk, x.size(0)), weight.size(0))
        for s in range(0, x.size(0), chunk):
            xc, tc, vc = x[s : s + chunk], targets[s : s + chunk].clamp(min=0), valid[s : s + chunk]
            logits = torch.mm(xc, weight.t(), out=buf[: xc.size(0)])
            target_logit = logits.gather(1, tc[:, None])
            m = logits.amax(dim=1, keepdim=True)
            # exp(logits - max), in place: the softmax's numerators
            g = logits.sub_(m).exp_()
            sum_exp = g.sum(dim=1, keepdim=True)
            # logsumexp - the target's logit, over the valid rows
            loss += ((m + sum_exp.log() - target_logit).squeeze(1) * vc).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot) / n on the valid rows
            scale = (vc / n)[:, None]
            g.mul_(scale / sum_exp)
            g.scatter_add_(1, tc[:, None], -scale)
            torch.mm(g, weight, out=grad_x[s : s + chunk])
            grad_w.addmm_(g.t(), xc)
        ctx.grads = [grad_x, grad_w]
        return loss / n

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.grads is None:
            raise RuntimeError("ChunkedLMHeadLoss keeps its gradients for one backward pass only")
        grad_x, grad_w = ctx.grads
        # handed over, not copied: scaling them in place saves two big allocations
        ctx.grads = None
        # grad_output is 1 unless the loss was scaled (gradient accumulation)
        if grad_output.item() != 1.0:
            grad_x.mul_(grad_output)
            grad_w.mul_(grad_output)
        return grad_x, grad_w, None, None


def use_chunked_loss(model, rows: int = 512):
    """From now on model(idx, targets) with gradients on returns (None, loss) through
    ChunkedLMHeadLoss: the same loss as GPT.forward's, without forming the whole logits. Without
    targets, or under no_grad, the model's own forward runs."""
    plain = model.forward

    def forward(idx, targets=None, **kwargs):
        if targets is None or not torch.is_grad_enabled():
            return plain(idx, targets, **kwargs)
        x = model.hidden_states(idx)
        return None, ChunkedLMHeadLoss.apply(x.reshape(-1, x.size(-1)), model.lm_head.weight,
                                             targets.reshape(-1), rows)

    # The swap: an instance attribute shadows GPT.forward for this model only, and
    # nn.Module.__call__ (hence DDP too) calls it. train.py says so where it calls this.
    model.forward = forward
    return model


class IntMaskDropout(torch.autograd.Function):
    """Dropout whose mask keeps each element where a random 15-bit integer is at least p * 32768,
    and scales the kept ones by 1 / (1 - that fraction): the same expectation as nn.Dropout's.

    On a CPU, nn.Dropout draws its mask with bernoulli_, a random float per element, and in
    attention it sends scaled_dot_product_attention down its unfused path: at dropout 0.25 those
    were a quarter of a training step of the committed checkpoint's model. Random integers come
    about four times faster."""

    @staticmethod
    def forward(ctx, x, p: float):
        dropped = round(p * 32768)
        keep = torch.empty(x.shape, dtype=torch.int16, device=x.device).random_() >= dropped
        ctx.save_for_backward(keep)
        ctx.scale = 32768 / (32768 - dropped)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None


def causal_attention(q, k, v, dropout: float):
    """softmax(q k^T / sqrt(head size), the future masked out) v, the attention weights dropped
    out through IntMaskDropout: scaled_dot_product_attention's numbers, written out."""
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    att = att.masked_fill(future, float("-inf")).softmax(dim=-1)
    return IntMaskDropout.apply(att, dropout) @ v


def _dropout_forward(module, x):
    return IntMaskDropout.apply(x, module.p) if module.training else x


def use_fast_dropout(model):
    """From now on the model's Dropout modules draw their masks through IntMaskDropout while
    training. It does nothing at dropout 0."""
    for m in model.modules():
        if isinstance(m, nn.Dropout) and m.p > 0:
            # The swap: an instance attribute shadows forward for this module only; train.py says so
            # where it calls this.
            m.forward = functools.partial(_dropout_forward, m)
    return model


def _attention_forward(attn, plain, x, kv=None, pos: int = 0):
    """CausalSelfAttention.forward while training; decoding and evaluation take the plain one."""
    if not attn.training or kv is not None:
        return plain(x, kv, pos)
    B, T, C = x.size()
    # (B, T, 3C) -> three of (B, n_head, T, head_size)
    q, k, v = attn.c_attn(x).view(B, T, 3, attn.n_head, C // attn.n_head).permute(2, 0, 3, 1, 4)
    if attn.dropout > 0:
        y = causal_attention(q, k, v, attn.dropout)
    else:
        # Under bf16 autocast SDPA would run its bf16 kernel, whose backward takes 2-4x as long as
        # float32's on a CPU: it runs in float32 here (in a float32 run, just as the model's own).
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    y = y.transpose(1, 2).reshape(B, T, C)
    return attn.resid_dropout(attn.c_proj(y))


def use_fast_attention(model):
    """From now on the model's attention, while training, runs in float32 without dropout (under
    bf16 autocast too) and, with dropout, is written out with its weights dropped through
    IntMaskDropout."""
    for m in model.modules():
        if hasattr(m, "c_attn"):
            m.forward = functools.partial(_attention_forward, m, m.forward)
    return model


def use_cpu_training(model):
    """train.py's CPU fast paths, all three: the chunked loss, integer dropout masks and the
    attention above."""
    return use_fast_attention(use_fast_dropout(use_chunked_loss(model)))


def _row_blocks(w: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight W (out, in) as n blocks of out // n rows, (n, out // n, in), and the out % n rows
    left over: views of W, nothing copied."""
    rows = w.size(0) // n
    return w[: n * rows].reshape(n, rows, w.size(1)), w[n * rows :]


def _blocked_linear(blocks, rest, bias, x):
    """x @ W.T + b: one bmm over the row blocks, which PyTorch spreads over the threads, each
    multiplying x by its own contiguous block; the few rows left over go through F.linear."""
    # (N, in)
    x2 = x.reshape(-1, x.size(-1))
    # (n, rows, N) -> (N, n * rows)
    y = torch.bmm(blocks, x2.t().expand(blocks.size(0), -1, -1)).view(-1, x2.size(0)).t()
    if rest.size(0):
        y = torch.cat((y, F.linear(x2, rest)), dim=1)
    y = y.reshape(*x.shape[:-1], y.size(1))
    return y if bias is None else y + bias


@contextmanager
def row_blocks(model, vocab_limit: int):
    """Inside this block every Linear of the model multiplies through its weight cut into one block
    of rows per thread (the output layer over the real vocabulary only), without gradients. CPU
    only: elsewhere, and inside a row_blocks block already, it does nothing.

    A decoding step with few rows is bound by reading every weight from memory once, and through
    F.linear a CPU's BLAS hardly splits that matrix-vector product over its threads. Viewed as one
    block of rows per thread and multiplied with one bmm, which PyTorch spreads over the blocks,
    each thread streams its own contiguous block. The blocks are views of the weights: entering
    costs microseconds and no memory, and the weights may change in place meanwhile."""
    held = "forward" in model.lm_head.__dict__
    if model.lm_head.weight.device.type != "cpu" or held:
        yield model
        return
    n = torch.get_num_threads()
    linears = [m for m in model.transformer.h.modules() if isinstance(m, nn.Linear)]
    linears.append(model.lm_head)
    for m in linears:
        w = (m.weight[:vocab_limit] if m is model.lm_head else m.weight).detach()
        # The swap: an instance attribute shadows nn.Linear.forward for this module only, until
        # the `del` below gives it back.
        m.forward = functools.partial(_blocked_linear, *_row_blocks(w, n), m.bias)
    try:
        yield model
    finally:
        for m in linears:
            del m.forward
