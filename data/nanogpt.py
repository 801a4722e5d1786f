"""
nanoGPT's files, read as they are: a data folder of headerless train.bin / val.bin (uint16 token ids: GPT-2's
tokenizer, or the characters that its meta.pkl lists), and the ckpt.pt that nanoGPT's train.py writes (no
tokenizer inside: GPT-2's, unless its dataset's meta.pkl says characters).
"""

import os
import pickle

import numpy as np

from data.tokenizer import CharTokenizer, get_gpt2_tokenizer

REPO_DATA = os.path.dirname(os.path.abspath(__file__))  # this folder, data/


class _PlainData(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numbers only: a meta.pkl that would import (and run) code is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not plain data")


def data_tokenizer(data_dir: str):
    """The characters of data_dir/meta.pkl in nanoGPT's order (its ids), else GPT-2's tokenizer."""
    path = os.path.join(data_dir, "meta.pkl")
    if not os.path.isfile(path):
        return get_gpt2_tokenizer()
    try:
        with open(path, "rb") as f:
            itos = _PlainData(f).load()["itos"]
        return CharTokenizer("".join(itos[i] for i in range(len(itos))), eot=False)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a meta.pkl of nanoGPT's ({e}); refusing to load it") from None


def data_meta(data_dir: str) -> dict:
    """data/shards.py's meta for a nanoGPT data folder. Characters and bytes are counted on the val split, the
    one the final report converts; the files are used as they are, nothing is rewritten."""
    tok = data_tokenizer(data_dir)
    print(f"note: {data_dir} holds nanoGPT's headerless train.bin / val.bin, read as they are ({tok.name} tokens)")
    splits = {s: dict(shards=[f"{s}.bin"], tokens=os.path.getsize(os.path.join(data_dir, f"{s}.bin")) // 2)
              for s in ("train", "val")}
    val = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
    text = tok.decode(val)
    documents = 1 + int(np.sum(val == tok.eot_token)) if tok.eot_token is not None else 1
    splits["val"].update(chars=len(text), bytes=len(text.encode("utf-8")), documents=documents)
    splits["train"]["documents"] = documents
    return dict(format="nanogpt", tokenizer=tok.name, vocab_size=tok.n_vocab, eot_token=tok.eot_token,
                splits=splits, **({"chars": tok.chars, "eot": False} if tok.name == "char" else {}))


def checkpoint_tokenizer(ck: dict):
    """A nanoGPT checkpoint's tokenizer: the characters of its dataset's meta.pkl (looked for under data/ here
    and in the current folder, as nanoGPT's sample.py does), else GPT-2's."""
    dataset = ck.get("config", {}).get("dataset", "")
    for folder in (os.path.join("data", dataset), os.path.join(REPO_DATA, dataset)):
        if dataset and os.path.isfile(os.path.join(folder, "meta.pkl")):
            return data_tokenizer(folder)
    if ck["model_args"]["vocab_size"] < 50257:
        raise ValueError(f"this nanoGPT checkpoint has a vocabulary of {ck['model_args']['vocab_size']} tokens, "
                         f"but data/{dataset}/meta.pkl is not here: run from nanoGPT's folder, or copy it")
    return get_gpt2_tokenizer()
