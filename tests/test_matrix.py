"""Every script with every kind of tokenizer and data, end to end: GPT-2's tokens, a BPE trained on
the text, its characters, a tokenizer reused from another data folder, and nanoGPT's two kinds of
data folder (meta.pkl characters, GPT-2 .bin files). For each: prepare (where it applies), train a
few steps of a tiny model, resume, sample (-p, several prompts, --out), eval on a text file and on
the data folder, export to Hugging Face (transformers then computes the same ids and logits) and
the compact fp16 export. Every step works (a character vocabulary exports as a tokenizer.json of
single characters); a traceback or an error fails the test. The scripts run in this process
(test_properties.py's in_process), and each kind trains once for all its steps.
"""

import functools
import json
import pickle

import numpy as np
import pytest
import torch
from conftest import sample_text
from test_properties import in_process, run_train

import eval as eval_script
import export
import sample
from data import prepare
from data.tokenizer import get_gpt2_tokenizer
from support import ckpt
from support.ckpt import load_model

# each kind, and the tokenizer its checkpoint must keep
KINDS = {"gpt2": "gpt2", "bpe": "bpe", "char": "char", "reused": "bpe", "nanogpt_char": "char",
         "nanogpt_gpt2": "gpt2"}
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=2",
        "--gradient_accumulation_steps=1", "--eval_iters=1", "--eval_interval=2",
        "--log_interval=1", "--device=cpu", "--peak_flops=1e12", "--final_eval=False",
        "--compile=False", "--warmup_iters=0"]
TEXT = sample_text(8000)


def run(call):
    """(status, stdout, stderr) of a script's main run in this process, given minutes to finish."""
    return in_process(call, seconds=600)


def ok(status_out_err, step: str = "") -> str:
    """The stdout of a run that must have worked; a traceback or an error fails the test."""
    status, out, err = status_out_err
    assert "Traceback" not in err and status == "exit 0", f"{step}: {status}\n{err[-3000:]}"
    return out


def nanogpt_folder(folder, kind: str):
    """A data folder as nanoGPT's prepare.py scripts write it: headerless uint16 train.bin /
    val.bin, GPT-2's tokens or the text's characters with their meta.pkl."""
    folder.mkdir(parents=True)
    n = int(len(TEXT) * 0.9)
    chars = sorted(set(TEXT))
    stoi = {c: i for i, c in enumerate(chars)}
    encode = get_gpt2_tokenizer().encode if kind == "gpt2" else lambda s: [stoi[c] for c in s]
    for split, part in (("train", TEXT[:n]), ("val", TEXT[n:])):
        np.array(encode(part), dtype=np.uint16).tofile(folder / f"{split}.bin")
    if kind == "char":
        with open(folder / "meta.pkl", "wb") as f:
            pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi},
                        f)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return root


BUILT = {}


def data_of(kind: str, root):
    """The kind's data folder: prepared by data/prepare.py, or written as nanoGPT does."""
    folder = root / kind / "data"
    if kind.startswith("nanogpt_"):
        nanogpt_folder(folder, kind.removeprefix("nanogpt_"))
        return folder
    tokenizer = {"bpe": "bpe", "char": "char", "gpt2": "gpt2",
                 "reused": str(root / "bpe" / "data")}[kind]
    if kind == "reused":
        built(root, "bpe")
    out = ok(run(lambda: prepare.main([f"--input={root / 'text.txt'}", "--num_proc=1",
                                              f"--out_dir={folder}", f"--tokenizer={tokenizer}",
                                              "--vocab_size=300"])), "prepare")
    assert (folder / "meta.json").is_file(), out
    return folder


