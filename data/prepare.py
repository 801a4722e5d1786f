"""
Turn text into token shards that train.py reads through memory maps.

    python data/prepare.py                                  # OpenWebText -> data/openwebtext/
    python data/prepare.py --input=shakespeare.txt          # your text   -> data/shakespeare/
    python data/prepare.py --input="quotes/*.txt" --split=%  # short documents separated by a '%' line
    python data/prepare.py --input=posts.jsonl.gz --tokenizer=bpe --vocab_size=5000  # your own vocabulary

Input: .txt files (one document per file, or many separated by a delimiter line given with --split; an
empty --split="" separates on blank lines), or .jsonl / .jsonl.gz with a "text" field per line. A text
that is a single document (one file, no --split) is split like nanoGPT's shakespeare: its first
1-val_fraction goes to train, the rest to val. Otherwise each document goes to val with probability
val_fraction (seeded), and at least one does.

Output, in data/NAME/:
    train_000.bin, ... val_000.bin   token shards: a 64-byte header (magic, version, itemsize, token
                                     count, crc32 of the tokens) then the tokens, uint16 while the
                                     vocabulary fits, else uint32. Documents are separated by <|endoftext|>.
    meta.json                        tokenizer, vocab size, dtype, and per split: shards, tokens, documents,
                                     characters and bytes (so losses convert to nats/char and bits/byte).
    vocab.json, merges.txt           only with --tokenizer=bpe: the trained byte-level BPE, GPT-2 format.

Text is read, tokenized (tiktoken, in parallel threads) and written in bounded batches, so peak memory does
not grow with the corpus. Every file is written to a temporary name and renamed when complete.
"""

import argparse
import codecs
import glob
import gzip
import json
import os
import struct
import sys
import time
import zlib
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from tokenizer import TokenizerError, get_gpt2_tokenizer, train_tokenizer  # noqa: E402

# --------------------------------------------------------------------------------------------------
# The shard format, shared by the writer here and the reader in train.py

MAGIC = b"GPTSHARD"
VERSION = 1
HEADER = struct.Struct("<8sIIQI")  # magic, version, itemsize, num_tokens, crc32
HEADER_BYTES = 64  # tokens start at a 64-byte boundary
SHARD_TOKENS = 100_000_000  # ~200 MB per uint16 shard: big enough to be few, small enough to move


class DataError(ValueError):
    """A bad or missing data file; the message says which and what to do."""


def dtype_for_vocab(n_vocab: int) -> np.dtype:
    return np.dtype(np.uint16) if n_vocab <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends token arrays to a shard file; the header is filled in and the file renamed on close()."""

    def __init__(self, path: str, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.tmp = path + ".tmp"
        self.f = open(self.tmp, "wb")
        self.f.write(b"\0" * HEADER_BYTES)
        self.count, self.crc = 0, 0

    def write(self, tokens: np.ndarray):
        buf = np.ascontiguousarray(tokens, dtype=self.dtype).tobytes()
        self.f.write(buf)
        self.crc = zlib.crc32(buf, self.crc)
        self.count += len(tokens)

    def close(self):
        self.f.seek(0)
        header = HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count, self.crc)
        self.f.write(header.ljust(HEADER_BYTES, b"\0"))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)


def read_shard(path: str, verify: bool = True) -> np.memmap:
    """Memory-map a shard's tokens after checking its header, its size and (by default) its checksum."""
    fix = "run data/prepare.py again to rebuild it"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise DataError(f"cannot read shard {path}: {e.strerror}; {fix}") from None
    if len(head) < HEADER_BYTES or head[:8] != MAGIC:
        raise DataError(f"{path} is not a token shard written by data/prepare.py (bad magic); {fix}")
    _, version, itemsize, count, crc = HEADER.unpack(head[: HEADER.size])
    if version != VERSION or itemsize not in (2, 4):
        raise DataError(f"{path} has unsupported shard version {version} / itemsize {itemsize}; {fix}")
    expected = HEADER_BYTES + count * itemsize
    if size != expected:
        raise DataError(f"{path} is truncated or padded: {size} bytes, header says {expected}; {fix}")
    tokens = np.memmap(path, dtype=np.uint16 if itemsize == 2 else np.uint32, mode="r",
                       offset=HEADER_BYTES, shape=(count,))
    if verify:
        crc_now = 0
        for i in range(0, count, 1 << 24):  # in 32-64 MB pieces, so a big shard is never all in RAM
            crc_now = zlib.crc32(tokens[i : i + (1 << 24)].tobytes(), crc_now)
        if crc_now != crc:
            raise DataError(f"{path} is corrupt (checksum mismatch); {fix}")
    return tokens


