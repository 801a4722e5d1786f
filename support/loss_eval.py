"""
The loss of a model over a text: train.py's evaluations, and over every token of a text, its final
report and eval.py's numbers.
Reported in nats per token and perplexity, which depend on the tokenizer, and in nats per character
and bits per byte, which let models with different tokenizers be compared.
"""

import math
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

from data.shards import to_device, windows


@torch.no_grad()
def estimate_loss(model, splits: dict, eval_iters: int, seed: int, ctx, stop, rank: int = 0,
                  world: int = 1) -> dict | None:
    """train.py's evaluations: the mean loss over eval_iters batches of each split (name: Batches),
    shared out over the processes. The same batches each time, from their own generator, so that
    evaluations compare and the training's random states are untouched. None if stop() said so."""
    out = {}
    model.eval()
    for i, (split, data) in enumerate(splits.items()):
        starts = data.draw(torch.Generator().manual_seed(seed + 1000 + i), eval_iters)
        total = torch.zeros(2, device=data.device)
        # every process takes as many turns, so that all of them can agree to stop at any one
        for k in tqdm(range(0, eval_iters, world), desc=f"eval {split}", leave=False,
                      disable=rank != 0 or not sys.stderr.isatty()):
            # Ctrl-C: an evaluation cut off is dropped, never logged
            if stop():
                model.train()
                return None
            if k + rank < eval_iters:
                X, Y = data.get(starts[k + rank])
                with ctx:
                    _, loss = model(X, Y)
                total += torch.stack([loss.float(), torch.ones((), device=data.device)])
        if world > 1:
            dist.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    model.train()
    return out


@torch.no_grad()
def total_loss(model, batches, n_vocab: int, device: str, ctx, desc: str = "eval"):
    """(the cross-entropy summed over every target, in nats; the number of targets) over batches of
    token rows (B, T+1). The logits cover only the tokenizer's n_vocab real tokens (text never holds
    the padded rows), and are formed 1,024 rows at a time into one buffer, so the (tokens x
    vocabulary) tensor is never written out."""
    was_training, nats, count = model.training, 0.0, 0
    model.eval()
    weight = model.lm_head.weight[:n_vocab].float()
    buf = torch.empty(1024, n_vocab, device=weight.device)
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, disable=not sys.stderr.isatty())
    for rows in bar:
        x, y = to_device(rows, device, n_vocab)
        with ctx:
            hidden = model.hidden_states(x)
        hidden, y = hidden.float().view(-1, hidden.size(-1)), y.reshape(-1)
        for s in range(0, len(y), len(buf)):
            h, t = hidden[s : s + len(buf)], y[s : s + len(buf)]
            logits = torch.mm(h, weight.t(), out=buf[: len(t)])
            target, top = logits.gather(1, t[:, None]), logits.amax(dim=1, keepdim=True)
            # log-sum-exp less the target's logit, shifted by the row's max so exp cannot overflow
            lse = top + logits.sub_(top).exp_().sum(dim=1, keepdim=True).log()
            nats += (lse - target).sum().item()
        count += len(y)
    model.train(was_training)
    return nats, count


def report(nats: float, count: int, chars: int, n_bytes: int) -> dict:
    """The four measures of one total loss, under the names log.jsonl and eval.py's lines use."""
    # exp(710) and above overflows a float: a diverged model gets a huge perplexity, not an error
    return dict(nats_per_token=nats / count, nats_per_char=nats / chars,
                bits_per_byte=nats / n_bytes / math.log(2),
                perplexity=math.exp(min(nats / count, 700)))


def final_report(model, shards, split: dict, block_size: int, batch_size: int, n_vocab: int,
                 device: str, ctx) -> dict:
    """train.py's last lines: the loss over every token of the val split (its shards, in windows
    of the model's context), printed, and returned as log.jsonl's entry names it."""
    t0 = time.time()
    # Ctrl-C may come as soon as this line is out: train.py leaves the report out then
    print(f"final report: the loss over all {split['tokens']:,} val tokens...")
    nats, count = total_loss(model, windows(shards, block_size, batch_size), n_vocab, device, ctx,
                             desc="final eval")
    r = report(nats, count, split["chars"], split["bytes"])
    print(f"final val over all {count:,} tokens: {r['nats_per_token']:.4f} nats/token, "
          f"{r['nats_per_char']:.4f} nats/char, {r['bits_per_byte']:.4f} bits/byte "
          f"({time.time() - t0:.0f} s)")
    return dict(final_val_loss=r["nats_per_token"], val_nats_per_char=r["nats_per_char"],
                val_bits_per_byte=r["bits_per_byte"])
