"""
Evaluate a checkpoint: its loss over every token of a text, or its HellaSwag accuracy.

    python eval.py --checkpoint=out-shakespeare --input=data/shakespeare    # a data folder's val split
    python eval.py --checkpoint=gpt2 --input=my_text.txt --block_size=256   # a text file, as one document
    python eval.py --checkpoint=gpt2 --hellaswag=val                        # downloads it once

The loss (nats/token, nats/char, bits/byte, perplexity) is computed by loss_eval.py, as in train.py's final
report: on a data folder's split, the same numbers. HellaSwag is scored as in karpathy's build-nanogpt: each
ending, with a leading space, follows the context; acc picks the ending with the lowest total loss over its
tokens, acc_norm the lowest mean. OpenAI's GPT-2 124M scores acc_norm 0.2955 on the val split this way.
"""

import json
import os
import sys
import urllib.request

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from data.shards import DATA_ROOT, Batches, read_meta, windows
from data.tokenizer import load_tokenizer
from support import ckpt, loss_eval
from support.common import ArgumentParser, atomic_write, one_line_errors
from support.devices import autocast, resolve_device

HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{}.jsonl"


def report_loss(model, tok, source: str, split: str, block_size: int, batch_size: int, device: str, ctx):
    """Print the loss over every token of a text file, or of a data folder's split."""
    if os.path.isdir(source):
        meta = read_meta(source)
        if load_tokenizer(source, meta).to_dict() != tok.to_dict():
            raise ValueError(f"{source} was prepared with another tokenizer than the checkpoint's: give the text "
                             f"file, or prepare it with --tokenizer=CHECKPOINT")
        shards = Batches(source, meta, split, block_size, batch_size, device).shards  # as train.py reads them
        chars, n_bytes = meta["splits"][split]["chars"], meta["splits"][split]["bytes"]
    else:
        with open(source, encoding="utf-8", errors="replace", newline="") as f:  # newline="": as prepare.py counts
            text = f.read()
        shards, chars, n_bytes = [np.array(tok.encode(text))], len(text), len(text.encode("utf-8"))
        if len(shards[0]) < 2:
            raise ValueError(f"{source} holds fewer than 2 tokens: there is nothing to predict")
    nats, count = loss_eval.total_loss(model, windows(shards, block_size, batch_size), tok.n_vocab, device, ctx)
    print(f"{source}{f' ({split} split)' if os.path.isdir(source) else ''}: {count:,} tokens")
    for key, value in loss_eval.report(nats, count, chars, n_bytes).items():
        print(f"{key.replace('_per_', '/') + ':':<12} {value:.4f}")  # nats_per_token -> nats/token


def hellaswag_examples(source: str, limit: int | None) -> list[dict]:
    """The first `limit` examples of a .jsonl file in HellaSwag's format, or of a split of the official one
    (downloaded once into data/hellaswag/)."""
    path = source
    if source in ("train", "val", "test") and not os.path.exists(source):
        path = os.path.join(DATA_ROOT, "hellaswag", f"hellaswag_{source}.jsonl")
        try:
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with urllib.request.urlopen(HELLASWAG_URL.format(source), timeout=60) as r:
                    atomic_write(path, lambda f: f.write(r.read()))
        except Exception as e:  # offline, server or disk: the same two ways out
            raise ValueError(f"cannot download HellaSwag's {source} split ({type(e).__name__}): it needs the internet "
                             f"once (then data/hellaswag/ keeps it), or pass a local .jsonl path") from None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()[:limit]
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}): give a HellaSwag .jsonl file, or a split: val, "
                         f"train or test") from None
    if not lines:
        raise ValueError(f"{path} holds no examples")
    examples = []
    for n, line in enumerate(lines, 1):
        try:
            ex = json.loads(line)
            assert isinstance(ex["ctx"], str) and ex["label"] in range(4) and len(ex["endings"]) == 4
            assert all(isinstance(ending, str) for ending in ex["endings"])
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ValueError(f"{path} line {n} is not a HellaSwag example (a JSON object with a ctx, 4 endings and "
                             f"a label from 0 to 3)") from None
        examples.append(ex)
    return examples


