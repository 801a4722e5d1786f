import gzip
import json
import sys
import types

import numpy as np
import pytest
from conftest import SHAKESPEARE, TINY, run

from data.prepare import prepare
from data.shards import HEADER_BYTES, read_meta, read_shard
from data.tokenizer import get_gpt2_tokenizer


def decode_split(out, split):
    meta = read_meta(str(out))
    tok = get_gpt2_tokenizer()
    ids = np.concatenate([read_shard(str(out / n)) for n in meta["splits"][split]["shards"]])
    return tok.decode_bytes(ids.tolist()).decode("utf-8"), meta


def test_single_document_split_like_nanogpt(tmp_path):
    text = "".join(f"Line {i}: caf\u00e9 \u4e2d\u6587 \U0001f600\n" for i in range(500))
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    prepare([str(tmp_path / "a.txt")], str(tmp_path / "out"), val_fraction=0.1, progress=False)
    train, meta = decode_split(tmp_path / "out", "train")
    val, _ = decode_split(tmp_path / "out", "val")
    assert train + val == text  # the first 90% and the last 10%, nothing lost or added
    assert abs(len(val.encode()) - 0.1 * len(text.encode())) < 8
    assert meta["splits"]["train"]["chars"] + meta["splits"]["val"]["chars"] == len(text)


def test_round_trip_documents_split_and_jsonl(tmp_path):
    docs = [f"Quote number {i}.\nIt has two lines, \u00fcml\u00e4uts and \u0444."
            for i in range(60)]
    (tmp_path / "q.txt").write_text("\n%\n".join(docs[:40]) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "p.jsonl.gz", "wt", encoding="utf-8") as f:
        for d in docs[40:]:
            f.write(json.dumps({"text": d}) + "\n")
    out = tmp_path / "out"
    prepare([str(tmp_path / "q.txt"), str(tmp_path / "p.jsonl.gz")], str(out), split="%",
            val_fraction=0.2, seed=3, progress=False)
    train, meta = decode_split(out, "train")
    val, _ = decode_split(out, "val")
    got = train.split("<|endoftext|>") + val.split("<|endoftext|>")
    assert sorted(got) == sorted(docs)  # every document once, separated by <|endoftext|>
    assert meta["splits"]["val"]["documents"] >= 1
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 60


def test_blank_line_split_and_min_one_val_document(tmp_path):
    (tmp_path / "t.txt").write_text("one\n\ntwo\n\n\nthree\n", encoding="utf-8")
    prepare([str(tmp_path / "t.txt")], str(tmp_path / "out"), split="", val_fraction=0.01,
            progress=False)
    meta = read_meta(str(tmp_path / "out"))
    assert meta["splits"]["val"]["documents"] == 1 and meta["splits"]["train"]["documents"] == 2


def test_large_document_in_chunks_gives_same_tokens(tmp_path, monkeypatch):
    from data import corpus

    text = "".join(f"Word{i} and  more   spaces\n\n  indented {i}\nplain line\n"
                   for i in range(3000))
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 2000)  # force many pieces
    prepare([str(tmp_path / "big.txt")], str(tmp_path / "out"), val_fraction=0.1, progress=False)
    tok = get_gpt2_tokenizer()
    meta = read_meta(str(tmp_path / "out"))
    ids = np.concatenate([read_shard(str(tmp_path / "out" / n)) for s in ("train", "val")
                          for n in meta["splits"][s]["shards"]])
    cut = len(tok.decode_bytes(read_shard(str(tmp_path / "out/train_000.bin")).tolist()))
    assert ids.tolist() == tok.encode(text[:cut]) + tok.encode(text[cut:])


def test_non_utf8_is_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"hello \xff\xfe world\n" * 50)
    out = run("data/prepare.py", f"--input={tmp_path / 'bad.txt'}", f"--out_dir={tmp_path / 'out'}")
    assert "100 invalid UTF-8 sequences" in out.stdout
    assert read_meta(str(tmp_path / "out"))["decode_errors"] == 100


def test_openwebtext_route(tmp_path, monkeypatch):
    # The hub is unreachable here: stand in for datasets.load_dataset and check everything after it.
    calls = []

    def load_dataset(name, config=None, split=None, streaming=False, revision=None):
        calls.append((name, config, revision, split, streaming))
        return iter([{"text": f"Web page {i}."} for i in range(200)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    prepare(None, str(tmp_path / "owt"), val_fraction=0.05, progress=False)
    assert calls == [("Skylion007/openwebtext", None, "refs/convert/parquet", "train", True)]
    meta = read_meta(str(tmp_path / "owt"))
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 200


def test_shard_header_checks(tmp_path, data_dir):
    good = (data_dir / "val_000.bin").read_bytes()
    (tmp_path / "trunc.bin").write_bytes(good[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_shard(str(tmp_path / "trunc.bin"))
    (tmp_path / "foreign.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="not a token shard"):
        read_shard(str(tmp_path / "foreign.bin"))
    flipped = bytearray(good)
    flipped[HEADER_BYTES + 100] ^= 0xFF
    (tmp_path / "flip.bin").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        read_shard(str(tmp_path / "flip.bin"))


@pytest.mark.parametrize("args,msg", [(["--input=/nonexistent/x.txt"], "not found"),
                                      (["--input={empty}"], "split is empty")])
def test_prepare_bad_input(tmp_path, args, msg):
    (tmp_path / "empty.txt").write_text("")
    args = [a.format(empty=tmp_path / "empty.txt") for a in args]
    p = run("data/prepare.py", *args, f"--out_dir={tmp_path / 'o'}", check=False)
    assert p.returncode != 0 and msg in p.stderr and "Traceback" not in p.stderr


def test_several_shards(tmp_path, monkeypatch):
    # a dataset of many small shards: prepare rolls over, Batches draws across them, the final
    # report reads all
    import torch

    import data.shards as shards

    monkeypatch.setattr(shards, "SHARD_TOKENS", 1000)
    text = SHAKESPEARE.read_text(encoding="utf-8")[:40_000]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    meta = prepare([str(tmp_path / "t.txt")], str(tmp_path / "d"), val_fraction=0.5, progress=False)
    names = meta["splits"]["train"]["shards"] + meta["splits"]["val"]["shards"]
    assert len(meta["splits"]["val"]["shards"]) >= 4 and names[1] == "train_001.bin"
    ids = np.concatenate([read_shard(str(tmp_path / "d" / n)) for n in names])
    tok = get_gpt2_tokenizer()
    # the first half went to train, the rest to val
    cut = len(tok.decode(ids[: meta["splits"]["train"]["tokens"]]))
    assert ids.tolist() == tok.encode(text[:cut]) + tok.encode(text[cut:])
    val = shards.Batches(str(tmp_path / "d"), meta, "val", 32, 4, "cpu")
    # window starts in the first, second and last shards
    for g in (0, 968, 969, 2000, int(val.cum[-1]) - 1):
        x, y = val.get(torch.tensor([g]))
        flat = np.concatenate(val.shards)
        k = int(np.searchsorted(val.cum, g, side="right"))
        start = g + 32 * k  # each shard before it has 32 positions that cannot start a window
        assert x[0].tolist() == flat[start : start + 32].tolist()
        assert y[0].tolist() == flat[start + 1 : start + 33].tolist()
    p = run("train.py", f"--dataset={tmp_path / 'd'}", f"--out_dir={tmp_path / 'o'}", *TINY,
            "--max_iters=1", "--final_eval=True")
    assert f"final val over all {sum(len(s) - 1 for s in val.shards):,} tokens" in p.stdout
