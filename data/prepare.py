"""
Turn text into the token shards that train.py reads (data/shards.py has the format).

    python data/prepare.py                                   # OpenWebText -> data/openwebtext/
    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare   # -> data/shakespeare/
    python data/prepare.py --input="quotes/*.txt" --split=%   # short documents separated by a '%' line
    python data/prepare.py --input=posts.jsonl.gz --tokenizer=bpe --vocab_size=5000  # your own vocabulary

A text that is one document (one file, no --split) is split like nanoGPT's shakespeare: its first
1-val_fraction goes to train, the rest to val. Otherwise each document goes to val with probability
val_fraction (seeded), and at least one does. Documents are separated by <|endoftext|>. Text is read,
tokenized (tiktoken, in parallel threads) and written in bounded batches, so memory stays flat whatever the
corpus size.
"""

import argparse
import glob
import gzip
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root
from bpe import train_tokenizer  # noqa: E402
from common import atomic_write, one_line_errors  # noqa: E402
from data.shards import DATA_ROOT, VERSION, DataError, ShardWriter  # noqa: E402
from tokenizer import get_gpt2_tokenizer  # noqa: E402

CHUNK_BYTES = 4 << 20  # a big text file is read and tokenized in pieces of about this size
OWT_DOCUMENTS = 8_013_769  # for the progress bar
_PLAIN = set(range(0x21, 0x7F))  # printable ASCII, no whitespace


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")  # invalid UTF-8 becomes U+FFFD (counted in prepare's report)


def read_txt_document(path: str, cut_fraction: float | None = None) -> Iterator[tuple[str, str]]:
    """Yield one text file as (split, text) pieces of ~4 MB, so a huge file never sits in memory.

    Pieces end at a newline with printable characters on both sides: GPT-2's pre-tokenizer always makes such a
    newline a piece of its own, so encoding the pieces gives exactly the tokens of the whole text. With
    cut_fraction, the bytes after that fraction (moved to a character boundary) go to "val"."""
    cut_at = None if cut_fraction is None else int(os.path.getsize(path) * cut_fraction)
    split, buf, size, pos = "train", [], 0, 0
    with open(path, "rb") as f:
        for line in f:
            if cut_at is not None and pos + len(line) > cut_at:
                k = cut_at - pos
                while k < len(line) and (line[k] & 0xC0) == 0x80:  # skip UTF-8 continuation bytes
                    k += 1
                yield split, _decode(b"".join(buf) + line[:k])
                split, buf, size, line, cut_at = "val", [], 0, line[k:], None
            elif size >= CHUNK_BYTES and line[:1] and line[0] in _PLAIN and buf[-1][-2:-1] and buf[-1][-2] in _PLAIN:
                yield split, _decode(b"".join(buf))
                buf, size = [], 0
            pos, size = pos + len(line), size + len(line)
            buf.append(line)
    yield split, _decode(b"".join(buf))


def read_jsonl(path: str) -> Iterator[str]:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(_decode(line))["text"]
                assert isinstance(text, str)
            except (ValueError, KeyError, TypeError, AssertionError):
                raise DataError(f"{path} line {lineno}: expected a JSON object with a string 'text' field") from None
            yield text


def read_split_documents(path: str, delimiter: str) -> Iterator[str]:
    """Short documents separated by a line holding only the delimiter (a blank line if it is empty)."""
    doc: list[str] = []
    with open(path, "rb") as f:  # a delimiter after the last line ends the last document
        for line in itertools.chain(map(_decode, f), [delimiter]):
            if line.strip() != delimiter:
                doc.append(line)
                continue
            if "".join(doc).strip():
                yield "".join(doc).strip("\n")
            doc = []


def read_openwebtext() -> Iterator[str]:
    """OpenWebText through `datasets`, streamed: no full copy in RAM, nor a second one on disk. Its parquet
    export, because the original loading script stopped working in datasets 3."""
    from datasets import load_dataset

    for example in load_dataset("Skylion007/openwebtext", revision="refs/convert/parquet", split="train",
                                streaming=True):
        yield example["text"]


