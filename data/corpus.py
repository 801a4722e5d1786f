"""
Documents from your files, for data/prepare.py: .txt files (one document each, or many separated by
a delimiter line, or one per line), .jsonl / .jsonl.gz and .csv / .tsv files (a column of text), and
any Hugging Face dataset (OpenWebText by default) through `datasets`; and the tokenizer to encode
them with. Files that are not text are refused before anything is written.
"""

import collections
import csv
import glob
import gzip
import itertools
import json
import os
import sys
from collections.abc import Iterator

import numpy as np

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
    folders = [f for f in files if os.path.isdir(f)]
    if folders:
        raise ValueError(f"input {folders[0]!r} is a folder: give its files with a glob like "
                         f"'{folders[0]}/*.txt', or --hf_dataset={folders[0]} for parquet, arrow "
                         f"or jsonl files in the Hugging Face hub's layout")
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
        # a delimiter after the last line ends the last document; matched counts the others
        matched = -1
        for line in itertools.chain(map(_decode, f), [delimiter]):
            if line.strip() != delimiter:
                doc.append(line)
                continue
            matched += 1
            if "".join(doc).strip():
                yield "".join(doc).strip("\n")
            doc = []
    if matched == 0:
        print(f"note: no line of {path} holds only {delimiter!r} (--split): it was one document",
              file=sys.stderr)


# OpenWebText's parquet export: its original loading script stopped working in datasets 3
OPENWEBTEXT = dict(name="Skylion007/openwebtext", revision="refs/convert/parquet")


def hub_dataset(name: str, config: str | None, split: str):
    """A Hugging Face dataset's split, streamed (no full copy in RAM, nor a second one on disk): a
    name on the hub, or a local folder of parquet/arrow/jsonl files in the hub's layout."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError("Hugging Face datasets are read with `datasets`: pip install "
                         "datasets") from None
    local = os.path.isdir(name)
    shown = "OpenWebText" if name == OPENWEBTEXT["name"] else name
    if local:
        check_parquet_files(name)
    revision = OPENWEBTEXT["revision"] if name == OPENWEBTEXT["name"] else None
    try:
        return load_dataset(name, config, split=split, streaming=True, revision=revision)
    except Exception as e:
        # a missing split or config: datasets' own message lists the ones there are
        if isinstance(e, ValueError) and any(w in str(e).lower() for w in ("split", "config")):
            first = str(e).strip().splitlines()[0][:300]
            raise ValueError(f"{shown}: {first} (--hf_split / --hf_config choose)") from None
        if local:
            raise ValueError(f"cannot read {name} as a dataset ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}): give a folder "
                             f"of parquet, arrow or jsonl files") from None
        # offline, hub down, a wrong name: one message
        raise ValueError(f"cannot reach {shown} on the Hugging Face hub ({type(e).__name__}); "
                         f"connect to the internet, check the name, or give your own text with "
                         f"--input") from None


def check_parquet_files(folder: str):
    """Open the footer of every parquet file under folder, so that a broken one is named before
    any work is done."""
    import pyarrow.parquet as pq

    for path in sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True)):
        try:
            pq.read_metadata(path)
        except Exception as e:
            raise ValueError(f"{path} is not a readable parquet file ({type(e).__name__}): "
                             f"replace or remove it") from None


def read_hub(name: str, config: str | None, split: str, column: str) -> Iterator[str]:
    """The texts of one column of a dataset split, in order. Empty texts are skipped; a row whose
    text is missing (None) or not a string is refused, naming the row."""
    rows, where = iter(hub_dataset(name, config, split)), f"{name} ({split} split)"
    for i in itertools.count():
        try:
            row = next(rows)
        except StopIteration:
            return
        # a broken file part way: name where
        except Exception as e:
            raise ValueError(f"{where}: cannot read row {i:,} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        if column not in row:
            raise ValueError(f"{where} has no column {column!r} (its columns: "
                             f"{', '.join(row)}); name one with --column")
        text = row[column]
        if not isinstance(text, str):
            raise ValueError(f"{where} row {i:,}: its {column!r} is {type(text).__name__}, not "
                             f"text; clean the dataset or choose another --column")
        if text:
            yield text


def hub_rows(name: str, config: str | None, split: str) -> int | None:
    """How many rows a dataset's split has, if its card says; None if unknown."""
    try:
        from datasets import load_dataset_builder

        revision = OPENWEBTEXT["revision"] if name == OPENWEBTEXT["name"] else None
        return load_dataset_builder(name, config, revision=revision).info.splits[split].num_examples
    except Exception:
        return None


