"""
The token shard format: written by data/prepare.py (through data/shard_writer.py), read by train.py
and eval.py through memory maps.

    data/NAME/train_000.bin, ...  a 64-byte header (magic, version, item size, token count, CRC-32
    data/NAME/val_000.bin, ...    of the tokens), then the token ids: uint16 while the vocabulary
                                  fits, else uint32
    data/NAME/meta.json           the tokenizer, the vocabulary size, and per split: its shards and
                                  its tokens, documents, characters and bytes (for nats/char and
                                  bits/byte)
    data/NAME/progress.json       only while prepare runs or after it stopped: what it can continue
                                  from (support/prepare_progress.py; .bin.tmp files are unfinished)
"""

import json
import os
import struct
import zlib

import numpy as np

MAGIC, VERSION = b"GPTSHARD", 1
HEADER = struct.Struct("<8sIIQI")  # magic, version, itemsize, num_tokens, crc32
# the tokens start at a 64-byte boundary
HEADER_BYTES = 64
# ~200 MB per uint16 shard: big enough to be few, small enough to move
SHARD_TOKENS = 100_000_000
# this folder: where data/prepare.py writes by default
DATA_ROOT = os.path.dirname(os.path.abspath(__file__))


def data_dir(dataset: str) -> str:
    """A dataset's folder: a path as given, or a bare name under data/ (nanoGPT's rule)."""
    if os.path.isdir(dataset) or os.sep in dataset:
        return dataset
    return os.path.join(DATA_ROOT, dataset)


def read_shard(path: str, verify: bool = True) -> np.memmap:
    """Memory-map a shard's tokens after checking its header, its size and (by default) its
    checksum."""
    fix = "run data/prepare.py again to rebuild it"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
    except OSError as e:
        raise ValueError(f"cannot read shard {path}: {e.strerror}; {fix}") from None
    if size < HEADER_BYTES or head[:8] != MAGIC:
        raise ValueError(f"{path} is not a token shard written by data/prepare.py (bad magic); "
                         f"{fix}")
    _, version, itemsize, count, crc = HEADER.unpack(head)
    if version != VERSION or itemsize not in (2, 4):
        raise ValueError(f"{path} has unsupported shard version {version} / itemsize {itemsize}; "
                         f"{fix}")
    if size != HEADER_BYTES + count * itemsize:
        raise ValueError(f"{path} is truncated or padded: {size} bytes, its header says "
                         f"{HEADER_BYTES + count * itemsize}; {fix}")
    tokens = np.memmap(path, dtype=np.uint16 if itemsize == 2 else np.uint32, mode="r",
                       offset=HEADER_BYTES, shape=(count,))
    if verify:
        crc_now = 0
        # in 32-64 MB pieces: a big shard never sits in RAM
        for i in range(0, count, 1 << 24):
            crc_now = zlib.crc32(tokens[i : i + (1 << 24)].tobytes(), crc_now)
        if crc_now != crc:
            raise ValueError(f"{path} is corrupt (checksum mismatch); {fix}")
    return tokens


def read_meta(data_dir: str) -> dict:
    """Read and sanity-check data_dir/meta.json."""
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isdir(data_dir):
        what = "is a file" if os.path.exists(data_dir) else "does not exist"
        raise ValueError(f"data folder {data_dir} {what}; prepare one: python data/prepare.py "
                         f"--input=YOUR_TEXT --name={os.path.basename(data_dir)}")
    if not os.path.exists(path):
        if os.path.isfile(os.path.join(data_dir, "train.bin")):
            # nanoGPT's headerless train.bin / val.bin
            from data import nanogpt

            return nanogpt.data_meta(data_dir)
        raise ValueError(f"{data_dir} has no meta.json (empty or unprepared); run data/prepare.py "
                         f"for it")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        problem = _meta_problem(meta)
    # ValueError: not JSON, or not UTF-8
    except (OSError, ValueError):
        problem = "unreadable, or not JSON"
    if problem:
        raise ValueError(f"{path} is corrupt or not written by data/prepare.py ({problem}); "
                         f"run prepare again")
    return meta


