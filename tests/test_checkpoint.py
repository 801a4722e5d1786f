"""The committed checkpoint: self-contained, small, loadable safely (and by nanoGPT's code), and as
good as its model card says."""

import json
import math
import shutil

import torch
from conftest import ROOT, SHAKESPEARE, run

from data.tokenizer import load_tokenizer
from model import GPT, GPTConfig
from support import ckpt

CKPT = ROOT / "checkpoint" / "ckpt.pt"


def test_committed_checkpoint_is_self_contained_and_small():
    assert CKPT.stat().st_size < 25 * 2**20
    state = ckpt.load(str(CKPT))  # weights_only=True inside
    assert "optimizer" not in state and state["tokenizer"]["name"] == "bpe"
    assert load_tokenizer(state["tokenizer"]).n_vocab <= state["model_args"]["vocab_size"]


def test_committed_checkpoint_keeps_lm_head_as_nanogpt_does():
    # lm_head.weight is transformer.wte.weight (tied): one fp16 storage, under both names, so that
    # nanoGPT's model.load_state_dict(state_dict) takes the state dict as it is
    state = ckpt.load(str(CKPT))
    sd = state["model"]
    assert sd["lm_head.weight"].dtype == torch.float16
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    GPT(GPTConfig(**ckpt.model_args(state))).load_state_dict(sd, strict=True)
    # compact checkpoints from before kept the tied tensor under transformer.wte.weight only
    old = dict(state, model={k: v for k, v in sd.items() if k != "lm_head.weight"})
    assert torch.equal(ckpt.model_from(old).lm_head.weight, ckpt.model_from(state).lm_head.weight)


def test_export_half_keeps_the_tied_head_stored_once(tmp_path):
    # a training checkpoint: fp32 weights, and an optimizer's state
    fixture = ROOT / "tests" / "fixtures" / "pre_redesign" / "ckpt.pt"
    ckpt.export_half(str(fixture), str(tmp_path / "half.pt"))
    half = ckpt.load(str(tmp_path / "half.pt"))
    sd = half["model"]
    assert "optimizer" not in half and sd["transformer.wte.weight"].dtype == torch.float16
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    GPT(GPTConfig(**ckpt.model_args(half))).load_state_dict(sd, strict=True)
    # the file is no bigger than the same weights without the second name, by far less than the
    # embedding's size (which a second copy would add)
    without = dict(half, model={k: v for k, v in sd.items() if k != "lm_head.weight"})
    ckpt.save(without, str(tmp_path / "without.pt"))
    extra = (tmp_path / "half.pt").stat().st_size - (tmp_path / "without.pt").stat().st_size
    assert extra < sd["lm_head.weight"].nbytes // 4, extra


def test_committed_checkpoint_quality_on_val_text():
    # nanoGPT's val split (the last 10% of the text), every token of it, as train.py's final report
    # computes it: the fp16 weights converted back to fp32 give the model card's 1.4462 nats/char
    from contextlib import nullcontext

    import numpy as np

    from data.shards import windows
    from support.loss_eval import total_loss

    state = ckpt.load(str(CKPT))
    model, tok = ckpt.model_from(state).eval(), load_tokenizer(state)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    val = text[int(len(text) * 0.9):]
    ids = np.array(tok.encode(val))
    batches = windows([ids], model.config.block_size, 16)
    nats, count = total_loss(model, batches, tok.n_vocab, "cpu", nullcontext())
    assert nats / len(val) < 1.4462 + 0.002, nats / len(val)
    assert count == len(ids) - 1 and nats / count < math.log(tok.n_vocab) / 2


def test_sample_uses_committed_checkpoint_by_default():
    p = run("sample.py", "-p", "ROMEO:", "-m", "40", "--seed=1", "--device=cpu")
    assert p.stdout.startswith("ROMEO:") and len(p.stdout) > 40
    assert str(CKPT) in p.stderr and "UNTRAINED" not in p.stderr


def test_no_checkpoint_means_untrained_gpt2_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ckpt, "DEFAULT", str(tmp_path))
    model, tok, desc, _ = ckpt.load_for_inference(None, "cpu")
    assert "untrained" in desc and tok.name == "gpt2" and model.config.n_layer == 12
    assert "UNTRAINED" in capsys.readouterr().err


def test_checkpoint_from_before_the_redesign_loads_samples_and_resumes(tmp_path):
    # tests/fixtures/pre_redesign: a training checkpoint (optimizer, RNG states) and its data
    # folder, written by the code as it was before the modules were split, with the greedy tokens
    # and logits it produced then
    old = ROOT / "tests" / "fixtures" / "pre_redesign"
    expected = json.loads((old / "expected.json").read_text())
    state = ckpt.load(str(old / "ckpt.pt"))
    model, tok = ckpt.model_from(state).eval(), load_tokenizer(state, "ckpt.pt")
    ids = expected["greedy_ids"]
    x = torch.tensor([tok.encode(expected["prompt"])])
    greedy = model.generate(x, len(ids) - x.size(1), temperature=0, vocab_limit=tok.n_vocab)
    assert greedy[0].tolist() == ids
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:32]]), torch.tensor([ids[1:33]]))
    assert torch.allclose(logits[0, :2, :8], torch.tensor(expected["first_logits"]), atol=1e-6)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(old / "ckpt.pt", out / "ckpt.pt")
    p = run("train.py", f"--dataset={old / 'data'}", f"--out_dir={out}", "--max_iters=8",
            "--eval_interval=4", "--eval_iters=2", "--device=cpu", "--batch_size=4",
            "--gradient_accumulation_steps=1", "--dropout=0.1",
            "--peak_flops=1e11", "--final_eval=False")
    assert "resuming from" in p.stdout and "iter 7:" in p.stdout
    assert ckpt.load(str(out / "ckpt.pt"))["iter_num"] == 8


def test_the_readme_python_example_runs_as_written():
    """README's "In Python" block, run verbatim: load_model, generate, decode."""
    import contextlib
    import io
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## In Python\n+```python\n(.*?)```", readme, re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    text = printed.getvalue()
    assert text.startswith("ROMEO:") and len(text) > 100, text