def documents(files: list[str] | None, split: str | None, column: str,
              hub: tuple | None = None) -> Iterator[tuple[str, ...]]:
    """Every document as a tuple of its pieces (a long .txt file comes in several); hub is (name,
    config, split) of a Hugging Face dataset, read when files is None."""
    if files is None:
        yield from ((d,) for d in read_hub(*hub, column))
    for path in files or []:
        if path.endswith(TABLES):
            yield from ((d,) for d in read_table(path, column))
        elif split is not None:
            yield from ((d,) for d in read_split_documents(path, split))
        else:
            yield tuple(text for _, text in read_txt_document(path))


def pieces_by_split(files: list[str] | None, split: str | None, val_fraction: float, seed: int,
                    column: str, hub: tuple | None = None) -> Iterator[tuple[str, str, bool]]:
    """Every piece of every document with the split it goes to, (split, text, starts_document), in
    a fixed order for a given seed: data/prepare.py's docstring says how documents are split."""
    if files is not None and len(files) == 1 and split is None and not files[0].endswith(TABLES):
        # one document: nanoGPT's split, the last val_fraction is val
        last = None
        for part, text in read_txt_document(files[0], cut_fraction=1 - val_fraction):
            # each split's first piece starts its document
            yield part, text, part != last
            last = part
        return
    rng, pending, seen = np.random.default_rng(seed), None, set()
    for doc in itertools.chain(documents(files, split, column, hub), [None]):
        # routed one behind, so that the last document can fill a split still empty
        if pending is not None:
            where = "val" if rng.random() < val_fraction else "train"
            if doc is None and {"train", "val"} - seen:
                where = "val" if "val" not in seen else "train"
            seen.add(where)
            yield from ((where, t, i == 0) for i, t in enumerate(pending))
        pending = doc


def batches(pieces, size: int) -> Iterator[list]:
    """Pieces grouped into lists of about `size` characters."""
    batch, chars = [], 0
    for piece in pieces:
        batch.append(piece)
        chars += len(piece[1])
        if chars >= size:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def encode_batches(tok, groups: Iterator[list], num_proc: int) -> Iterator[tuple[list, list]]:
    """(batch, its texts' ids) in order, the batches encoded on num_proc threads while this one
    writes: tiktoken encodes outside the GIL. A few batches ahead at most: memory stays flat."""
    from concurrent.futures import ThreadPoolExecutor

    encode, pool, ahead = encoder(tok), ThreadPoolExecutor(num_proc), collections.deque()
    try:
        for batch in groups:
            ahead.append((batch, pool.submit(encode, [text for _, text, _ in batch])))
            if len(ahead) > 2 * num_proc:
                batch, future = ahead.popleft()
                yield batch, future.result()
        while ahead:
            batch, future = ahead.popleft()
            yield batch, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def encoder(tok):
    """A function from texts to their ids (the tokenizer's encode_batch), as arrays for tiktoken's
    tokenizers: straight from its buffer, with no list of Python ints built under the GIL."""
    enc = getattr(tok, "enc", None)
    if enc is None:
        return lambda texts: tok.encode_batch(texts, 1)
    # no special token allowed, none refused: <|endoftext|> in a text is ordinary text
    return lambda texts: [enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
                          for text in texts]


def tokenizer_for(name: str, vocab_size: int, docs):
    """A new tokenizer made from this corpus: a BPE trained on its train split (val stays unseen),
    or its characters (all of them, as nanoGPT's); any other name is a tokenizer to reuse, which
    load_tokenizer finds (gpt2, a folder, a data folder, a checkpoint, ...)."""
    if name == "bpe":
        print(f"training a byte-level BPE tokenizer with {vocab_size} tokens on the train split...")
        tok = train_tokenizer((text for part, text, _ in docs() if part == "train"), vocab_size)
        if tok.n_vocab < vocab_size:
            print(f"note: the BPE has {tok.n_vocab} tokens, not --vocab_size={vocab_size}: the "
                  f"text has too few pairs seen twice for more merges (give more text or a "
                  f"smaller --vocab_size)")
        return tok
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
