"""
Documents from your files, for data/prepare.py: .txt files (one document each, or many separated by
a delimiter line, or one per line), .jsonl / .jsonl.gz and .csv / .tsv files (a column of text), and
OpenWebText through `datasets`; and the tokenizer to encode them with. Files that are not text are
refused before anything is written.
"""

import collections
import csv
import glob
import gzip
import itertools
import json
import os
from collections.abc import Iterator

from data.bpe import train_tokenizer
from data.tokenizer import GPT2_NAMES, CharTokenizer, load_tokenizer

CHUNK_BYTES = 4 << 20  # a big text file is read and tokenized in pieces of about this size
_PLAIN = {bytes([b]) for b in range(0x21, 0x7F)}  # printable ASCII, no whitespace
TABLES = (".jsonl", ".jsonl.gz", ".csv", ".tsv")


def _decode(b: bytes) -> str:
    # invalid UTF-8 becomes U+FFFD, which prepare's report counts
    return b.decode("utf-8", errors="replace")


def expand_inputs(pattern: str) -> list[str]:
    """The files of a path, a glob or a comma-separated list, each checked to be text."""
    files = sorted(f for p in pattern.split(",") for f in (glob.glob(p, recursive=True) or [p]))
    # a pattern that matches nothing stays as it is, and is missing
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise ValueError(f"input {missing[0]!r} not found: give a file, a glob like "
                         f"'texts/*.txt' or a list separated by commas")
    # a binary file would "succeed" as junk tokens: look at its start
    for path in files:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            head = f.read(1 << 16)
        text = _decode(head)
        junk = sum(c == "\ufffd" or (c < " " and c not in "\t\n\r\f") for c in text)
        why = "it holds NUL bytes" if b"\0" in head else \
            "it is mostly invalid UTF-8" if junk > 0.3 * len(text) else ""
        if why:
            raise ValueError(f"{path} is not text ({why}): give UTF-8 text files (.txt, .jsonl, "
                             f".csv, .tsv)")
    return files


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
            elif size >= CHUNK_BYTES and line[:1] in _PLAIN and buf[-1][-2:-1] in _PLAIN:
                yield split, _decode(b"".join(buf))
                buf, size = [], 0
            pos, size = pos + len(line), size + len(line)
            buf.append(line)
    yield split, _decode(b"".join(buf))


def read_table(path: str, column: str) -> Iterator[str]:
    """The non-empty texts of one column: a field of each .jsonl line, or a .csv/.tsv column
    (Python's csv module: quoted fields, commas and newlines inside them)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        if path.endswith((".csv", ".tsv")):
            rows = csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ",")
            if column not in (rows.fieldnames or []):
                raise ValueError(f"{path} has no column {column!r} (its columns: "
                                 f"{', '.join(rows.fieldnames or [])}); name one with --column")
            yield from (row[column] for row in rows if row[column] and row[column].strip())
            return
        for lineno, line in enumerate(f, 1):
            try:
                text = json.loads(line)[column] if line.strip() else ""
            except (ValueError, KeyError, TypeError):
                text = None
            if not isinstance(text, str):
                raise ValueError(f"{path} line {lineno}: expected a JSON object with a string "
                                 f"{column!r} field (--column names the field)")
            if text:
                yield text


def read_split_documents(path: str, delimiter: str) -> Iterator[str]:
    """Short documents: each non-empty line (delimiter 'line'), or runs of lines separated by a line
    holding only the delimiter (a blank line if it is empty)."""
    with open(path, "rb") as f:
        if delimiter == "line":
            yield from (line.rstrip("\r\n") for line in map(_decode, f) if line.strip())
            return
        doc: list[str] = []
        # a delimiter after the last line ends the last document
        for line in itertools.chain(map(_decode, f), [delimiter]):
            if line.strip() != delimiter:
                doc.append(line)
                continue
            if "".join(doc).strip():
                yield "".join(doc).strip("\n")
            doc = []


def read_openwebtext() -> Iterator[str]:
    """OpenWebText through `datasets`, streamed: no full copy in RAM, nor a second one on disk. Its
    parquet export, because the original loading script stopped working in datasets 3."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError("OpenWebText comes through Hugging Face's datasets: pip install "
                         "datasets") from None
    try:
        ds = load_dataset("Skylion007/openwebtext", revision="refs/convert/parquet", split="train",
                          streaming=True)
    # offline, hub down: one message
    except Exception as e:
        raise ValueError(f"cannot reach OpenWebText on the Hugging Face hub ({type(e).__name__}); "
                         f"connect to the internet, or give your own text with --input") from None
    for example in ds:
        yield example["text"]


def documents(files: list[str] | None, split: str | None, column: str) -> Iterator[tuple[str, ...]]:
    """Every document as a tuple of its pieces (a long .txt file comes in several)."""
    if files is None:
        yield from ((d,) for d in read_openwebtext())
    for path in files or []:
        if path.endswith(TABLES):
            yield from ((d,) for d in read_table(path, column))
        elif split is not None:
            yield from ((d,) for d in read_split_documents(path, split))
        else:
            yield tuple(text for _, text in read_txt_document(path))


def tokenizer_for(name: str, vocab_size: int, docs):
    """A new tokenizer made from this corpus: a BPE trained on its train split (val stays unseen),
    or its characters (all of them, as nanoGPT's); any other name is a tokenizer to reuse, which
    load_tokenizer finds (gpt2, a folder, a data folder, a checkpoint, ...)."""
    if name == "bpe":
        print(f"training a byte-level BPE tokenizer with {vocab_size} tokens on the train split...")
        return train_tokenizer((text for part, text, _ in docs() if part == "train"), vocab_size)
    if name == "char":
        chars = set()
        for _, text, _ in docs():
            chars.update(text)
        return CharTokenizer("".join(sorted(chars)))
    if name not in GPT2_NAMES and not os.path.exists(name):
        raise ValueError(f"--tokenizer={name}: give gpt2, bpe, char, or the path of a folder with "
                         f"vocab.json + merges.txt, of a prepared data folder, or of a checkpoint")
    return load_tokenizer(name)


def print_hint(files: list[str] | None, split: str | None):
    """Text read as one document with a delimiter line (%, ---, ...) three times or more: say how to
    split it. Blank lines get no hint: in prose they part paragraphs, not documents. The lines that
    could be delimiters (short, no letter or digit) are counted in a pass of their own, over the .txt
    files that were read whole."""
    lines = collections.Counter()
    for path in [p for p in files or [] if split is None and not p.endswith(TABLES)]:
        with open(path, "rb") as f:
            lines.update(line.strip() for line in f
                         if len(line) <= 12 and not any(chr(b).isalnum() for b in line))
    marks = sorted((n, d) for d, n in lines.items() if d)
    if marks and marks[-1][0] >= 3:
        n, shown = marks[-1][0], _decode(marks[-1][1])  # a line of Latin-1 may not be UTF-8
        print(f"note: {n:,} lines hold only {shown!r}: --split={shown} would make about {n + 1:,} documents of the "
              f"text (now each file is one); --split=line makes each line one")
