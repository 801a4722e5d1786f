"""
nanoGPT's data folders, read as they are: headerless train.bin / val.bin of uint16 token ids,
GPT-2's or the characters that a meta.pkl beside them lists (tokenizer.py's load_tokenizer reads
it, safely).
"""

import os

import numpy as np

from data.tokenizer import load_tokenizer


def data_meta(data_dir: str) -> dict:
    """data/shards.py's meta for a nanoGPT data folder. Characters and bytes are counted on the
    val split, the one the final report converts; the files are used as they are, nothing is
    rewritten."""
    tok = load_tokenizer(data_dir)
    print(f"note: {data_dir} holds nanoGPT's headerless train.bin / val.bin, read as they are "
          f"({tok.name} tokens)")
    size = lambda split: os.path.getsize(os.path.join(data_dir, f"{split}.bin"))
    splits = {s: dict(shards=[f"{s}.bin"], tokens=size(s) // 2) for s in ("train", "val")}
    val = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
    text = tok.decode(val)
    documents = 1 + int(np.sum(val == tok.eot_token)) if tok.eot_token is not None else 1
    splits["val"].update(chars=len(text), bytes=len(text.encode("utf-8")), documents=documents)
    splits["train"]["documents"] = documents
    chars = {"chars": tok.chars, "eot": False} if tok.name == "char" else {}
    return dict(format="nanogpt", tokenizer=tok.name, vocab_size=tok.n_vocab,
                eot_token=tok.eot_token, splits=splits, **chars)
