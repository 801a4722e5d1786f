"""
Export a checkpoint of ours as a Hugging Face folder, for transformers and every tool built on
it, or as a compact checkpoint of ours.

    python export.py --checkpoint=out-shakespeare --out_dir=hf-shakespeare
    python export.py --checkpoint=out-shakespeare --half=checkpoint/ckpt.pt  # fp16, no optimizer

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("hf-shakespeare")
    tokenizer = AutoTokenizer.from_pretrained("hf-shakespeare")

The folder holds config.json, model.safetensors and the tokenizer: vocab.json + merges.txt, GPT-2's
or the BPE the checkpoint was trained with, or for a character vocabulary a tokenizer.json of one
token per character; transformers computes the same ids and logits as our model (hf.py says
how). It loads back here too: train.py --init_from=DIR, sample.py --checkpoint=DIR,
GPT.from_pretrained(DIR).
"""

import os
import sys

from data.tokenizer import load_tokenizer
from support import ckpt, hf
from support.common import ArgumentParser, one_line_errors


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a ckpt.pt written by train.py, or its folder")
    parser.add_argument("--out_dir",
                        help="the Hugging Face folder to write (new or empty, unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out_dir")
    parser.add_argument("--half", metavar="FILE", help="instead, write a compact checkpoint of "
                        "ours: fp16 weights, no optimizer state (for sample.py and sharing)")
    args = parser.parse_args(argv)
    if args.half:
        if os.path.isdir(args.half):
            raise ValueError(f"--half={args.half} is a folder: name the file to write, e.g. "
                             f"{os.path.join(args.half, 'ckpt.pt')}")
        wrote = ckpt.export_half(args.checkpoint, args.half)
        print(f"wrote {wrote} (fp16 weights, no optimizer state)")
        return
    if not args.out_dir:
        parser.error("give --out_dir (a Hugging Face folder) or --half=FILE")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise ValueError(f"--out_dir={args.out_dir} is a file: name a folder")
    if os.path.isdir(args.out_dir) and os.listdir(args.out_dir) and not args.force:
        raise ValueError(f"{args.out_dir} exists and is not empty; choose another --out_dir or "
                         f"pass --force")
    path = ckpt.find(args.checkpoint)
    state = ckpt.load(path)
    tok = load_tokenizer(state, path)
    if "tokenizer" not in state:
        print(f"note: {path} names no tokenizer (nanoGPT's): using {tok.name}'s", file=sys.stderr)
    hf.export(ckpt.model_from(state), tok, args.out_dir)
    print(f"exported {path} to {args.out_dir} (config.json, model.safetensors, tokenizer files)")


if __name__ == "__main__":
    one_line_errors()
    main()
