"""
Tokenizers: GPT-2's byte-level BPE (offline, its files verified), a byte-level BPE that bpe.py
trained on your text, or characters. The BPEs wrap a tiktoken.Encoding (`tok.enc`), which is fast
and encodes batches on several threads. A trained BPE is saved as GPT-2-format vocab.json +
merges.txt, so Hugging Face's tokenizers and transformers load the same files and give the same ids.

load_tokenizer(source) is the one way to the tokenizer of anything: a name, a folder, a checkpoint,
nanoGPT's files, or the dict a checkpoint keeps (data/tokenizer_files.py reads the files).
check_fits() is the one check that a model, its tokenizer and its data agree.
"""

import functools
import os

import tiktoken

from data import tokenizer_files

# the text of the token that ends a document: GPT-2's, and the last id of every vocabulary made here
EOT = tokenizer_files.EOT
# OpenAI's GPT-2 sizes, which all use GPT-2's one tokenizer
GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


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
        # a bpe's GPT-2-format files, as text for to_dict() and tokenizer_files.save_tokenizer()
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


# building takes ~1 s and the result never changes: share it
@functools.lru_cache(maxsize=1)
def get_gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer, offline (tokenizer_files.gpt2_encoding finds its files)."""
    return Tokenizer("gpt2", tokenizer_files.gpt2_encoding())


# -----------------------------------------------------------------------------
# the one way to load


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
        return _from_dict(tokenizer_files.meta_pkl(path), path)
    if not os.path.isdir(path):
        raise ValueError(f"{path} is no tokenizer: give gpt2, a folder with vocab.json + "
                         f"merges.txt (or tokenizer.json), a data folder, a Hugging Face model "
                         f"folder, a checkpoint or nanoGPT's meta.pkl")
    return _from_dict(*tokenizer_files.folder_tokenizer(path))


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
    """Inverse of Tokenizer.to_dict(), for what a checkpoint keeps and what tokenizer_files reads."""
    name = d.get("name")
    if name == "gpt2":
        return get_gpt2_tokenizer()
    if name == "bpe" and isinstance(d.get("vocab"), str) and isinstance(d.get("merges"), str):
        enc, vocab_json, merges_txt = tokenizer_files.bpe_encoding(d["vocab"], d["merges"], where)
        gpt2 = get_gpt2_tokenizer() if enc.n_vocab == 50257 else None
        # GPT-2's own files (as transformers saves them) are GPT-2's tokenizer
        if gpt2 is not None and enc._mergeable_ranks == gpt2.enc._mergeable_ranks:
            return gpt2
        return Tokenizer("bpe", enc, vocab_json, merges_txt)
    if name == "char" and isinstance(d.get("chars"), str) and d["chars"]:
        return CharTokenizer(d["chars"], d.get("eot", True))
    raise ValueError(f"{where} names no tokenizer this code knows (gpt2, bpe + vocab + merges, "
                     f"char + chars): {str(d)[:80]}; run data/prepare.py again")


def _checkpoint_tokenizer(ck: dict, where: str) -> Tokenizer:
    """The tokenizer a checkpoint keeps (nanoGPT's keep none), checked against its model."""
    d = ck["tokenizer"] if "tokenizer" in ck else tokenizer_files.nanogpt_checkpoint(ck, where)
    try:
        tok = _from_dict(d, "its tokenizer dict")
    except ValueError as e:
        raise ValueError(f"{where}: its tokenizer cannot be used ({e}); retrain or restore "
                         f"it") from None
    check_fits(tok, ck["model_args"]["vocab_size"], where)
    return tok
