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

import glob
import os
import sys

import numpy as np

from data.corpus import expand_inputs
from data.shards import Batches, read_meta, windows
from data.tokenizer import check_fits, load_tokenizer
from support import ckpt, hellaswag, loss_eval
from support.common import ArgumentParser, one_line_errors
from support.devices import autocast, resolve_device


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
    # a binary file would be scored as junk tokens: refused as data/prepare.py refuses it (its
    # --input also takes globs and lists, which a file's own name must not be read as)
    if args.input is not None and os.path.isfile(args.input) and "," not in args.input:
        expand_inputs(glob.escape(args.input))
    return args


def main(argv=None):
    args = parse_args(argv)
    device, dtype = resolve_device(args.device, "auto")
    examples = None if args.hellaswag is None else hellaswag.examples(args.hellaswag, args.limit)
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
    # the same scoring as train.py's hellaswag_interval (support/hellaswag.py)
    r = hellaswag.score(model, tok, examples, device, ctx)
    print(f"hellaswag: {r['right']}/{r['n']} acc_norm {r['acc_norm']:.4f}, acc {r['acc']:.4f}")


if __name__ == "__main__":
    one_line_errors()
    main()
