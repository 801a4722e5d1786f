"""
Writing token shards in data/shards.py's format, for data/prepare.py: ShardWriter appends a split's
ids, seals each full shard (its header, flushed to disk), renames it once progress.json records it
(data/progress.py), and picks a stopped prepare up where that record says.
"""

import os
import zlib

import numpy as np

from data.shards import HEADER, HEADER_BYTES, MAGIC, SHARD_TOKENS, VERSION


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
        tokens = np.asarray(tokens, dtype=self.dtype)
        try:
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
        # a full disk, say: name the file
        except OSError as e:
            where = self._path(self.names[-1]) + ".tmp"
            raise OSError(e.errno, f"cannot write {where}: {e.strerror}") from None

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