def _meta_problem(meta) -> str:
    """What is wrong with meta.json's contents, naming the first field that train.py cannot use;
    '' if nothing is."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("format") != "gpt-shards" or meta.get("version") != VERSION:
        return f"format/version is not gpt-shards/{VERSION}"
    if not isinstance(meta.get("vocab_size"), int) or meta["vocab_size"] <= 0:
        return "vocab_size is not a positive int"
    if not isinstance(meta.get("tokenizer"), str):
        return "tokenizer is not a name"
    if not isinstance(meta.get("eot_token"), int):
        return "eot_token is not an int"
    splits = meta.get("splits")
    for split in ("train", "val"):
        if not isinstance(splits, dict) or not isinstance(splits.get(split), dict) or \
                not isinstance(splits[split].get("shards"), list):
            return f"splits.{split}.shards is not a list"
    return ""


class Batches:
    """Random windows of block_size+1 tokens from a split's memory-mapped shards.

    Each optimizer step draws the start positions of its whole global batch from one generator that
    every process holds identically; process r then takes micro-steps r*k .. r*k+k-1. So the global
    batch does not depend on the number of processes, and the generator's state in the checkpoint
    makes a resumed run draw exactly what the uninterrupted run would have drawn."""

    def __init__(self, data_dir: str, meta: dict, split: str, block_size: int, batch_size: int,
                 device: str):
        paths = [os.path.join(data_dir, name) for name in meta["splits"][split]["shards"]]
        # checksums cost a second on a split under 1 GB; on OpenWebText's 17 GB, minutes per start
        verify = sum(os.path.getsize(p) for p in paths if os.path.isfile(p)) < 2**30
        # nanoGPT's files are headerless uint16
        raw = meta["format"] == "nanogpt"
        self.shards = [np.memmap(p, dtype=np.uint16, mode="r") if raw else read_shard(p, verify)
                       for p in paths]
        self.block_size, self.batch_size, self.device = block_size, batch_size, device
        self.vocab_size = meta["vocab_size"]
        # the valid window starts of each shard
        starts = [max(len(s) - block_size, 0) for s in self.shards]
        if sum(starts) == 0:
            raise ValueError(f"the {split} split of {data_dir} has {sum(map(len, self.shards))} "
                             f"tokens, fewer than block_size+1 = {block_size + 1}: use a smaller "
                             f"--block_size or more text")
        self.cum = np.cumsum(starts)

    def draw(self, generator, n_micro: int):
        """Start positions (as global indices) for n_micro micro-batches, from a torch.Generator."""
        # torch is imported here and in to_device only: data/prepare.py writes shards without it
        import torch

        return torch.randint(int(self.cum[-1]), (n_micro, self.batch_size), generator=generator)

    def get(self, starts):
        """The micro-batch (x, y) at these start positions: y is x shifted by one token."""
        rows = []
        for g in starts.tolist():
            k = int(np.searchsorted(self.cum, g, side="right"))
            off = g - (int(self.cum[k - 1]) if k else 0)
            rows.append(self.shards[k][off : off + self.block_size + 1])
        return to_device(np.stack(rows), self.device, self.vocab_size)


def windows(shards, block_size: int, batch_size: int):
    """Every token of a split in consecutive windows of block_size+1 tokens (each token is a target
    once), batch_size windows at a time; a shard's shorter last window comes alone."""
    T = block_size
    for shard in shards:
        n_full = (len(shard) - 1) // T
        for i in range(0, n_full, batch_size):
            rows = range(i, min(i + batch_size, n_full))
            yield np.stack([shard[j * T : (j + 1) * T + 1] for j in rows])
        if (len(shard) - 1) % T:
            yield np.asarray(shard[n_full * T :])[None]


def to_device(rows: np.ndarray, device: str, vocab_size: int):
    """Token rows (B, T+1) -> (x, y) int64 tensors on the device; pinned memory lets the copy to a
    GPU run asynchronously with the compute."""
    import torch

    if rows.max() >= vocab_size:
        raise ValueError(f"token id {rows.max()} is outside the vocabulary ({vocab_size}): the "
                         f"data is corrupt; run data/prepare.py again")
    xy = torch.from_numpy(rows.astype(np.int64))
    x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()
    if not device.startswith("cuda"):
        return x.to(device), y.to(device)
    return (x.pin_memory().to(device, non_blocking=True),
            y.pin_memory().to(device, non_blocking=True))
