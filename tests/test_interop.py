"""GPT-2 weights in (Hugging Face format -> GPT.from_pretrained / train.py --init_from) and out
(export.py -> transformers), checked against transformers itself. Offline: the hub's files are
imitated locally."""

import json

import pytest
import torch
from conftest import TINY, run

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file

import export
from data.bpe import train_tokenizer
from data.tokenizer import get_gpt2_tokenizer
from model import GPT, GPTConfig
from support.speedups import row_blocks

TEXTS = ["Hello, I'm a language model,", "  two  spaces\tand a tab\n\nnew lines",
         "ROMEO: Wherefore art thou?", "Ünïcödé — “quotes” 日本語 🙂 123,456.78",
         "don't won't they'll I'VE", ""]


def hf_model(tmp_path, std: float = 0.0, **cfg) -> tuple:
    """A randomly initialised transformers GPT-2, saved with save_pretrained. std > 0 draws its
    matrices with that spread instead of 0.02: large activations, so that a mistake of scale
    (attention's 1/sqrt(d)) shows."""
    torch.manual_seed(0)
    cfg.setdefault("bos_token_id", cfg.get("vocab_size", 50257) - 1)
    cfg.setdefault("eos_token_id", cfg.get("vocab_size", 50257) - 1)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if std and p.dim() == 2:
                p.normal_(0, std)
    model.save_pretrained(tmp_path)
    return model, tmp_path