@torch.no_grad()
def ending_losses(model, tok, ex: dict, device: str, ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """The total and the mean loss over each ending's tokens, after the context; the 4 rows as one batch."""
    context, block_size = tok.encode(ex["ctx"]), model.config.block_size
    endings = [tok.encode(" " + ending) for ending in ex["endings"]]  # GPT-2's words start with their space
    rows = [(context + ending)[-block_size:] for ending in endings]  # longer than the model's context: cut left
    x = torch.zeros(4, max(map(len, rows)), dtype=torch.long)  # padded at the end, which causal attention never sees
    mask = torch.zeros_like(x, dtype=torch.bool)
    for i, (row, ending) in enumerate(zip(rows, endings)):
        x[i, : len(row)] = torch.tensor(row)
        mask[i, max(len(row) - len(ending), 0) : len(row)] = True
    x, mask = x.to(device), mask[:, 1:].to(device)  # the targets are x shifted by one, and so is their mask
    with ctx:
        logits = F.linear(model.hidden_states(x), model.lm_head.weight[: tok.n_vocab])
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
    total = (losses.view(4, -1) * mask).sum(dim=1)
    return total, total / mask.sum(dim=1)


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--checkpoint", "--init_from", default=None, help="a .pt file or a folder holding ckpt.pt "
                        "(default: checkpoint/); or gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face folder")
    parser.add_argument("--input", help="a text file (one document), or a data folder made by data/prepare.py")
    parser.add_argument("--split", default="val", choices=["val", "train"], help="a data folder's split (default val)")
    parser.add_argument("--batch_size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--block_size", type=int, default=None, help="tokens per window (default: the model's)")
    parser.add_argument("--hellaswag", metavar="PATH_OR_SPLIT", help="instead, HellaSwag: a .jsonl file in its "
                        "format, or the split val, train or test (downloaded once into data/hellaswag/)")
    parser.add_argument("--limit", type=int, default=None, help="HellaSwag: the first N examples only (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default auto)")
    args = parser.parse_args(argv)
    if (args.input is None) == (args.hellaswag is None):  # every option is checked before the model loads
        raise ValueError("give either --input (a text file or a data folder) or --hellaswag (a .jsonl file or split)")
    if args.batch_size < 1 or any(v is not None and v < 1 for v in (args.block_size, args.limit)):
        raise ValueError("--batch_size, --block_size and --limit must be at least 1")
    if args.input is not None and not os.path.exists(args.input):
        raise ValueError(f"--input {args.input} not found: give a text file or a data folder made by data/prepare.py")
    device, dtype = resolve_device(args.device, "auto")
    examples = None if args.hellaswag is None else hellaswag_examples(args.hellaswag, args.limit)
    model, tok, desc, _ = ckpt.load_for_inference(args.checkpoint, device)
    print(f"model: {desc}", file=sys.stderr)
    block_size, ctx = args.block_size or model.config.block_size, autocast(device, dtype)
    if block_size > model.config.block_size:
        raise ValueError(f"--block_size={block_size} is longer than the model's context ({model.config.block_size})")
    if examples is None:
        return report_loss(model, tok, args.input, args.split, block_size, args.batch_size, device, ctx)
    acc = acc_norm = 0  # the examples the lowest total loss, and the lowest mean loss, get right
    for ex in tqdm(examples, desc="hellaswag", unit="example", leave=False, disable=not sys.stderr.isatty()):
        total, mean = ending_losses(model, tok, ex, device, ctx)
        acc += int(total.argmin()) == ex["label"]
        acc_norm += int(mean.argmin()) == ex["label"]
    n = len(examples)
    print(f"hellaswag: {acc_norm}/{n} acc_norm {acc_norm / n:.4f}, acc {acc / n:.4f}")


if __name__ == "__main__":
    one_line_errors()
    main()
