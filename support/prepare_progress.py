"""
What makes data/prepare.py resumable (read prepare.py first). In a folder being prepared,
progress.json records the job (the arguments and the input), the tokenizer, the pieces of text
written, the counts so far and each split's complete shards, each time a shard is complete. The same
command, run again, continues from that record to the very bytes an uninterrupted run writes;
another command over the half-finished folder is refused; a prepare that stops keeps its complete
shards and says so, or else leaves nothing behind.
"""

import contextlib
import json
import os
import re
import shutil
import sys

from data.shard_writer import ShardWriter
from support.common import atomic_write

PROGRESS = "progress.json"


def the_job(files, hub, **args) -> dict:
    """What makes the shards what they are: the arguments and the input (each file's size and
    time), as JSON gives it back. Another job is refused over a half-finished folder."""
    source = [[os.path.abspath(f), os.path.getsize(f), os.stat(f).st_mtime_ns] for f in files] \
        if files else list(hub)
    return json.loads(json.dumps(dict(source=source, **args)))


def read_json(path: str):
    """A JSON file's contents; None if it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_state(out_dir: str, job: dict) -> dict | None:
    """A half-finished prepare's progress, if out_dir holds one of this same job."""
    path = os.path.join(out_dir, PROGRESS)
    if not os.path.isfile(path):
        return None
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("job"), dict):
        raise ValueError(f"{path} is unreadable: delete {out_dir} and prepare it again")
    if state["job"] != job:
        what = next(k for k in job if job[k] != state["job"].get(k))
        raise ValueError(f"{out_dir} holds a half-finished prepare with another {what} "
                         f"({state['job'].get(what)}): rerun that command to finish it, or delete "
                         f"the folder or choose another --out_dir")
    return state


class Progress:
    """Both splits' shard writers and the counts so far; checkpoint() records them in
    progress.json each time a shard is complete, and a Progress made from that record continues."""

    def __init__(self, out_dir: str, tok, job: dict, state: dict | None):
        self.out_dir, self.tok, self.job = out_dir, tok, job
        self.pieces = state["pieces"] if state else 0
        self.stats = state["stats"] if state else {
            s: dict(shards=[], tokens=0, documents=0, chars=0, bytes=0, replaced=0)
            for s in ("train", "val")}
        self.writers = {s: ShardWriter(out_dir, s, tok.n_vocab, job["shard_tokens"],
                                       state and state["writers"][s]) for s in self.stats}

    def checkpoint(self):
        state = dict(job=self.job, tokenizer=self.tok.to_dict(), pieces=self.pieces,
                     stats=self.stats, writers={s: w.state() for s, w in self.writers.items()})
        atomic_write(os.path.join(self.out_dir, PROGRESS), lambda f: json.dump(state, f),
                     text=True)
        # a finished prepare of other arguments was here: its shards are being replaced
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.out_dir, "meta.json"))
        for w in self.writers.values():
            w.publish()

    def clean_up(self):
        """Once meta.json is written: remove progress.json, and the shards of an earlier, bigger
        prepare of this folder or the leftovers of a stopped one."""
        keep = {n for st in self.stats.values() for n in st["shards"]}
        for name in os.listdir(self.out_dir):
            if re.fullmatch(r"(train|val)_\d+\.bin(\.tmp)?", name) and name not in keep or \
                    name == PROGRESS:
                os.remove(os.path.join(self.out_dir, name))


def stopped(out_dir: str, created: bool, run: Progress | None, error: BaseException):
    """After an error or an interrupt: keep the complete shards that a rerun continues from, and
    say so; else leave no folder behind (an existing one keeps what it had)."""
    for w in run.writers.values() if run else []:
        w.abandon()
    path = os.path.join(out_dir, PROGRESS)
    interrupted = isinstance(error, KeyboardInterrupt)
    if os.path.isfile(path):
        kept = read_json(path)
        n = sum(len(w["shards"]) for w in kept["writers"].values())
        mb = sum(st["bytes"] for st in kept["stats"].values()) / 1e6
        print(f"{'stopped' if interrupted else 'note'}: {out_dir} keeps {n} complete shard(s), "
              f"from the first {mb:,.1f} MB of text; run the same command again to continue from "
              f"there", file=sys.stderr)
        return
    if interrupted:
        print("stopped before the first shard was complete: nothing was kept", file=sys.stderr)
    if created:
        shutil.rmtree(out_dir, ignore_errors=True)
    elif os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if name.endswith(".bin.tmp"):
                os.remove(os.path.join(out_dir, name))