def close(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal to 1e-5 of the largest value: relative, so that logits of any size are held to the
    same bar."""
    return (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()


def check_same(theirs, ours: GPT, vocab: int, new_tokens: int = 32):
    """The same logits on random input; and transformers' generate() against ours (the KV cache,
    and the CPU's decoding copies as sample.py uses them): the same greedy tokens and the same
    logits at every step."""
    torch.manual_seed(1)
    x = torch.randint(0, vocab, (2, 24))
    with torch.no_grad():
        assert close(ours.eval()(x, x)[0][..., :vocab], theirs(x).logits)
        prompt = x[:1, :8]
        ref = theirs.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                              output_logits=True, return_dict_in_generate=True,
                              attention_mask=torch.ones_like(prompt), pad_token_id=0)
        with row_blocks(ours, vocab):
            steps = list(ours.generate_tokens(prompt, new_tokens, temperature=0, vocab_limit=vocab))
    n = len(ref.logits)  # transformers stops early at its eos token; ours goes on
    assert torch.equal(torch.cat([prompt, *[t for t, _, _ in steps[:n]]], 1), ref.sequences)
    assert close(torch.stack([logits for _, logits, _ in steps[:n]]), torch.stack(ref.logits))


@pytest.fixture(scope="module")
def gpt2_124m(tmp_path_factory):
    # GPT-2 124M shapes: ~10 s to build and save on 2 busy cores, shared by the tests below
    return hf_model(tmp_path_factory.mktemp("hf124m"))


def test_load_124m_matches_transformers(gpt2_124m):
    theirs, d = gpt2_124m
    ours = GPT.from_pretrained(str(d))
    assert ours.config.vocab_size == 50257 and ours.config.block_size == 1024 and ours.config.bias
    assert ours.lm_head.weight is ours.transformer.wte.weight  # still tied
    check_same(theirs, ours, 50257, new_tokens=8)  # 32 greedy tokens: the small models below


def test_hub_style_file_through_the_download_route(gpt2_124m, tmp_path, monkeypatch):
    # the hub's layout: no "transformer." prefix, and every block's causal-mask buffer (hf.py)
    theirs, d = gpt2_124m
    sd = {k.removeprefix("transformer."): v for k, v in load_file(d / "model.safetensors").items()}
    mask = torch.tril(torch.ones(1024, 1024)).view(1, 1, 1024, 1024)
    sd.update({f"h.{i}.attn.bias": mask.clone() for i in range(12)})
    sd["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file(sd, hub / "model.safetensors", metadata={"format": "pt"})
    (hub / "config.json").write_text((d / "config.json").read_text())
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename))
        return str(hub / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    ours = GPT.from_pretrained("gpt2", dict(dropout=0.1))
    assert sorted(calls) == [("openai-community/gpt2", "config.json"),
                             ("openai-community/gpt2", "model.safetensors")]
    assert ours.config.dropout == 0.1
    check_same(theirs, ours, 50257, new_tokens=4)


def test_small_custom_vocab(tmp_path):
    theirs, d = hf_model(tmp_path, std=0.3, n_layer=2, n_head=4, n_embd=64, vocab_size=300,
                         n_positions=64)
    check_same(theirs, GPT.from_pretrained(str(d)), 300)


def test_train_eval_only_from_dir(tmp_path, data_dir):
    _, d = hf_model(tmp_path / "hf", n_layer=2, n_head=2, n_embd=32, n_positions=64)
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"someone else's checkpoint")
    p = run("train.py", *TINY, f"--init_from={tmp_path / 'hf'}", "--eval_only=True",
            "--peak_flops=1e12", f"--dataset={data_dir}", f"--out_dir={out}")
    assert "initializing from pretrained weights" in p.stdout and "val loss" in p.stdout
    # eval_only writes no checkpoint
    assert (out / "ckpt.pt").read_bytes() == b"someone else's checkpoint"
    assert sorted(f.name for f in out.iterdir() if f.suffix == ".pt") == ["ckpt.pt"]


def ours_checkpoint(path, tok, bias: bool, vocab_size: int, gelu: str = "tanh"):
    torch.manual_seed(2)
    args = dict(n_layer=2, n_head=2, n_embd=32, block_size=64, bias=bias, vocab_size=vocab_size,
                dropout=0.0, gelu=gelu)
    model = GPT(GPTConfig(**args))
    # large weights and non-zero biases, so that a mistake of scale or mapping shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
            elif name.endswith(".bias") and bias:
                p.normal_(0, 0.1)
    torch.save(dict(model=model.state_dict(), model_args=args, tokenizer=tok.to_dict(), iter_num=0),
               path)
    return model


@pytest.mark.parametrize("kind", ["gpt2", "bpe"])
def test_export_round_trip(tmp_path, kind):
    if kind == "gpt2":
        tok, bias = get_gpt2_tokenizer(), False  # bias=False: the export writes zero biases
    else:
        text = "\n".join(TEXTS * 20) + " the quick brown fox jumps over"
        tok, bias = train_tokenizer([text], 400), True
    # exact GELU is exported as transformers' "gelu", and read back as exact
    gelu = "tanh" if kind == "gpt2" else "exact"
    vocab_size = (tok.n_vocab + 63) // 64 * 64  # padded, as train.py makes it
    ours = ours_checkpoint(tmp_path / "ckpt.pt", tok, bias, vocab_size, gelu)
    out = tmp_path / "hf"
    export.main([f"--checkpoint={tmp_path}", f"--out_dir={out}"])

    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    assert theirs.config.vocab_size == tok.n_vocab  # trimmed to the tokenizer
    check_same(theirs, ours, tok.n_vocab)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.eos_token == hf_tok.bos_token == "<|endoftext|>"
    assert hf_tok.eos_token_id == tok.eot_token
    for text in TEXTS:
        assert hf_tok(text)["input_ids"] == tok.encode(text), text

    # and back in: the same weights, bit for bit (the real vocabulary rows; zero biases where there
    # were none)
    back_model = GPT.from_pretrained(str(out))
    assert back_model.config.gelu == gelu
    back = back_model.state_dict()
    for k, v in ours.state_dict().items():
        want = v[: tok.n_vocab] if k.endswith(("wte.weight", "lm_head.weight")) else v
        assert torch.equal(back[k], want), k
    if not bias:
        assert all(torch.count_nonzero(v) == 0 for k, v in back.items() if k.endswith(".bias"))


def test_export_cli_refuses_to_overwrite(tmp_path):
    ours_checkpoint(tmp_path / "ckpt.pt", get_gpt2_tokenizer(), True, 50304)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    p = run("export.py", f"--checkpoint={tmp_path / 'ckpt.pt'}", f"--out_dir={out}", check=False)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "--force" in p.stderr
    assert (out / "keep.txt").read_text() == "mine"
    # in-process: faster
    export.main([f"--checkpoint={tmp_path / 'ckpt.pt'}", f"--out_dir={out}", "--force"])
    assert sorted(f.name for f in out.iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "special_tokens_map.json",
        "tokenizer_config.json", "vocab.json"]
    # no temporary left behind
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".export")]


# --- bad input: one clear error naming the problem ---------------------------------------------

@pytest.fixture
def small_dir(tmp_path):
    return hf_model(tmp_path / "hf", n_layer=1, n_head=2, n_embd=32, vocab_size=100,
                    n_positions=16)[1]


def edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def edit_weights(d, fn):
    sd = load_file(d / "model.safetensors")
    fn(sd)
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("change, message", [
    (dict(model_type="gptj"), "model_type='gptj'"),
    (dict(rotary_dim=16), "rotary_dim=16"),
    (dict(activation_function="relu"), "activation_function='relu'"),
    (dict(n_inner=100), "n_inner=100"),
    (dict(n_embd=33), "n_embd (33) must be divisible by n_head (2)"),
])
def test_not_gpt2_config(small_dir, change, message):
    edit_config(small_dir, **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GPT.from_pretrained(str(small_dir))


@pytest.mark.parametrize("fn, message", [
    (lambda sd: sd.pop("transformer.h.0.mlp.c_fc.weight"),
     r'Missing key\(s\) in state_dict: "transformer.h.0.mlp.c_fc.weight"'),
    # a Conv1D stored (out, in) is (in, out) once transposed to nn.Linear's layout
    (lambda sd: sd.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(96, 32)}),
     r"size mismatch for transformer.h.0.attn.c_attn.weight: copying a param with shape "
     r"torch.Size\(\[32, 96\]\)"),
    (lambda sd: sd.update({"transformer.wpe.weight": torch.zeros(8, 32)}),
     r"size mismatch for transformer.wpe.weight"),
    (lambda sd: sd.update({"lm_head.weight": torch.ones(100, 32)}),
     "lm_head.weight differs from wte.weight"),
    (lambda sd: sd.update({"transformer.h.5.ln_1.weight": torch.ones(32)}),
     r'Unexpected key\(s\) in state_dict: "transformer.h.5.ln_1.weight"'),
])
def test_bad_weights(small_dir, fn, message):
    edit_weights(small_dir, fn)
    with pytest.raises(ValueError, match=message) as e:
        GPT.from_pretrained(str(small_dir))
    # one line, naming the file
    error = str(e.value)
    assert error.startswith(str(small_dir / "model.safetensors")) and "\n" not in error


def test_missing_files_and_scripts_say_error(small_dir, tmp_path, data_dir):
    (small_dir / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors not found"):
        GPT.from_pretrained(str(small_dir))
    with pytest.raises(ValueError, match="neither a directory nor one of gpt2"):
        GPT.from_pretrained("gpt3")
    (small_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        GPT.from_pretrained(str(small_dir))
    p = run("train.py", *TINY, f"--init_from={small_dir}", "--eval_only=True", "--peak_flops=1e12",
            f"--dataset={data_dir}", f"--out_dir={tmp_path / 'out'}", check=False)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    # in-process (a subprocess costs seconds): its __main__ prints any ValueError as error: ...
    import sample

    with pytest.raises(ValueError, match="not a readable safetensors file"):
        sample.main([f"--init_from={small_dir}", "-m", "2", "--device=cpu"])


def test_a_pretrained_model_must_fit_its_tokenizer_and_the_data(small_dir, tmp_path, bpe_data):
    # small_dir has 100 tokens and no tokenizer files: GPT-2's 50,257 would index past its rows
    import sample

    with pytest.raises(ValueError, match="its tokenizer has 50257 tokens but the model only 100"):
        sample.main([f"--init_from={small_dir}", "-m", "2", "--device=cpu"])
    # fine-tuning GPT-2's vocabulary on data prepared with another tokenizer
    _, d = hf_model(tmp_path / "hf", n_layer=1, n_head=2, n_embd=32, n_positions=64)
    p = run("train.py", *TINY, f"--init_from={d}", "--eval_only=True", f"--dataset={bpe_data}",
            f"--out_dir={tmp_path / 'out'}", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"error: {d} was trained with a different tokenizer (gpt2) than {bpe_data}" in p.stderr
