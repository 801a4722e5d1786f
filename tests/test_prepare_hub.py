"""data/prepare.py at scale: Hugging Face datasets (a local folder in the hub's layout, offline),
a prepare that stops and continues to the same bytes, and hostile data."""

import errno
import json
import os
import random
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, SHAKESPEARE

from data import corpus, prepare as prep, shard_writer, shards

DOCS = [f"Document {i}: caf\u00e9 \u4e2d\u6587.\n\nSecond paragraph {i * 7}." for i in range(40)]


def hub_folder(tmp_path, rows, name="hub", files=3, column="text"):
    """A dataset folder laid out like the hub's: data/train-0000K-of-0000N.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / name / "data").mkdir(parents=True)
    for k in range(files):
        part = rows[k * len(rows) // files : (k + 1) * len(rows) // files]
        table = pa.table({column: part, "id": list(range(len(part)))})
        pq.write_table(table, tmp_path / name / "data" / f"train-{k:05d}-of-{files:05d}.parquet")
    return str(tmp_path / name)


def folder_bytes(path) -> dict:
    return {n: (path / n).read_bytes() for n in sorted(os.listdir(path))}


def test_hub_folder_gives_the_shards_of_the_same_jsonl(tmp_path):
    folder = hub_folder(tmp_path, DOCS[:20] + [""] + DOCS[20:])  # an empty row is skipped
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    a = prep.prepare(None, str(tmp_path / "a"), hub=(folder, None, "train"), val_fraction=0.2,
                     seed=5, num_proc=1, progress=False)
    b = prep.prepare([str(tmp_path / "d.jsonl")], str(tmp_path / "b"), val_fraction=0.2, seed=5,
                     num_proc=1, progress=False)
    assert a["splits"] == b["splits"] and a["splits"]["val"]["documents"] > 1
    shard_files = [n for n in os.listdir(tmp_path / "b") if n.endswith(".bin")]
    for n in shard_files:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert a["source"] == folder


def test_a_stopped_prepare_continues_without_encoding_again(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_TOKENS", 300)
    folder = hub_folder(tmp_path, DOCS * 3)
    args = dict(hub=(folder, None, "train"), val_fraction=0.2, num_proc=1, progress=False)
    prep.prepare(None, str(tmp_path / "ref"), **args)
    calls, real = [], prep.Run.write

    # stopped part way through a batch, after some shards: the partial shards hold more than
    # progress.json records
    def stop_at_the_50th(self, *a):
        calls.append(1)
        if len(calls) == 50:
            raise KeyboardInterrupt
        real(self, *a)

    monkeypatch.setattr(prep.Run, "write", stop_at_the_50th)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(None, str(tmp_path / "out"), **args)
    monkeypatch.setattr(prep.Run, "write", real)
    state = json.loads((tmp_path / "out" / prep.PROGRESS).read_text())
    encoded, real_encoder = [], corpus.encoder

    def counted(tok):
        return lambda texts: encoded.extend(texts) or real_encoder(tok)(texts)

    monkeypatch.setattr(corpus, "encoder", counted)
    prep.prepare(None, str(tmp_path / "out"), **args)
    # only the pieces after the recorded ones are encoded again
    assert len(encoded) == len(DOCS) * 3 - state["pieces"] and state["pieces"] > 0
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "ref")
    # stopped after progress.json recorded a shard, before its file was renamed
    publish = shard_writer.ShardWriter.publish
    monkeypatch.setattr(shard_writer.ShardWriter, "publish",
                        lambda self: exec("raise KeyboardInterrupt"))
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(None, str(tmp_path / "out2"), **args)
    monkeypatch.setattr(shard_writer.ShardWriter, "publish", publish)
    prep.prepare(None, str(tmp_path / "out2"), **args)
    assert folder_bytes(tmp_path / "out2") == folder_bytes(tmp_path / "ref")


def test_interrupts_at_random_points_resume_to_the_same_bytes(tmp_path, capsys):
    text = SHAKESPEARE.read_text(encoding="utf-8")[:500_000]
    (tmp_path / "ts.txt").write_text(text, encoding="utf-8")
    args = [f"--input={tmp_path / 'ts.txt'}", "--split=", "--shard_tokens=2000", "--num_proc=1"]
    prep.main([*args, f"--out_dir={tmp_path / 'ref'}"])
    expected = folder_bytes(tmp_path / "ref")
    rng = random.Random()
    for how in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        out = tmp_path / how.name
        k = rng.randrange(1, 40)
        p = subprocess.Popen([sys.executable, str(ROOT / "data" / "prepare.py"), *args,
                              f"--out_dir={out}"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        # stop it once its k-th train shard is complete: a moment chosen by the run itself
        while not (out / f"train_{k:03d}.bin").exists() and p.poll() is None:
            pass
        assert p.poll() is None, f"finished before train_{k:03d}.bin was seen"
        p.send_signal(how)
        _, err = p.communicate()
        assert p.returncode != 0 and "Traceback" not in err, err
        if how != signal.SIGKILL:
            assert "complete shard(s), from the first" in err and "run the same command again" in err
        if how == signal.SIGKILL:
            with pytest.raises(ValueError, match=f"{out} holds a half-finished prepare with "
                                                 f"another seed"):
                prep.main([*args, f"--out_dir={out}", "--seed=7"])
        prep.main([*args, f"--out_dir={out}"])
        assert folder_bytes(out) == expected, f"{how.name} at train_{k:03d}"
    prep.main([*args, f"--out_dir={out}"])
    assert "nothing to do" in capsys.readouterr().out


def test_hostile_rows_and_datasets(tmp_path):
    def refused(*args):
        with pytest.raises(ValueError) as e:
            prep.main([f"--out_dir={tmp_path / 'o'}", "--num_proc=1", *args])
        assert not (tmp_path / "o").exists()
        return str(e.value)

    good = hub_folder(tmp_path, DOCS, "good")
    assert "has no column 'body' (its columns: text, id)" in refused(f"--hf_dataset={good}",
                                                                     "--column=body")
    msg = refused(f"--hf_dataset={good}", "--hf_split=nope")
    assert "nope" in msg and "--hf_split" in msg
    for rows, what in ((DOCS[:5] + [None] + DOCS[5:], "5: its 'text' is NoneType"),
                       (list(range(9)), "0: its 'text' is int")):
        folder = hub_folder(tmp_path, rows, what[0], files=1)
        assert f"row {what}, not text" in refused(f"--hf_dataset={folder}")
    broken = hub_folder(tmp_path, DOCS, "broken")
    (tmp_path / "broken" / "data" / "train-00001-of-00003.parquet").write_bytes(b"PAR1 junk")
    msg = refused(f"--hf_dataset={broken}")
    assert "train-00001-of-00003.parquet is not a readable parquet file" in msg
    assert "is a folder: give its files" in refused(f"--input={tmp_path / 'good'}")


def test_a_full_disk_part_way_keeps_the_complete_shards(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shards, "SHARD_TOKENS", 300)
    real, seen = shard_writer.ShardWriter._seal, []

    def full_disk(self):
        seen.append(1)
        if len(seen) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self)

    monkeypatch.setattr(shard_writer.ShardWriter, "_seal", full_disk)
    folder = hub_folder(tmp_path, DOCS * 3)
    with pytest.raises(OSError, match=r"cannot write .*_\d{3}\.bin\.tmp: No space left"):
        prep.prepare(None, str(tmp_path / "o"), hub=(folder, None, "train"), val_fraction=0.2,
                     num_proc=1, progress=False)
    names = os.listdir(tmp_path / "o")
    state = json.loads((tmp_path / "o" / prep.PROGRESS).read_text())
    complete = [n for w in state["writers"].values() for n in w["shards"]]
    # every .bin file is a recorded, complete shard; the one being sealed stays .tmp
    assert sorted(n for n in names if n.endswith(".bin")) == sorted(complete)
    assert f"keeps {len(complete)} complete shard(s)" in capsys.readouterr().err


def test_notes_on_a_split_that_matches_nothing_and_a_small_bpe(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("one\ntwo\n" * 50)
    (tmp_path / "u.txt").write_text("three\n" * 50)
    prep.main([f"--input={tmp_path}/*.txt", "--split=%", f"--out_dir={tmp_path / 'a'}",
               "--tokenizer=bpe", "--vocab_size=400", "--num_proc=1"])
    out = capsys.readouterr()
    assert f"no line of {tmp_path / 't.txt'} holds only '%'" in out.err
    assert "too few pairs seen twice for more merges" in out.out