def built(root, kind: str) -> dict:
    """The kind's data folder and its checkpoint, trained 2 steps then resumed to 4 (once per
    kind)."""
    if kind not in BUILT:
        data, out = data_of(kind, root), root / kind / "out"
        args = [f"--dataset={data}", f"--out_dir={out}", *TINY]
        first = ok(run(lambda: run_train([*args, "--max_iters=2"])), "train")
        assert "starting from scratch" in first and (out / "ckpt.pt").is_file(), first
        again = ok(run(lambda: run_train([*args, "--max_iters=4"])), "resume")
        assert f"resuming from {out / 'ckpt.pt'}" in again and "iter 4:" in again, again
        BUILT[kind] = dict(data=data, out=out)
    return BUILT[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_train_resume(kind, root):
    cell = built(root, kind)
    kept = ckpt.load(str(cell["out"] / "ckpt.pt"))["tokenizer"]
    assert kept["name"] == KINDS[kind], kept["name"]
    if kind == "reused":
        assert kept == ckpt.load(str(built(root, "bpe")["out"] / "ckpt.pt"))["tokenizer"]
    log = [json.loads(line) for line in (cell["out"] / "log.jsonl").read_text().splitlines()]
    # the resumed run continued the first one's log
    assert [e["iter"] for e in log if "loss" in e] == [1, 2, 3, 4], log


@pytest.mark.parametrize("kind", KINDS)
def test_sample(kind, root, tmp_path):
    out = built(root, kind)["out"]
    common = [f"--checkpoint={out}", "-m", "4", "--device=cpu", "--seed=1"]
    one = ok(run(lambda: sample.main([*common, "-p", "ROMEO:"])), "sample")
    assert one.startswith("ROMEO:"), one
    target = tmp_path / "samples.jsonl"
    ok(run(lambda: sample.main([*common, "-p", "ROMEO:", "-p", "To be", "-n", "2",
                                       f"--out={target}"])), "sample --out")
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["ROMEO:", "ROMEO:", "To be", "To be"]
    assert all(r["text"].startswith(r["prompt"]) for r in rows)


@pytest.mark.parametrize("kind", KINDS)
def test_eval_on_a_file_and_the_data(kind, root):
    cell = built(root, kind)
    for source in (root / "text.txt", cell["data"]):
        argv = [f"--checkpoint={cell['out']}", f"--input={source}", "--device=cpu"]
        out = ok(run(functools.partial(eval_script.main, argv)), f"eval {source}")
        assert "nats/token" in out and "nats/char" in out, out


@pytest.mark.parametrize("kind", KINDS)
def test_export_to_hugging_face(kind, root, tmp_path):
    transformers = pytest.importorskip("transformers")
    out, hf = built(root, kind)["out"], tmp_path / "hf"
    ok(run(lambda: export.main([f"--checkpoint={out}", f"--out_dir={hf}"])), "export")
    model, tok = load_model(str(out))
    theirs = transformers.GPT2LMHeadModel.from_pretrained(hf).eval()
    their_tok = transformers.AutoTokenizer.from_pretrained(hf)
    text = "ROMEO:\nWhat light through yonder window breaks?"
    ids = tok.encode(text)
    assert their_tok(text)["input_ids"] == ids and their_tok.decode(ids) == text
    x = torch.tensor([ids[:16]])
    with torch.no_grad():
        ours = torch.nn.functional.linear(model.hidden_states(x),
                                          model.lm_head.weight[: tok.n_vocab])
        logits = theirs(x).logits
    assert logits.shape == ours.shape
    torch.testing.assert_close(logits, ours, atol=1e-5, rtol=1e-5)
    assert torch.equal(logits.argmax(-1), ours.argmax(-1))
    # and it loads back here: the same tokenizer, and sample.py runs on it
    assert load_model(str(hf))[1].to_dict() == tok.to_dict()
    text = ok(run(lambda: sample.main([f"--checkpoint={hf}", "-p", "ROMEO:", "-m", "3",
                                              "--device=cpu"])), "sample the export")
    assert text.startswith("ROMEO:")


@pytest.mark.parametrize("kind", KINDS)
def test_export_half(kind, root, tmp_path):
    out, half = built(root, kind)["out"], tmp_path / "half" / "ckpt.pt"
    ok(run(lambda: export.main([f"--checkpoint={out}", f"--half={half}"])), "export --half")
    model, tok = load_model(str(out))
    small, small_tok = load_model(str(half))
    assert small_tok.to_dict() == tok.to_dict()
    x = torch.tensor([tok.encode("ROMEO:")])
    with torch.no_grad():
        torch.testing.assert_close(small(x)[0], model.half().float()(x)[0])
    text = ok(run(lambda: sample.main([f"--checkpoint={half}", "-p", "ROMEO:", "-m", "3",
                                              "--device=cpu"])), "sample the half")
    assert text.startswith("ROMEO:")