def read_meta(data_dir: str) -> dict:
    """Read and sanity-check data_dir/meta.json."""
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir} does not exist; prepare it first: "
                        f"python data/prepare.py --input=YOUR_TEXT --name={os.path.basename(data_dir)}")
    if not os.path.exists(path):
        raise DataError(f"{data_dir} has no meta.json (empty or unprepared); run data/prepare.py for it")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        assert isinstance(meta, dict) and meta["format"] == "gpt-shards" and meta["version"] == VERSION
        assert isinstance(meta["vocab_size"], int) and meta["vocab_size"] > 0
        assert isinstance(meta["tokenizer"], str) and isinstance(meta["eot_token"], int)
        for split in ("train", "val"):
            assert isinstance(meta["splits"][split]["shards"], list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise DataError(f"{path} is corrupt or not written by data/prepare.py; run prepare again") from None
    return meta


# --------------------------------------------------------------------------------------------------
# Reading documents

class _DecodeErrors:
    """Counts invalid UTF-8 sequences; they become U+FFFD instead of crashing the run."""

    count = 0

    @classmethod
    def handler(cls, err: UnicodeDecodeError):
        cls.count += 1
        return "\ufffd", err.end


codecs.register_error("prepare_count", _DecodeErrors.handler)


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="prepare_count")


CHUNK_BYTES = 4 << 20
_PLAIN = set(range(0x21, 0x7F))  # printable ASCII, no whitespace


def _read_txt_document(path: str, cut_fraction: float | None = None) -> Iterator[tuple[str, str]]:
    """Yield one text file as (split, text) pieces of ~4 MB, so a huge file never sits in memory.

    Pieces end at a newline with printable characters on both sides: the GPT-2 pre-tokenizer always makes
    such a newline a piece of its own, so encoding the pieces gives exactly the tokens of the whole text.
    With cut_fraction, the bytes after that fraction (moved to a character boundary) go to "val"."""
    cut_at = None if cut_fraction is None else int(os.path.getsize(path) * cut_fraction)
    split, buf, size, pos = "train", [], 0, 0
    with open(path, "rb") as f:
        for line in f:
            if cut_at is not None and pos + len(line) > cut_at:
                k = cut_at - pos
                while k < len(line) and (line[k] & 0xC0) == 0x80:  # skip UTF-8 continuation bytes
                    k += 1
                buf.append(line[:k])
                yield split, _decode(b"".join(buf))
                split, buf, size, line, cut_at = "val", [], 0, line[k:], None
            elif size >= CHUNK_BYTES and line[:1] and line[0] in _PLAIN and buf[-1][-2:-1] \
                    and buf[-1][-2] in _PLAIN:
                yield split, _decode(b"".join(buf))
                buf, size = [], 0
            pos += len(line)
            buf.append(line)
            size += len(line)
    yield split, _decode(b"".join(buf))


def _read_jsonl(path: str) -> Iterator[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(_decode(line))["text"]
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path} line {lineno}: expected a JSON object with a string 'text' "
                                f"field") from None
            yield text


def _read_split_documents(path: str, delimiter: str) -> Iterator[str]:
    """Short-form documents separated by a line holding only the delimiter (a blank line if empty)."""
    doc: list[bytes] = []
    with open(path, "rb") as f:
        for line in f:
            if _decode(line).strip() == delimiter:
                if any(x.strip() for x in doc):
                    yield _decode(b"".join(doc)).strip("\n")
                doc = []
            else:
                doc.append(line)
    if any(x.strip() for x in doc):
        yield _decode(b"".join(doc)).strip("\n")