def expand_inputs(pattern: str) -> list[str]:
    files = sorted(f for p in pattern.split(",") for f in (glob.glob(p, recursive=True) or [p]))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DataError(f"input {missing[0]} not found: give a file, a glob like 'texts/*.txt' or a list "
                        f"separated by commas")
    return files


def iter_documents(files: list[str] | None, split: str | None, val_fraction: float, seed: int):
    """Yield (split, text, starts_document) pieces, in a fixed order for a given seed. Documents are routed one
    behind, so that the last one can go to val if none did before it."""
    if files is not None and len(files) == 1 and split is None and not files[0].endswith((".jsonl", ".gz")):
        first = {"train": True, "val": True}  # one document: nanoGPT's split, the last val_fraction is val
        for part, text in read_txt_document(files[0], cut_fraction=1 - val_fraction):
            yield part, text, first[part]
            first[part] = False
        return
    rng = np.random.default_rng(seed)
    pending, any_val = None, False
    for doc in documents(files, split):
        if pending is not None:
            where = "val" if rng.random() < val_fraction else "train"
            any_val |= where == "val"
            yield from ((where, t, i == 0) for i, t in enumerate(pending))
        pending = doc
    if pending is not None:
        where = "val" if (not any_val or rng.random() < val_fraction) else "train"
        yield from ((where, t, i == 0) for i, t in enumerate(pending))


def documents(files: list[str] | None, split: str | None) -> Iterator[tuple[str, ...]]:
    """Every document as a tuple of its pieces (a long .txt file comes in several)."""
    if files is None:
        yield from ((d,) for d in read_openwebtext())
    for path in files or []:
        if path.endswith((".jsonl", ".jsonl.gz")):
            yield from ((d,) for d in read_jsonl(path))
        elif split is not None:
            yield from ((d,) for d in read_split_documents(path, split))
        else:
            yield tuple(text for _, text in read_txt_document(path))


