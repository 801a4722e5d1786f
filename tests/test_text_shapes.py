"""Your text in any shape: one document per line, a CSV/TSV/JSONL column, delimited quotes (with a
hint when they are not split), files that are not text, and a tokenizer reused from a data folder, a
checkpoint or a folder that transformers saved, so that a model keeps training on new text."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import SHAKESPEARE, TINY, run

from data.prepare import prepare
from data.shards import read_meta, read_shard
from data.tokenizer import EOT, get_gpt2_tokenizer, load_tokenizer


def documents(out) -> dict[str, list[str]]:
    meta, tok = read_meta(str(out)), load_tokenizer(str(out))
    shards = {s: [read_shard(str(out / n)) for n in meta["splits"][s]["shards"]]
              for s in ("train", "val")}
    return {s: tok.decode(np.concatenate(shards[s])).split(EOT) for s in shards}


def test_one_document_per_line(tmp_path):
    titles = [f"Title number {i}: a short one" for i in range(40)]
    text = "\n".join(titles[:20]) + "\n\n  \n" + "\n".join(titles[20:]) + "\n"
    (tmp_path / "titles.txt").write_text(text)
    p = run("data/prepare.py", f"--input={tmp_path / 'titles.txt'}", "--split=line",
            f"--out_dir={tmp_path / 'd'}")
    docs = documents(tmp_path / "d")
    assert sorted(docs["train"] + docs["val"]) == sorted(titles)  # blank lines are no documents
    meta = read_meta(str(tmp_path / "d"))
    n_train, n_val = meta["splits"]["train"]["documents"], meta["splits"]["val"]["documents"]
    assert n_train + n_val == 40 and n_val >= 1 and f"train: {n_train} documents" in p.stdout


def test_a_column_of_csv_tsv_and_jsonl(tmp_path):
    rows = [{"id": i, "body": f"Post {i}, with a comma,\n\"quotes\" and\ta tab"} for i in range(12)]
    for name, delimiter in (("posts.csv", ","), ("posts.tsv", "\t")):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "body"], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(rows)
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                          encoding="utf-8")
    for name in ("posts.csv", "posts.tsv", "posts.jsonl"):
        run("data/prepare.py", f"--input={tmp_path / name}", "--column=body",
            f"--out_dir={tmp_path / name}.d")
        docs = documents(tmp_path / f"{name}.d")
        # no header, exact
        assert sorted(docs["train"] + docs["val"]) == sorted(r["body"] for r in rows), name
    p = run("data/prepare.py", f"--input={tmp_path / 'posts.csv'}", "--column=text",
            f"--out_dir={tmp_path / 'x'}", check=False)
    assert p.returncode == 1 and "has no column 'text' (its columns: id, body)" in p.stderr
    assert not (tmp_path / "x").exists()


def test_two_documents_fill_both_splits(tmp_path):
    (tmp_path / "two.txt").write_text("The first document.\n%\nThe second one.\n")
    meta = prepare([str(tmp_path / "two.txt")], str(tmp_path / "d"), split="%", val_fraction=0.01,
                   progress=False)
    assert meta["splits"]["train"]["documents"] == meta["splits"]["val"]["documents"] == 1


def test_delimited_text_gets_a_hint(tmp_path):
    quotes = "\n%\n".join(f"Quote {i}: a saying" for i in range(30))
    (tmp_path / "quotes.txt").write_text(quotes + "\n")
    p = run("data/prepare.py", f"--input={tmp_path / 'quotes.txt'}", f"--out_dir={tmp_path / 'd'}")
    assert "train: 1 documents" in p.stdout
    assert "29 lines hold only '%': --split=% would make about 30 documents" in p.stdout
    paragraphs = [f"Paragraph {i}.\nIt goes on." for i in range(30)]
    (tmp_path / "prose.txt").write_text("\n\n".join(paragraphs) + "\n")
    p = run("data/prepare.py", f"--input={tmp_path / 'prose.txt'}", f"--out_dir={tmp_path / 'e'}")
    assert "note:" not in p.stdout  # blank lines part paragraphs of prose as often as documents


def test_files_that_are_not_text_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "program").write_bytes(rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    (tmp_path / "utf16.txt").write_text("Hello, world\n" * 100, encoding="utf-16")
    # no NUL byte in it: only the share of invalid UTF-8 tells
    (tmp_path / "image.txt").write_bytes(rng.integers(1, 256, 300_000, dtype=np.uint8).tobytes())
    (tmp_path / "mostly_fine.txt").write_bytes(b"Real text with one bad byte \xff here.\n" * 100)
    for name, why in (("program", "is not text"), ("utf16.txt", "NUL bytes"),
                      ("image.txt", "mostly invalid UTF-8")):
        p = run("data/prepare.py", f"--input={tmp_path / name}", f"--out_dir={tmp_path / 'd'}",
                check=False)
        assert p.returncode == 1 and why in p.stderr and name in p.stderr
        assert "Traceback" not in p.stderr
        assert not (tmp_path / "d").exists()
    p = run("data/prepare.py", f"--input={tmp_path / 'mostly_fine.txt'}",
            f"--out_dir={tmp_path / 'd'}")
    # a few bad bytes in real text: a warning
    assert "warning: 100 invalid UTF-8 sequences" in p.stdout


@pytest.fixture(scope="module")
def corpus_a(tmp_path_factory):
    """A BPE trained on the first half of tinyshakespeare, and a model trained on it."""
    tmp = tmp_path_factory.mktemp("reuse")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    (tmp / "a.txt").write_text(text[:300_000], encoding="utf-8")
    (tmp / "b.txt").write_text(text[600_000:700_000], encoding="utf-8")
    run("data/prepare.py", f"--input={tmp / 'a.txt'}", "--tokenizer=bpe", "--vocab_size=400",
        f"--out_dir={tmp / 'a'}")
    run("train.py", f"--dataset={tmp / 'a'}", f"--out_dir={tmp / 'out'}", *TINY, "--max_iters=3",
        "--eval_interval=3")
    return tmp


@pytest.mark.parametrize("source", ["a", "out", "out/ckpt.pt"])
def test_a_tokenizer_is_reused_and_the_model_trains_on(source, corpus_a, tmp_path):
    # the second corpus, encoded with the first one's tokenizer (from its data folder or the
    # checkpoint): the same ids, and the checkpoint keeps training on it without complaint
    run("data/prepare.py", f"--input={corpus_a / 'b.txt'}", f"--tokenizer={corpus_a / source}",
        f"--out_dir={tmp_path / 'b'}")
    a, b = load_tokenizer(str(corpus_a / "a")), load_tokenizer(str(tmp_path / "b"))
    assert a.to_dict() == b.to_dict() and read_meta(str(tmp_path / "b"))["tokenizer"] == "bpe"
    text = (corpus_a / "b.txt").read_text(encoding="utf-8")
    train, val = (read_shard(str(tmp_path / "b" / n)).tolist()
                  for n in ("train_000.bin", "val_000.bin"))
    cut = len(a.decode(train))
    assert train + val == a.encode(text[:cut]) + a.encode(text[cut:])
    shutil.copytree(corpus_a / "out", tmp_path / "out")
    p = run("train.py", f"--dataset={tmp_path / 'b'}", f"--out_dir={tmp_path / 'out'}", *TINY,
            "--max_iters=5", "--eval_interval=5")
    assert "resuming from" in p.stdout and "iter 5:" in p.stdout


def test_a_tokenizer_saved_by_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    from data.tokenizer_files import gpt2_files

    vocab_bpe, encoder_json = gpt2_files()
    (tmp_path / "hf").mkdir()
    for src, name in ((encoder_json, "vocab.json"), (vocab_bpe, "merges.txt")):
        (tmp_path / "hf" / name).write_text(open(src, encoding="utf-8").read(), encoding="utf-8")
    hf_tokenizer = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path / "hf"))
    hf_tokenizer.save_pretrained(str(tmp_path / "saved"))
    # GPT-2's files are GPT-2's tokenizer
    assert load_tokenizer(str(tmp_path / "saved")) is get_gpt2_tokenizer()
    (tmp_path / "t.txt").write_text("Hello there.\n" * 50)
    run("data/prepare.py", f"--input={tmp_path / 't.txt'}", f"--tokenizer={tmp_path / 'saved'}",
        f"--out_dir={tmp_path / 'd'}")
    assert read_meta(str(tmp_path / "d"))["tokenizer"] == "gpt2"
