"""
Sample text from a trained model.

    python sample.py                                   # the committed checkpoint in checkpoint/
    python sample.py -p "ROMEO:" -m 300 -n 3 --seed=7
    python sample.py --checkpoint=out -p "Hello, I'm a language model," --temperature=0.8 --top_k=200
    python sample.py -p "ROMEO:" --top_p=0.9 --stop="JULIET:" --stop=$'\\n\\n' --stream

The prompt runs through the model once, then one token per step with the keys and values cached
(model.generate); the -n samples run as one batch sharing the prompt. A sample ends at <|endoftext|> (unless
--no_stop), at any --stop text (cut before it), or after -m tokens. Programs can call generate_text().
The checkpoint carries its config and its tokenizer, so nothing else is needed.
"""

import argparse
import codecs
import sys

import torch

import ckpt
import speedups
from common import one_line_errors
from devices import resolve_device
from model import check_sampling


def generate_text(model, tok, prompt: str | None, max_new_tokens: int = 500, num_samples: int = 1,
                  temperature: float = 0.8, top_k: int | None = 200, top_p: float | None = None,
                  repetition_penalty: float = 1.0, stop: list[str] = (), stop_at_eot: bool = True,
                  stream=None) -> list[str]:
    """Continue `prompt` (None: start a new document) num_samples times, as one batch; return the texts, prompt
    included. stream, if given, is called with sample 0's text piece by piece as it is produced."""
    if any(s == "" for s in stop):
        raise ValueError("a --stop text is empty: give the text that should end a sample")
    ids = tok.encode(prompt) if prompt is not None else [tok.eot_token]
    x = torch.tensor([ids] * num_samples, dtype=torch.long, device=next(model.parameters()).device)
    # Tokens are byte-level: one may hold half of a UTF-8 character, so bytes go through an incremental
    # decoder and only whole characters reach the text.
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(num_samples)]
    texts, done = [""] * num_samples, [False] * num_samples
    hold = max((len(s) for s in stop), default=1) - 1  # not shown yet: it may be the start of a stop text
    shown = 0
    if stream:
        stream(prompt or "")
    steps = model.generate_tokens(x, max_new_tokens, temperature, top_k, top_p, repetition_penalty, tok.n_vocab,
                                  stop_tokens=[tok.eot_token] if stop_at_eot else [])
    for next_tokens, _, finished in steps:
        for r, t in enumerate(next_tokens[:, 0].tolist()):
            if done[r] or (stop_at_eot and t == tok.eot_token):
                done[r] = True
                continue
            old = len(texts[r])
            texts[r] += decoders[r].decode(tok.decode_bytes([t]))
            hits = [i for i in (texts[r].find(s, max(0, old - len(s) + 1)) for s in stop) if i >= 0]
            if hits:  # cut the sample before its stop text, and tell the model the row is finished
                texts[r], done[r], finished[r] = texts[r][: min(hits)], True, True
        if stream:
            end = len(texts[0]) if done[0] else len(texts[0]) - hold
            if end > shown:
                stream(texts[0][shown:end])
                shown = end
    for r in range(num_samples):
        if not done[r]:  # a sample cut short by -m may end inside a character: show what is left
            texts[r] += decoders[r].decode(b"", final=True)
    if stream and len(texts[0]) > shown:
        stream(texts[0][shown:])
    return [(prompt or "") + t for t in texts]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--prompt", default=None, help="text to continue (default: a new document)")
    parser.add_argument("--prompt_file", help="read the prompt from this file")
    parser.add_argument("-m", "--max_new_tokens", type=int, default=500, help="tokens to generate per sample "
                        "(default 500)")
    parser.add_argument("-n", "--num_samples", type=int, default=1, help="samples, made as one batch (default 1)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; <1 sharper, >1 more random "
                        "(default 0.8)")
    parser.add_argument("--top_k", type=int, default=200, help="sample only among the k likeliest tokens (0: off; "
                        "default 200)")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling: only among the likeliest "
                        "tokens whose probabilities add up to top_p, e.g. 0.9 (default: off)")
    parser.add_argument("--repetition_penalty", type=float, default=1.0, help=">1 makes tokens already in the text "
                        "less likely, e.g. 1.2 (default 1: off)")
    parser.add_argument("--stop", action="append", default=[], help="end a sample at this text (repeatable)")
    parser.add_argument("--no_stop", action="store_true", help="don't end samples at <|endoftext|>")
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="print tokens as they come (default: on for one sample on a terminal)")
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default auto)")
    parser.add_argument("--checkpoint", "--init_from", default=None, help="a .pt file or a folder holding ckpt.pt "
                        "(default: checkpoint/); or gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a Hugging Face folder")
    args = parser.parse_args(argv)

    # every option is checked before the model is loaded
    check_sampling(args.temperature, args.top_k or None, args.top_p, args.repetition_penalty)
    if args.max_new_tokens < 1 or args.num_samples < 1:
        raise ValueError("--max_new_tokens and --num_samples must be at least 1")
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8", errors="replace") as f:
                args.prompt = f.read()
        except OSError as e:
            raise ValueError(f"cannot read --prompt_file {args.prompt_file}: {e.strerror}") from None
    if args.prompt is not None and args.prompt == "":
        raise ValueError("the prompt is empty: give some text with -p, or leave -p out to start a new document")
    stream = sys.stdout.isatty() and args.num_samples == 1 if args.stream is None else args.stream
    if stream and args.num_samples > 1:
        raise ValueError("--stream prints one sample as it is made: use it with -n 1")
    device, dtype = resolve_device(args.device, "auto")

    torch.manual_seed(args.seed)
    model, tok, desc = ckpt.load_for_inference(args.checkpoint, device)
    print(f"model: {desc}", file=sys.stderr)

    def write(piece: str):
        sys.stdout.write(piece)
        sys.stdout.flush()

    with speedups.decoding_copies(model, tok.n_vocab):  # on a CPU: faster decoding (speedups.py)
        texts = generate_text(model, tok, args.prompt, args.max_new_tokens, args.num_samples, args.temperature,
                              args.top_k or None, args.top_p, args.repetition_penalty, args.stop,
                              stop_at_eot=not args.no_stop, stream=write if stream else None)
    if stream:
        print()
    else:
        print(("\n" + "-" * 40 + "\n").join(texts))


if __name__ == "__main__":
    one_line_errors()
    main()