def prepare(files: list[str] | None, out_dir: str, tokenizer_name: str = "gpt2", vocab_size: int = 5000,
            split: str | None = None, val_fraction: float = 0.1, seed: int = 1337, num_proc: int = 8,
            progress: bool = True) -> dict:
    """Tokenize the documents into out_dir's shards and meta.json; returns the meta dict."""
    from tqdm import tqdm

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    if tokenizer_name == "bpe":  # a vocabulary fit to this corpus, trained on the train split only
        print(f"training a byte-level BPE tokenizer with {vocab_size} tokens on the train split...")
        train_docs = (text for part, text, _ in iter_documents(files, split, val_fraction, seed) if part == "train")
        tok = train_tokenizer(train_docs, vocab_size=vocab_size, out_dir=out_dir)
        print(f"tokenizer trained in {time.time() - t0:.1f}s, saved vocab.json and merges.txt in {out_dir}")
    elif tokenizer_name == "gpt2":
        tok = get_gpt2_tokenizer()
    else:
        raise DataError(f"unknown --tokenizer={tokenizer_name}: use gpt2 or bpe")

    stats = {s: dict(shards=[], tokens=0, documents=0, chars=0, bytes=0, replaced=0) for s in ("train", "val")}
    writers = {s: ShardWriter(out_dir, s, tok.n_vocab) for s in stats}
    total_bytes = sum(os.path.getsize(f) for f in files) if files else None
    bar = tqdm(total=total_bytes or OWT_DOCUMENTS, unit="B" if files else "doc", unit_scale=True,
               desc=f"tokenizing ({tok.name})", disable=not progress)
    batch, batched = [], 0
    for piece in iter_documents(files, split, val_fraction, seed):
        batch.append(piece)
        batched += len(piece[1])
        if batched >= CHUNK_BYTES * 2:  # encode a few MB at a time, on num_proc threads
            write_batch(batch, tok, writers, stats, num_proc, bar, by_bytes=bool(files))
            batch, batched = [], 0
    write_batch(batch, tok, writers, stats, num_proc, bar, by_bytes=bool(files))
    bar.close()
    for part, w in writers.items():
        stats[part]["shards"] = w.close()
        if stats[part]["tokens"] == 0:
            raise DataError(f"the {part} split is empty: the input has no text (or too little for "
                            f"val_fraction={val_fraction})")
    replaced = sum(st.pop("replaced") for st in stats.values())
    meta = dict(format="gpt-shards", version=VERSION, tokenizer=tok.name, vocab_size=tok.n_vocab,
                eot_token=tok.eot_token, dtype=writers["train"].dtype.name, splits=stats, decode_errors=replaced,
                source=files or "openwebtext", seed=seed, val_fraction=val_fraction)
    atomic_write(os.path.join(out_dir, "meta.json"), lambda f: json.dump(meta, f, indent=1), text=True)
    if replaced:
        print(f"warning: {replaced} invalid UTF-8 sequences were replaced by U+FFFD")
    for part, st in stats.items():
        print(f"{part}: {st['documents']:,} documents, {st['tokens']:,} tokens, "
              f"{st['bytes'] / max(st['tokens'], 1):.2f} bytes/token, in {len(st['shards'])} shard(s)")
    print(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return meta


def write_batch(batch: list, tok, writers: dict, stats: dict, num_proc: int, bar, by_bytes: bool):
    """Encode a batch of (split, text, starts_document) pieces and append them to their split's shards."""
    for (part, text, starts), ids in zip(batch, tok.encode_batch([text for _, text, _ in batch], num_proc)):
        st = stats[part]
        if starts:
            ids = [tok.eot_token] + ids if st["documents"] else ids  # <|endoftext|> between documents
            st["documents"] += 1
        writers[part].write(ids)
        nbytes = len(text.encode("utf-8"))
        st["tokens"], st["chars"], st["bytes"] = st["tokens"] + len(ids), st["chars"] + len(text), st["bytes"] + nbytes
        st["replaced"] += text.count("\ufffd")
        bar.update(nbytes if by_bytes else int(starts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="text file(s): a path, a glob or a comma-separated list (.txt, .jsonl, "
                        ".jsonl.gz); default: OpenWebText from the Hugging Face hub")
    parser.add_argument("--name", help="output goes to data/NAME/ (default: the input's file name)")
    parser.add_argument("--out_dir", help="output folder (instead of data/NAME/)")
    parser.add_argument("--split", help="a line holding only this text separates documents in .txt files (e.g. "
                        "%%); an empty string splits on blank lines (default: one document per file)")
    parser.add_argument("--tokenizer", default="gpt2", choices=["gpt2", "bpe"],
                        help="GPT-2's tokenizer, or train a byte-level BPE on this data (default gpt2)")
    parser.add_argument("--vocab_size", type=int, default=5000, help="vocabulary size for --tokenizer=bpe "
                        "(default 5000)")
    parser.add_argument("--val_fraction", type=float, default=None,
                        help="fraction held out for validation (default 0.1; 0.0005 for OpenWebText)")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count() or 1, help="tokenizer threads (default: "
                        "the number of CPUs)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the train/val assignment (default 1337)")
    args = parser.parse_args(argv)

    files = expand_inputs(args.input) if args.input else None
    name = args.name or (os.path.basename(files[0]).split(".")[0] if files else "openwebtext")
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.1 if files else 0.0005)
    prepare(files, args.out_dir or os.path.join(DATA_ROOT, name), args.tokenizer, args.vocab_size, args.split,
            val_fraction, args.seed, args.num_proc)


if __name__ == "__main__":
    one_line_errors()
    main()
