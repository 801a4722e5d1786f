"""
CPU fast paths: the same numbers as model.py computes, sooner. A reader of the model can skip this file.

    use_chunked_loss(model)          train.py on a CPU: lm_head + cross-entropy in chunks of rows
    with decoding_copies(model, V):  sample.py on a CPU: each weight read as one block of rows per thread

Both are switched on from outside the model; model.py never refers to them. docs/performance.md has the
measurements and the commands that take them.
"""

import functools
from contextlib import contextmanager

import torch
import torch.nn as nn


class ChunkedLMHeadLoss(torch.autograd.Function):
    """lm_head + mean cross-entropy (ignore_index=-1), computed `chunk` rows at a time, gradient included.

    With a 50k vocabulary the (rows x vocab) logits are most of a small model's work, and on a CPU the plain
    path spends much of the step writing that tensor, its softmax and its gradient to memory and reading them
    back. Here each chunk's logits become their gradient (softmax - one_hot) / n while still in cache and are
    used at once for the gradients of the hidden states and of the weight; backward only scales them."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk: int):
        # x: (N, C) final hidden states, weight: (V, C) lm_head, targets: (N,) with -1 = ignore
        valid = targets != -1
        n = valid.sum().to(x.dtype)  # no valid target -> 0/0 = nan, as F.cross_entropy gives
        loss, grad_x, grad_w = x.new_zeros(()), torch.empty_like(x), torch.zeros_like(weight)
        buf = x.new_empty(min(chunk, x.size(0)), weight.size(0))  # one logits buffer, reused: no page faults
        for s in range(0, x.size(0), chunk):
            xc, tc, vc = x[s : s + chunk], targets[s : s + chunk].clamp(min=0), valid[s : s + chunk]
            logits = torch.mm(xc, weight.t(), out=buf[: xc.size(0)])
            target_logit = logits.gather(1, tc[:, None])
            m = logits.amax(dim=1, keepdim=True)
            g = logits.sub_(m).exp_()  # exp(logits - max), in place: the softmax's numerators
            sum_exp = g.sum(dim=1, keepdim=True)
            loss += ((m + sum_exp.log() - target_logit).squeeze(1) * vc).sum()  # logsumexp - target logit
            scale = (vc / n)[:, None]  # d(mean loss)/d(logits) = (softmax - one_hot) / n on the valid rows
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
        ctx.grads = None  # handed over, not copied: scaling them in place saves two big allocations
        if grad_output.item() != 1.0:  # 1 unless the loss was scaled (gradient accumulation)
            grad_x.mul_(grad_output)
            grad_w.mul_(grad_output)
        return grad_x, grad_w, None, None


def use_chunked_loss(model, rows: int = 512):
    """From now on model(idx, targets) with gradients on returns (None, loss) through ChunkedLMHeadLoss: the
    logits are never formed whole. Without targets, or under no_grad, the model's own forward runs."""
    plain = model.forward

    def forward(idx, targets=None, **kwargs):
        if targets is None or not torch.is_grad_enabled():
            return plain(idx, targets, **kwargs)
        x = model.hidden_states(idx)
        loss = ChunkedLMHeadLoss.apply(x.reshape(-1, x.size(-1)), model.lm_head.weight, targets.reshape(-1), rows)
        return None, loss

    model.forward = forward  # an instance attribute: nn.Module.__call__ and DDP call it
    return model


def _row_blocks(w: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of the weight W (out, in) as n equal blocks of rows (n, ceil(out / n), in), zero-padded."""
    rows = -(-w.size(0) // n)
    blocks = w.new_zeros(n * rows, w.size(1))
    blocks[: w.size(0)] = w
    return blocks.view(n, rows, w.size(1))


def _blocked_linear(blocks, n_out, bias, x):
    """x @ W.T + b through the row blocks: one bmm, each thread multiplying x by its own block."""
    x2 = x.reshape(-1, x.size(-1))  # (N, in)
    y = torch.bmm(blocks, x2.t().expand(blocks.size(0), -1, -1))  # (n, rows, N)
    y = y.view(-1, x2.size(0))[:n_out].t().reshape(*x.shape[:-1], n_out)
    return y if bias is None else y + bias


@contextmanager
def decoding_copies(model, vocab_limit: int):
    """Inside this block every Linear of the model multiplies through row-block copies of its weight (the
    output layer over the real vocabulary only); the weights must not change meanwhile. CPU only: elsewhere
    it does nothing.

    A decoding step with few rows is bound by reading every weight from memory once, and through F.linear a
    CPU's BLAS hardly splits that matrix-vector product over its threads. Cut into one block of rows per
    thread and multiplied with one bmm, which PyTorch spreads over the blocks, each thread streams its own
    contiguous block. Making the copies takes about a second on GPT-2 124M and doubles the weights' memory,
    so hold the block around all the generating a process does."""
    if model.lm_head.weight.device.type != "cpu":
        yield model
        return
    n = torch.get_num_threads()
    linears = [m for m in model.transformer.h.modules() if isinstance(m, nn.Linear)] + [model.lm_head]
    for m in linears:
        w = m.weight[:vocab_limit] if m is model.lm_head else m.weight
        m.forward = functools.partial(_blocked_linear, _row_blocks(w.detach(), n), w.size(0), m.bias)
    try:
        yield model
    finally:
        for m in linears:
            del m.forward  # the class's forward again