def _openwebtext() -> Iterator[str]:
    """OpenWebText through `datasets`, streamed (no full copy in RAM or a second one on disk). The original
    repository's loading script stopped working in datasets 3+; its parquet export works everywhere."""
    from datasets import load_dataset

    try:
        ds = load_dataset("Skylion007/openwebtext", split="train", streaming=True)
    except RuntimeError as e:  # "Dataset scripts are no longer supported"
        if "script" not in str(e).lower():
            raise
        ds = load_dataset("Skylion007/openwebtext", revision="refs/convert/parquet", split="train",
                          streaming=True)
    for example in ds:
        yield example["text"]


OWT_DOCUMENTS = 8_013_769  # for the progress bar


def expand_inputs(pattern: str) -> list[str]:
    files = sorted(f for p in pattern.split(",") for f in (glob.glob(p, recursive=True) or [p]))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DataError(f"input {missing[0]} not found: give a file, a glob like 'texts/*.txt' or a list "
                        f"separated by commas")
    return files


def iter_documents(files: list[str] | None, split: str | None, val_fraction: float, seed: int):
    """Yield (split, text, starts_document) pieces in a fixed order for a given seed.

    Documents are routed one behind, so the last one can go to val if none did before it."""
    if files is not None and len(files) == 1 and split is None and not files[0].endswith((".jsonl", ".gz")):
        # a single document: nanoGPT's split, first part train, last val_fraction val
        first = {"train": True, "val": True}
        for part, text in _read_txt_document(files[0], cut_fraction=1 - val_fraction):
            yield part, text, first[part]
            first[part] = False
        return

    def documents():
        if files is None:
            yield from ((d,) for d in _openwebtext())
            return
        for path in files:
            if path.endswith((".jsonl", ".jsonl.gz")):
                yield from ((d,) for d in _read_jsonl(path))
            elif split is not None:
                yield from ((d,) for d in _read_split_documents(path, split))
            else:
                yield tuple(text for _, text in _read_txt_document(path))

    rng = np.random.default_rng(seed)
    pending, any_val = None, False
    for doc in documents():
        if pending is not None:
            where = "val" if rng.random() < val_fraction else "train"
            any_val |= where == "val"
            yield from ((where, t, i == 0) for i, t in enumerate(pending))
        pending = doc
    if pending is not None:
        where = "val" if (not any_val or rng.random() < val_fraction) else "train"
        yield from ((where, t, i == 0) for i, t in enumerate(pending))


