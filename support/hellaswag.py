"""
HellaSwag, scored as karpathy's build-nanogpt scores it: eval.py's `--hellaswag` and train.py's
`hellaswag_interval` share this code, so both give the same number for the same weights.

Each example is a context and 4 endings, one of them right. Each ending, with a leading space,
follows the context; acc picks the ending with the lowest total loss over its tokens, acc_norm the
lowest mean loss per token. OpenAI's GPT-2 124M scores acc_norm 0.2955 on the val split this way.
"""

import contextlib
import json
import os
import sys
import urllib.request

import torch
import torch.distributed as dist
from torch.nn import functional as F
from tqdm import tqdm

from data.shards import DATA_ROOT
from support.common import atomic_write

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{}.jsonl"


def examples(source: str, limit: int | None = None) -> list[dict]:
    """The first `limit` examples of a .jsonl file in HellaSwag's format, or of a split of the
    official one (downloaded once into data/hellaswag/)."""
    path = source
    if source in ("train", "val", "test") and not os.path.exists(source):
        path = os.path.join(DATA_ROOT, "hellaswag", f"hellaswag_{source}.jsonl")
        try:
            if not os.path.exists(path):
                with urllib.request.urlopen(URL.format(source), timeout=60) as r:
                    atomic_write(path, lambda f: f.write(r.read()))
        # offline, server or disk: the same two ways out, and no empty folder left behind
        except Exception as e:
            with contextlib.suppress(OSError):
                os.removedirs(os.path.dirname(path))
            raise ValueError(f"cannot download HellaSwag's {source} split ({type(e).__name__}): it "
                             f"needs the internet once (then data/hellaswag/ keeps it), or pass a "
                             f"local .jsonl path") from None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()[:limit]
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}): give a HellaSwag .jsonl file, "
                         f"or a split: val, train or test") from None
    if not lines:
        raise ValueError(f"{path} holds no examples")
    found = []
    for n, line in enumerate(lines, 1):
        ex = example(line)
        if ex is None:
            raise ValueError(f"{path} line {n} is not a HellaSwag example (a JSON object with a "
                             f"ctx, 4 endings and a label from 0 to 3)")
        found.append(ex)
    return found


def example(line: str) -> dict | None:
    """The example on a line of HellaSwag's .jsonl: a JSON object with a string ctx, 4 string
    endings and a label from 0 to 3; None for anything else."""
    try:
        ex = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ex, dict) or not isinstance(ex.get("ctx"), str) or \
            ex.get("label") not in range(4):
        return None
    endings = ex.get("endings")
    if not isinstance(endings, list) or len(endings) != 4 or \
            not all(isinstance(ending, str) for ending in endings):
        return None
    return ex


@torch.no_grad()
def ending_losses(model, tok, ex: dict, device: str, ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """The total and the mean loss over each ending's tokens, after the context; the 4 rows as one
    batch."""
    context, block_size = tok.encode(ex["ctx"]), model.config.block_size
    # GPT-2's words start with their space
    endings = [tok.encode(" " + ending) for ending in ex["endings"]]
    # a row longer than the model's context is cut on the left
    rows = [(context + ending)[-block_size:] for ending in endings]
    # padded at the end, which causal attention never lets the real tokens see
    x = torch.zeros(4, max(map(len, rows)), dtype=torch.long)
    mask = torch.zeros_like(x, dtype=torch.bool)
    for i, (row, ending) in enumerate(zip(rows, endings)):
        x[i, : len(row)] = torch.tensor(row)
        mask[i, max(len(row) - len(ending), 0) : len(row)] = True
    # the targets are x shifted by one, and so is their mask
    x, mask = x.to(device), mask[:, 1:].to(device)
    with ctx:
        logits = F.linear(model.hidden_states(x), model.lm_head.weight[: tok.n_vocab])
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(),
                             reduction="none")
    total = (losses.view(4, -1) * mask).sum(dim=1)
    return total, total / mask.sum(dim=1)


@torch.no_grad()
def score(model, tok, found: list[dict], device: str, ctx, rank: int = 0, world: int = 1,
          stop=None) -> dict | None:
    """acc_norm and acc over the examples; under DDP each process scores every world-th one and
    the counts are summed, so every process returns the same numbers. None as soon as stop()
    returns True (Ctrl-C: every process must call it as often, as it may all-reduce)."""
    was_training = model.training
    model.eval()
    # the examples that the lowest mean loss, and the lowest total loss, get right
    right = torch.zeros(2, device=device)
    # every process takes as many turns, the last ones empty where the examples run out
    turns = range(0, len(found), world)
    # a progress bar on rank 0's terminal, never in a log file
    for k in tqdm(turns, desc="hellaswag", unit="example", leave=False,
                  disable=rank != 0 or not sys.stderr.isatty()):
        if stop is not None and stop():
            model.train(was_training)
            return None
        if k + rank >= len(found):
            continue
        ex = found[k + rank]
        total, mean = ending_losses(model, tok, ex, device, ctx)
        right[0] += int(mean.argmin()) == ex["label"]
        right[1] += int(total.argmin()) == ex["label"]
    if world > 1:
        dist.all_reduce(right)
    model.train(was_training)
    acc_norm, acc = (int(r) for r in right.tolist())
    return dict(acc_norm=acc_norm / len(found), acc=acc / len(found), right=acc_norm,
                n=len(found))


def for_training(source: str, limit: int, tok, ddp: bool, master: bool) -> list[dict]:
    """train.py's examples: rank 0 downloads them once while the other processes wait, then they
    read its file; a tokenizer that cannot encode them is refused before training starts."""
    if ddp and not master:
        dist.barrier()
    found = examples(source, limit or None)
    if ddp and master:
        dist.barrier()
    check_encodes(tok, found)
    return found


def check_encodes(tok, found: list[dict]):
    """A character vocabulary cannot encode a character its text never had: say so before a run
    spends its time, naming the first example that fails."""
    for n, ex in enumerate(found, 1):
        try:
            for text in (ex["ctx"], *ex["endings"]):
                tok.encode(" " + text)
        except ValueError as e:
            raise ValueError(f"HellaSwag example {n} cannot be encoded by the {tok.name} tokenizer "
                             f"({e}): HellaSwag needs a tokenizer that covers English text "
                             f"(gpt2 or a BPE)") from None
