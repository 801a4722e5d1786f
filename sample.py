"""
Sample text from a trained model.

    python sample.py                                   # the committed checkpoint in checkpoint/
    python sample.py -p "ROMEO:" -m 300 -n 3 --seed=7
    python sample.py --checkpoint=out -p "Hello, I'm a language model," --temperature=0.8 --top_k=200

The checkpoint carries its config and its tokenizer, so nothing else is needed. Without --checkpoint the
one committed in checkpoint/ is used; without that, an untrained GPT-2 (its output is noise).
"""

import argparse
import os
import sys

import torch

from model import GPT, GPTConfig
from tokenizer import TokenizerError, get_gpt2_tokenizer, load_tokenizer, tokenizer_from_dict
from train import CheckpointError, load_checkpoint, model_from_checkpoint, resolve_device

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHECKPOINT = os.path.join(HERE, "checkpoint")


def find_checkpoint(path: str) -> str:
    """A .pt file, or a directory holding ckpt.pt (or exactly one .pt file)."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "ckpt.pt")):
            return os.path.join(path, "ckpt.pt")
        pts = sorted(f for f in os.listdir(path) if f.endswith(".pt"))
        if len(pts) != 1:
            raise CheckpointError(f"{path} holds {len(pts)} .pt files; name one with --checkpoint=FILE")
        return os.path.join(path, pts[0])
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} not found; train one (python train.py ...) or give a path")
    return path


def load_model(checkpoint: str | None, device: str):
    """(model, tokenizer, description) for a checkpoint path or directory; None = the default one."""
    if checkpoint is None:
        try:
            path = find_checkpoint(DEFAULT_CHECKPOINT)
        except CheckpointError:
            print("warning: no checkpoint in checkpoint/ and none given: sampling from an UNTRAINED GPT-2, "
                  "the output is noise (train one, or pass --checkpoint=out)", file=sys.stderr)
            model = GPT(GPTConfig())
            return model.to(device).eval(), get_gpt2_tokenizer(), "untrained GPT-2 (124M)"
    elif checkpoint in GPT.PRETRAINED or os.path.isfile(os.path.join(checkpoint, "model.safetensors")):
        # OpenAI's GPT-2 from the hub, or a Hugging Face-format folder (export.py, save_pretrained)
        has_vocab = os.path.isfile(os.path.join(checkpoint, "vocab.json"))
        tokenizer = load_tokenizer(checkpoint) if has_vocab else get_gpt2_tokenizer()
        return GPT.from_pretrained(checkpoint).to(device).eval(), tokenizer, checkpoint
    else:
        path = find_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    try:  # the checkpoint's own tokenizer, checked against the model it was trained with
        tokenizer = tokenizer_from_dict(ckpt.get("tokenizer"))
    except TokenizerError as e:
        raise CheckpointError(f"{path}: its tokenizer cannot be used ({e}); retrain or restore it") from None
    if tokenizer.n_vocab > model.config.vocab_size:
        raise CheckpointError(f"{path}: its tokenizer has {tokenizer.n_vocab} tokens but the model only "
                              f"{model.config.vocab_size}; the checkpoint is inconsistent, retrain it")
    return model.to(device).eval(), tokenizer, f"{path} (iteration {ckpt.get('iter_num', '?')})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--prompt", default=None, help="text to continue (default: a new document)")
    parser.add_argument("--prompt_file", help="read the prompt from this file")
    parser.add_argument("-m", "--max_new_tokens", type=int, default=500)
    parser.add_argument("-n", "--num_samples", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; <1 sharper, >1 more random")
    parser.add_argument("--top_k", type=int, default=200, help="sample only among the k likeliest tokens (0: off)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--checkpoint", "--init_from", default=None, help="a .pt file or a directory holding "
                        "ckpt.pt (default: checkpoint/); or gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a "
                        "Hugging Face-format folder")
    args = parser.parse_args(argv)

    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8", errors="replace") as f:
                args.prompt = f.read()
        except OSError as e:
            raise CheckpointError(f"cannot read --prompt_file {args.prompt_file}: {e.strerror}") from None
    if args.prompt is not None and args.prompt == "":
        raise ValueError("the prompt is empty: give some text with -p, or leave -p out to start a new document")
    if args.max_new_tokens < 1 or args.num_samples < 1:
        raise ValueError("--max_new_tokens and --num_samples must be at least 1")

    device, dtype = resolve_device(args.device, "auto")
    torch.manual_seed(args.seed)
    model, tok, desc = load_model(args.checkpoint, device)
    print(f"model: {desc}", file=sys.stderr)

    ids = tok.encode(args.prompt) if args.prompt is not None else [tok.eot_token]
    x = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)
    y = model.generate(x, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None)
    for k in range(args.num_samples):
        new = [t for t in y[k, len(ids):].tolist() if t < tok.n_vocab]
        text = (args.prompt or "") + tok.decode(new)
        print(text)
        if k < args.num_samples - 1:
            print("-" * 40)


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, TokenizerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
