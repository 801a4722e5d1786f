"""
The token shard format: written by data/prepare.py, read by train.py and eval.py through memory
maps.

    data/NAME/train_000.bin, ...  a 64-byte header (magic, version, item size, token count, CRC-32
    data/NAME/val_000.bin, ...    of the tokens), then the token ids: uint16 while the vocabulary
                                  fits, else uint32
    data/NAME/meta.json           the tokenizer, the vocabulary size, and per split: its shards and
                                  its tokens, documents, characters and bytes (for nats/char and
                                  bits/byte)
    data/NAME/progress.json       only while prepare runs or after it stopped: what it can continue
                                  from (the .bin.tmp files are its unfinished shards)
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


class ShardWriter:
    """Appends token ids to a split's shards, a new shard every shard_tokens tokens. Each is written
    under a temporary name; a full one gets its header and waits in `pending` until publish()
    renames it, which prepare does once progress.json records it (so a shard file is always
    complete, and known). state() and state= let a stopped prepare continue exactly."""

    def __init__(self, out_dir: str, split: str, n_vocab: int, shard_tokens: int | None = None,
                 state: dict | None = None):
        self.out_dir, self.split, self.f, self.pending = out_dir, split, None, []
        self.dtype = np.dtype(np.uint16 if n_vocab <= 2**16 else np.uint32)
        self.shard_tokens = shard_tokens or SHARD_TOKENS
        state = state or dict(shards=[], count=0, crc=0)
        self.names, self.count, self.crc = list(state["shards"]), state["count"], state["crc"]
        for name in self.names:
            # recorded as complete, stopped before its rename
            if not os.path.exists(self._path(name)):
                os.replace(self._path(name) + ".tmp", self._path(name))
        if self.count:
            # the partial shard: back to the length it had when its state was recorded
            self.names.append(f"{split}_{len(self.names):03d}.bin")
            path = self._path(self.names[-1]) + ".tmp"
            size = HEADER_BYTES + self.count * self.dtype.itemsize
            if not os.path.isfile(path) or os.path.getsize(path) < size:
                raise ValueError(f"{path} is missing or short: delete {out_dir} and prepare again")
            self.f = open(path, "r+b")
            self.f.truncate(size)
            self.f.seek(0, os.SEEK_END)

    def _path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def write(self, tokens):
        try:
            self._write(np.asarray(tokens, dtype=self.dtype))
        # a full disk, say: name the file
        except OSError as e:
            where = self._path(self.names[-1]) + ".tmp"
            raise OSError(e.errno, f"cannot write {where}: {e.strerror}") from None

    def _write(self, tokens: np.ndarray):
        while len(tokens):
            # the next shard: room for the header first
            if self.f is None:
                self.names.append(f"{self.split}_{len(self.names):03d}.bin")
                self.f = open(self._path(self.names[-1]) + ".tmp", "wb")
                self.f.write(b"\0" * HEADER_BYTES)
                self.count = self.crc = 0
            room = self.shard_tokens - self.count
            part, tokens = tokens[:room], tokens[room:]
            self.f.write(part.tobytes())
            self.crc, self.count = zlib.crc32(part.tobytes(), self.crc), self.count + len(part)
            if self.count == self.shard_tokens:
                self._seal()

    def _seal(self):
        """Fill in the current shard's header and flush it to disk; publish() renames it."""
        self.f.seek(0)
        self.f.write(HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count, self.crc))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        self.f, self.count, self.crc = None, 0, 0
        self.pending.append(self.names[-1])

    def state(self) -> dict:
        """The complete shards and the partial one's token count and CRC, its bytes on disk."""
        if self.f is not None:
            self.f.flush()
            os.fsync(self.f.fileno())
        done = self.names[:-1] if self.f is not None else self.names
        return dict(shards=list(done), count=self.count, crc=self.crc)

    def publish(self):
        for name in self.pending:
            os.replace(self._path(name) + ".tmp", self._path(name))
        self.pending = []

    def close(self) -> list[str]:
        if self.f is not None:
            self._seal()
        self.publish()
        return self.names

    def abandon(self):
        """Close the partial shard's file without sealing it."""
        if self.f is not None:
            self.f.close()
            self.f = None


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
