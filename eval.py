"""
Evaluate a checkpoint: its loss over every token of a text, or its HellaSwag accuracy.

    python eval.py --checkpoint=out-shakespeare --input=data/shakespeare  # a data folder: val
    python eval.py --checkpoint=gpt2 --input=my_text.txt --block_size=256 # a text file, whole
    python eval.py --checkpoint=gpt2 --hellaswag=val                      # downloads it once

The loss (nats/token, nats/char, bits/byte, perplexity) is computed by loss_eval.py, as in
train.py's final report: on a data folder's split, the same numbers. HellaSwag is scored as in
karpathy's build-nanogpt: each ending, with a leading space, follows the context; acc picks the
ending with the lowest total loss over its tokens, acc_norm the lowest mean. OpenAI's GPT-2 124M
scores acc_norm 0.2955 on the val split this way.
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
from data.tokenizer import check_fits, load_tokenizer
from support import ckpt, loss_eval
from support.common import ArgumentParser, atomic_write, one_line_errors
from support.devices import autocast, resolve_device

HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{}.jsonl"


def report_loss(model, tok, name: str, source: str, split: str, block_size: int, batch_size: int,
                device: str, ctx):
    """Print the loss of the model (`name` in errors) over every token of a text file, or of a data
    folder's split."""
    if os.path.isdir(source):
        meta = read_meta(source)
        check_fits(tok, model.config.vocab_size, name, load_tokenizer(source), source)
        # the shards as train.py reads them
        shards = Batches(source, meta, split, block_size, batch_size, device).shards
        chars, n_bytes = meta["splits"][split]["chars"], meta["splits"][split]["bytes"]
    else:
        # newline="": characters counted as prepare.py counts them
        with open(source, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
        shards, chars, n_bytes = [np.array(tok.encode(text))], len(text), len(text.encode("utf-8"))
        if len(shards[0]) < 2:
            raise ValueError(f"{source} holds fewer than 2 tokens: there is nothing to predict")
    batches = windows(shards, block_size, batch_size)
    nats, count = loss_eval.total_loss(model, batches, tok.n_vocab, device, ctx)
    print(f"{source}{f' ({split} split)' if os.path.isdir(source) else ''}: {count:,} tokens")
    for key, value in loss_eval.report(nats, count, chars, n_bytes).items():
        # a key such as nats_per_token is shown as nats/token
        print(f"{key.replace('_per_', '/') + ':':<12} {value:.4f}")


def hellaswag_examples(source: str, limit: int | None) -> list[dict]:
    """The first `limit` examples of a .jsonl file in HellaSwag's format, or of a split of the
    official one (downloaded once into data/hellaswag/)."""
    path = source
    if source in ("train", "val", "test") and not os.path.exists(source):
        path = os.path.join(DATA_ROOT, "hellaswag", f"hellaswag_{source}.jsonl")
        try:
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with urllib.request.urlopen(HELLASWAG_URL.format(source), timeout=60) as r:
                    atomic_write(path, lambda f: f.write(r.read()))
        # offline, server or disk: the same two ways out
        except Exception as e:
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
    examples = []
    for n, line in enumerate(lines, 1):
        ex = hellaswag_example(line)
        if ex is None:
            raise ValueError(f"{path} line {n} is not a HellaSwag example (a JSON object with a "
                             f"ctx, 4 endings and a label from 0 to 3)")
        examples.append(ex)
    return examples


def hellaswag_example(line: str) -> dict | None:
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


def parse_args(argv):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--checkpoint", "--init_from", default=None,
                        help="a .pt file or a folder holding ckpt.pt (default: checkpoint/); or "
                        "gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face folder")
    parser.add_argument("--input", help="a text file (one document), or a data folder made by "
                        "data/prepare.py")
    parser.add_argument("--split", default="val", choices=["val", "train"],
                        help="a data folder's split (default val)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="windows per forward pass (default 8)")
    parser.add_argument("--block_size", type=int, default=None,
                        help="tokens per window (default: the model's)")
    parser.add_argument("--hellaswag", metavar="PATH_OR_SPLIT", help="instead, HellaSwag: a .jsonl "
                        "file in its format, or the split val, train or test (downloaded once into "
                        "data/hellaswag/)")
    parser.add_argument("--limit", type=int, default=None,
                        help="HellaSwag: the first N examples only (default: all)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:1 or mps (default auto)")
    args = parser.parse_args(argv)
    # every option is checked before the model loads
    if (args.input is None) == (args.hellaswag is None):
        raise ValueError("give either --input (a text file or a data folder) or --hellaswag (a "
                         ".jsonl file or split)")
    if args.batch_size < 1 or any(v is not None and v < 1 for v in (args.block_size, args.limit)):
        raise ValueError("--batch_size, --block_size and --limit must be at least 1")
    if args.input is not None and not os.path.exists(args.input):
        raise ValueError(f"--input {args.input} not found: give a text file or a data folder made "
                         f"by data/prepare.py")
    return args


def main(argv=None):
    args = parse_args(argv)
    device, dtype = resolve_device(args.device, "auto")
    examples = None if args.hellaswag is None else hellaswag_examples(args.hellaswag, args.limit)
    model, tok, desc, _ = ckpt.load_for_inference(args.checkpoint, device)
    print(f"model: {desc}", file=sys.stderr)
    block_size, ctx = args.block_size or model.config.block_size, autocast(device, dtype)
    if block_size > model.config.block_size:
        raise ValueError(f"--block_size={block_size} is longer than the model's context "
                         f"({model.config.block_size})")
    if examples is None:
        name = args.checkpoint or ckpt.DEFAULT
        return report_loss(model, tok, name, args.input, args.split, block_size, args.batch_size,
                           device, ctx)
    # the examples that the lowest total loss, and the lowest mean loss, get right
    acc = acc_norm = 0
    bar = tqdm(examples, desc="hellaswag", unit="example", leave=False,
               disable=not sys.stderr.isatty())
    for ex in bar:
        total, mean = ending_losses(model, tok, ex, device, ctx)
        acc += int(total.argmin()) == ex["label"]
        acc_norm += int(mean.argmin()) == ex["label"]
    n = len(examples)
    print(f"hellaswag: {acc_norm}/{n} acc_norm {acc_norm / n:.4f}, acc {acc / n:.4f}")


if __name__ == "__main__":
    one_line_errors()
    main()
