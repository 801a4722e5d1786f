"""
Sample text from a trained model.

    python sample.py                                   # the committed checkpoint in checkpoint/
    python sample.py -p "ROMEO:" -m 300 -n 3 --seed=7
    python sample.py --checkpoint=out -p "Hello, I'm a language model," --top_k=100
    python sample.py -p "ROMEO:" -p "JULIET:" --top_p=0.9 --stop=$'\\n\\n' --out=samples.jsonl
    python sample.py --prompt_file=titles.txt --prompts_per_line -m 30 --no_prompt
    python sample.py -i                                # type a prompt, read what follows; repeat
    python sample.py --out_dir=out --start=FILE:prompt.txt --num_samples=5    # nanoGPT's flags too

Each prompt runs through the model once, then one token per step with the keys and values cached
(model.generate); its -n samples, and other prompts of the same length in tokens, run as one batch.
A sample ends at <|endoftext|>, where a document ends (unless --no_stop), at a --stop text (cut
before it), or after -m tokens. The checkpoint carries its config and tokenizer. Programs can call
generate_text() (support/generation.py).
"""

import argparse
import functools
import json
import sys

import torch

from model import check_sampling
from support import ckpt, speedups
from support.common import ArgumentParser, atomic_write, in_range, one_line_errors
from support.devices import autocast, resolve_device
from support.generation import generate_text, prompts_of, streams


def main(argv=None):
    args = parse_args(argv)
    # the sampling options, the prompts and the output flags are checked before the model loads
    check_sampling(args.temperature, args.top_k or None, args.top_p, args.repetition_penalty)
    prompts, out = prompts_of(args), args.out
    stream = streams(args, prompts)
    device, dtype = resolve_device(args.device, args.dtype)
    if args.checkpoint:
        source = args.checkpoint
    elif args.init_from in (None, "resume"):
        # nanoGPT's flags: --init_from=resume (or none) samples the checkpoint in --out_dir
        source = args.out_dir
    else:
        source = args.init_from
    torch.manual_seed(args.seed)
    model, tok, desc, documents = ckpt.load_for_inference(source, device)
    print(f"model: {desc}", file=sys.stderr)
    # a model trained on one document never saw <|endoftext|>: its new documents start at a newline
    start = None if documents > 1 else "\n"
    options = dict(max_new_tokens=args.max_new_tokens, num_samples=args.num_samples,
                   temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
                   repetition_penalty=args.repetition_penalty, stop=args.stop,
                   stop_at_eot=not args.no_stop, start=start)
    write = functools.partial(print, end="", flush=True)

    # On a CPU every Linear reads its weight as one block of rows per thread while decoding
    # (speedups.row_blocks swaps their forward methods for this block's length; the same numbers).
    with speedups.row_blocks(model, tok.n_vocab), autocast(device, dtype):
        # -i: one prompt per line, until end of input (Ctrl-D)
        while args.interactive:
            try:
                prompt = input("> ")
            except EOFError:
                print()
                return
            if prompt.strip():
                generate_text(model, tok, [prompt], **options, stream=write, echo=False)
                print()
        texts = generate_text(model, tok, prompts, **options, stream=write if stream else None,
                              echo=not args.no_prompt)
    if out and out.endswith(".jsonl"):
        # a JSON object per sample, with its prompt and settings
        rows = [p for p in prompts for _ in range(args.num_samples)]
        text = "".join(json.dumps(dict(prompt=p, text=t, **options, seed=args.seed,
                                       checkpoint=desc)) + "\n" for p, t in zip(rows, texts))
    elif stream:
        # the sample is on the screen already: end its line
        text = "\n"
    else:
        text = ("\n" + "-" * 40 + "\n").join(texts) + "\n"
    if out:
        atomic_write(out, lambda f: f.write(text), text=True)
        print(f"wrote {len(texts)} sample(s) to {out}", file=sys.stderr)
    else:
        print(text, end="")


def parse_args(argv):
    p = ArgumentParser(__doc__)
    p.add_argument("-p", "--prompt", "--start", action="append", default=[],
                   help="text to continue (repeatable: one batch; FILE:path reads it from a file, "
                   "as nanoGPT's --start) (default: a new document)")
    p.add_argument("--prompt_file", help="read the prompt from this file")
    p.add_argument("--prompts_per_line", action="store_true",
                   help="each line of --prompt_file is a prompt")
    p.add_argument("-m", "--max_new_tokens", type=in_range(1, 10**6), default=500,
                   help="at most this many new tokens per sample, which ends earlier at "
                   "<|endoftext|> or a --stop text (default 500)")
    p.add_argument("-n", "--num_samples", type=in_range(1, 10**4), default=1,
                   help="samples per prompt (default 1)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="0 = greedy; <1 sharper, >1 more random (default 0.8)")
    p.add_argument("--top_k", type=int, default=200,
                   help="sample among the k likeliest tokens only (0: all; default 200)")
    p.add_argument("--top_p", type=float, default=None,
                   help="nucleus sampling: among the likeliest tokens whose probabilities add up "
                   "to top_p, e.g. 0.9 (default: off)")
    p.add_argument("--repetition_penalty", type=float, default=1.0,
                   help=">1 makes tokens already in the text less likely, e.g. 1.2 "
                   "(default 1: off)")
    p.add_argument("--stop", action="append", default=[],
                   help="end a sample at this text (repeatable)")
    p.add_argument("--no_stop", action="store_true",
                   help="go on past <|endoftext|> (a new document)")
    p.add_argument("--no_prompt", action="store_true",
                   help="print or write the new text only, without its prompt")
    p.add_argument("--out", help="write the samples to this file (.jsonl: one JSON object each, "
                   "with its prompt and settings; else separated by a line of dashes) and print a "
                   "summary only")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a file that exists (without it, that is refused)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="read a prompt, print its continuation as it is made, repeat until end "
                   "of input")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="print tokens as they come (default: on for one sample on a terminal)")
    p.add_argument("--seed", type=in_range(0, 2**63 - 1), default=1337,
                   help="random seed (default 1337)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default auto)")
    p.add_argument("--dtype", default="auto",
                   help="auto, float32, bfloat16 or float16: autocast on a GPU (default auto: "
                   "bfloat16 there, float32 on a CPU)")
    p.add_argument("--compile", type=lambda s: s.lower() in ("1", "true"), default=False,
                   help="nanoGPT's flag, accepted and not used: decoding with the KV cache runs "
                   "eagerly")
    p.add_argument("--checkpoint", default=None,
                   help="a .pt file or a folder holding ckpt.pt (default: checkpoint/); or gpt2, "
                   "gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face folder")
    p.add_argument("--init_from", default=None,
                   help="nanoGPT's flag: resume (the checkpoint in --out_dir) or gpt2*")
    p.add_argument("--out_dir", default=None,
                   help="nanoGPT's flag: the folder whose ckpt.pt to sample")
    args = p.parse_args(argv)
    if args.init_from == "resume" and not args.out_dir:
        # nanoGPT's default
        args.out_dir = "out"
    return args


if __name__ == "__main__":
    one_line_errors()
    main()