def prepare(files: list[str] | None, out_dir: str, tokenizer_name: str = "gpt2", vocab_size: int = 5000,
            split: str | None = None, val_fraction: float = 0.1, seed: int = 1337, num_proc: int = 8,
            progress: bool = True) -> dict:
    """Tokenize the documents into out_dir's shards and meta.json; returns the meta dict."""
    from tqdm import tqdm

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    os.makedirs(out_dir, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise DataError(f"output directory {out_dir} is not writable; choose another with --out_dir")
    docs = lambda: iter_documents(files, split, val_fraction, seed)
    total_bytes = sum(os.path.getsize(f) for f in files) if files else None
    t0 = time.time()
    _DecodeErrors.count = 0

    if tokenizer_name == "bpe":
        # A tokenizer fit to this corpus, trained on the train split only (val stays unseen).
        print(f"training a byte-level BPE tokenizer with {vocab_size} tokens on the train split...")
        tok = train_tokenizer((text for part, text, _ in docs() if part == "train"), vocab_size=vocab_size,
                              out_dir=out_dir)
        print(f"tokenizer trained in {time.time() - t0:.1f}s, saved vocab.json and merges.txt in {out_dir}")
    elif tokenizer_name == "gpt2":
        tok = get_gpt2_tokenizer()
    else:
        raise DataError(f"unknown --tokenizer={tokenizer_name}: use gpt2 or bpe")
    dtype = dtype_for_vocab(tok.n_vocab)

    stats = {s: dict(shards=[], tokens=0, documents=0, chars=0, bytes=0) for s in ("train", "val")}
    writers: dict[str, ShardWriter] = {}

    def write(part: str, tokens: list[int]):
        st = stats[part]
        arr = np.asarray(tokens, dtype=dtype)
        while len(arr):
            w = writers.get(part)
            if w is None:
                name = f"{part}_{len(st['shards']):03d}.bin"
                w = writers[part] = ShardWriter(os.path.join(out_dir, name), dtype)
                st["shards"].append(name)
            room = SHARD_TOKENS - w.count
            w.write(arr[:room])
            arr = arr[room:]
            if w.count >= SHARD_TOKENS:
                w.close()
                del writers[part]
        st["tokens"] += len(tokens)

    bar = tqdm(total=total_bytes or OWT_DOCUMENTS, unit="B" if total_bytes else "doc", unit_scale=True,
               desc=f"tokenizing ({tok.name})", disable=not progress)
    batch: list[tuple[str, str, bool]] = []

    def flush():
        ids = tok.encode_batch([text for _, text, _ in batch], num_threads=num_proc)
        for (part, text, starts), toks in zip(batch, ids):
            st = stats[part]
            if starts:
                if st["documents"]:
                    toks = [tok.eot_token] + toks  # <|endoftext|> between documents
                st["documents"] += 1
            write(part, toks)
            nbytes = len(text.encode("utf-8"))
            st["chars"] += len(text)
            st["bytes"] += nbytes
            bar.update(nbytes if total_bytes else int(starts))
        batch.clear()

    batched = 0
    for piece in docs():
        batch.append(piece)
        batched += len(piece[1])
        if batched >= CHUNK_BYTES * 2:
            flush()
            batched = 0
    flush()
    bar.close()
    for w in writers.values():
        w.close()

    for part in ("train", "val"):
        if stats[part]["tokens"] == 0:
            raise DataError(f"the {part} split is empty: the input has no text (or too little for "
                            f"val_fraction={val_fraction})")
    meta = dict(format="gpt-shards", version=VERSION, tokenizer=tok.name, vocab_size=tok.n_vocab,
                eot_token=tok.eot_token, dtype=dtype.name, splits=stats, decode_errors=_DecodeErrors.count,
                source=files if files else "openwebtext", seed=seed, val_fraction=val_fraction)
    tmp = os.path.join(out_dir, "meta.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "meta.json"))

    if _DecodeErrors.count:
        print(f"warning: {_DecodeErrors.count} invalid UTF-8 sequences were replaced by U+FFFD")
    for part in ("train", "val"):
        st = stats[part]
        print(f"{part}: {st['documents']:,} documents, {st['tokens']:,} tokens, "
              f"{st['bytes'] / max(st['tokens'], 1):.2f} bytes/token, in {len(st['shards'])} shard(s)")
    print(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="text file(s): a path, a glob or a comma-separated list "
                        "(.txt, .jsonl, .jsonl.gz); default: OpenWebText from the Hugging Face hub")
    parser.add_argument("--name", help="output goes to data/NAME/ (default: from the input's file name)")
    parser.add_argument("--out_dir", help="output directory (overrides data/NAME/)")
    parser.add_argument("--split", help="a line holding only this string separates documents in .txt "
                        "files (e.g. %%); an empty string splits on blank lines")
    parser.add_argument("--tokenizer", default="gpt2", choices=["gpt2", "bpe"],
                        help="GPT-2's tokenizer, or train a byte-level BPE on this data (default gpt2)")
    parser.add_argument("--vocab_size", type=int, default=5000, help="vocabulary size for --tokenizer=bpe")
    parser.add_argument("--val_fraction", type=float, default=None,
                        help="fraction held out for validation (default 0.1; 0.0005 for OpenWebText)")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count() or 1, help="tokenizer threads")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the train/val assignment")
    args = parser.parse_args(argv)

    files = expand_inputs(args.input) if args.input else None
    name = args.name or (os.path.basename(files[0]).split(".")[0] if files else "openwebtext")
    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.1 if files else 0.0005)
    prepare(files, out_dir, args.tokenizer, args.vocab_size, args.split, val_fraction, args.seed,
            args.num_proc)


if __name__ == "__main__":
    try:
        main()
    except (DataError, TokenizerError) as e:
        sys.exit(f"error: {e}")
