"""
The text side of sampling, for sample.py: generate_text() encodes the prompts, runs the rows of
equal length as one batch through model.generate_tokens, and turns the new tokens into text (whole
UTF-8 characters only, cut at <|endoftext|> and at a stop text, streamed piece by piece for a single
row); sample.py's prompts (-p, nanoGPT's FILE:, --prompt_file) and output flags, checked
before the model is loaded; and the short samples train.py prints every sample_interval.
"""

import codecs
import os
import sys

import torch

from support.common import check_writable


def generate_text(model, tok, prompts: list, max_new_tokens: int = 500, num_samples: int = 1,
                  temperature=0.8, top_k=200, top_p=None, repetition_penalty=1.0, stop=(),
                  stop_at_eot=True, stream=None, start: str | None = None,
                  echo: bool = True) -> list[str]:
    """Continue each prompt (None: a new document, from `start` or <|endoftext|>) num_samples
    times; return the texts in order, each after its prompt unless echo is False. Rows of equal
    length run as one batch. stream, if given, is called with the text of a single row piece by
    piece as it is made."""
    if "" in stop:
        raise ValueError("a --stop text is empty: give the text that should end a sample")
    rows = [p for p in prompts for _ in range(num_samples)]
    # a new document (prompt None) starts from `start` when given, else from <|endoftext|>
    new_document = tok.encode(start) if start else [tok.eot_token]
    ids = [new_document if p is None else tok.encode(p) for p in rows]
    # only a single row streams
    stream = stream if len(rows) == 1 else None
    if stream and echo:
        stream(rows[0] or "")
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                    top_p=top_p, repetition_penalty=repetition_penalty)
    device = next(model.parameters()).device
    texts = [""] * len(rows)
    for n in sorted(set(map(len, ids))):
        group = [i for i in range(len(rows)) if len(ids[i]) == n]
        x = torch.tensor([ids[i] for i in group], dtype=torch.long, device=device)
        try:
            new_texts = continue_rows(model, tok, x, stop, stop_at_eot, stream, **sampling)
        # extreme settings (temperature=1e-300) overflow the scores into no valid probabilities
        except RuntimeError as e:
            if "probability tensor" not in str(e):
                raise
            raise ValueError(f"temperature={temperature}, top_p={top_p}, repetition_penalty="
                             f"{repetition_penalty} overflow the model's scores: use values "
                             f"nearer the defaults, or --temperature=0 for greedy") from None
        for i, text in zip(group, new_texts):
            prompt = rows[i] or ""
            texts[i] = prompt + text if echo else text
    return texts


def continue_rows(model, tok, x, stop, stop_at_eot, stream, **sampling) -> list[str]:
    """The new text of each row of x (B, T), cut at <|endoftext|> and at the first stop text."""
    # tokens are byte-level: one may hold half a UTF-8 character, so only whole characters reach
    # the text
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(len(x))]
    texts, done = [""] * len(x), [False] * len(x)
    eot = [tok.eot_token] if stop_at_eot and tok.eot_token is not None else []

    def add_tokens(next_tokens) -> list[bool]:
        """Append each row's new token to its text; return which rows are done (generate_tokens
        stops them)."""
        for r, t in enumerate(next_tokens[:, 0].tolist()):
            if done[r] or t in eot:
                done[r] = True
                continue
            old = len(texts[r])
            texts[r] += decoders[r].decode(tok.decode_bytes([t]))
            hits = [i for i in (texts[r].find(s, max(0, old - len(s) + 1)) for s in stop) if i >= 0]
            if hits:
                # cut the sample before its stop text
                texts[r], done[r] = texts[r][: min(hits)], True
        return done

    # the last `hold` characters are not shown yet: they may be the start of a stop text
    hold = max((len(s) for s in stop), default=1) - 1
    shown = 0
    steps = model.generate_tokens(x, vocab_limit=tok.n_vocab, stop_tokens=eot,
                                  stop_rows=add_tokens, **sampling)
    for _ in steps:
        end = len(texts[0]) if done[0] else len(texts[0]) - hold
        if stream and end > shown:
            stream(texts[0][shown:end])
            shown = end
    for r in range(len(x)):
        # a sample cut short by -m may end inside a character: show what is left
        if not done[r]:
            texts[r] += decoders[r].decode(b"", final=True)
    if stream and len(texts[0]) > shown:
        stream(texts[0][shown:])
    return texts


def prompts_of(args) -> list:
    """The prompts: -p/--start (given several times, or nanoGPT's FILE:path), or --prompt_file (one
    prompt, or one per line with --prompts_per_line); none: one new document."""
    prompts = [p for p in args.prompt if not p.startswith("FILE:")]
    path = ([p[5:] for p in args.prompt if p.startswith("FILE:")] or [args.prompt_file])[-1]
    if path:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"cannot read the prompt file {path}: {e.strerror}") from None
        if args.prompts_per_line:
            lines = [line for line in text.splitlines() if line.strip()]
        else:
            lines = [text]
        if not lines:
            raise ValueError(f"{path} holds no prompt")
        prompts += lines
    if "" in prompts:
        raise ValueError("the prompt is empty: give some text with -p, or leave -p out to start a "
                         "new document")
    return prompts or [None]


def streams(args, prompts: list) -> bool:
    """Whether the one sample is printed as it is made; an --out, -i or --stream that cannot work
    is refused first, before the model is loaded."""
    out = args.out
    if out is not None:
        check_writable(os.path.dirname(out) or ".")
        if not out or os.path.isdir(out):
            raise ValueError(f"--out={out!r} must name a file")
        if os.path.exists(out) and not args.force:
            raise ValueError(f"--out={out} exists already: add --force to replace it, or name "
                             f"another file")
    if args.interactive and (out or prompts != [None]):
        raise ValueError("-i reads its prompts from the terminal: use it without -p, --prompt_file "
                         "and --out")
    one_sample = len(prompts) * args.num_samples == 1 and not out
    if args.interactive:
        stream = True
    elif args.stream is None:
        # by default one sample streams when it goes to a terminal
        stream = one_sample and sys.stdout.isatty()
    else:
        stream = args.stream
    if stream and not one_sample:
        raise ValueError("--stream prints one sample as it is made: use it with one prompt, -n 1 "
                         "and no --out")
    return stream


@torch.no_grad()
def training_sample(model, tok, n_tokens: int, seed: int, ctx, stop) -> str:
    """train.py's sample_interval: a short sample from the start of a document, with an RNG of its
    own so that training is unaffected; stop() true ends it at the next token."""
    with torch.random.fork_rng(devices=[]), ctx:
        torch.manual_seed(seed)
        model.eval()
        prompt = torch.tensor([[tok.eot_token]], device=next(model.parameters()).device)
        out = model.generate(prompt, n_tokens, temperature=0.8, top_k=200, vocab_limit=tok.n_vocab,
                             stop_rows=lambda t: [stop()] * len(t))
        model.train()
    return tok.decode(out[0, 1:].tolist())
