"""nanoGPT users carry over: its four kinds of config files, its sample.py flags, its data folders
(headerless train.bin / val.bin, meta.pkl) and its checkpoints, and its character-level
Shakespeare."""

import json
import pickle
import re

import numpy as np
import pytest
import torch
from conftest import SHAKESPEARE, TINY, run

from data.tokenizer import get_gpt2_tokenizer, load_tokenizer
from model import GPT, GPTConfig
from support import ckpt

SMALL = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
         "--eval_iters=2", "--max_iters=2", "--compile=False", "--device=cpu", "--peak_flops=1e11",
         "--final_eval=False"]

# nanoGPT's shipped configs, key for key and value for value (config/train_gpt2.py,
# train_shakespeare_char.py, finetune_shakespeare.py, eval_gpt2.py)
NANOGPT_CONFIGS = {
    "train_gpt2": """wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M'
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8
max_iters = 600000
lr_decay_iters = 600000
eval_interval = 1000
eval_iters = 200
log_interval = 10
weight_decay = 1e-1
""",
    "train_shakespeare_char": """out_dir = 'out-shakespeare-char'
eval_interval = 250 # keep frequent
eval_iters = 200
log_interval = 10 # don't print too too often
always_save_checkpoint = False
wandb_log = False # override via command line if you like
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'
dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256 # context of up to 256 previous characters
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
# device = 'cpu'  # run on cpu only
# compile = False # do not torch compile the model
""",
    "finetune_shakespeare": """import time
out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False # feel free to turn on
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())
dataset = 'shakespeare'
init_from = 'gpt2-xl' # this is the largest GPT-2 model
always_save_checkpoint = False
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20
learning_rate = 3e-5
decay_lr = False
""",
    "eval_gpt2": """batch_size = 8
eval_iters = 500 # use more iterations to get good estimate
eval_only = True
wandb_log = False
init_from = 'gpt2'
""",
}


@pytest.fixture(scope="module")
def nanogpt_data(tmp_path_factory):
    """Data folders written the way nanoGPT's prepare.py scripts write them: GPT-2 tokens, and
    characters."""
    root = tmp_path_factory.mktemp("nanogpt")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:200_000]
    n = int(len(text) * 0.9)
    gpt2 = root / "data" / "shakespeare"
    gpt2.mkdir(parents=True)
    tok = get_gpt2_tokenizer()
    for split, part in (("train", text[:n]), ("val", text[n:])):
        np.array(tok.encode(part), dtype=np.uint16).tofile(gpt2 / f"{split}.bin")
    char = root / "data" / "shakespeare_char"
    char.mkdir()
    chars = sorted(set(text))
    stoi, itos = {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))
    for split, part in (("train", text[:n]), ("val", text[n:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(char / f"{split}.bin")
    with open(char / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return root


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf")
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32)
    transformers.GPT2LMHeadModel(config).save_pretrained(d)
    return d


@pytest.mark.parametrize("name", sorted(NANOGPT_CONFIGS))
def test_nanogpt_configs_run_unchanged(name, nanogpt_data, hf_folder, tmp_path):
    cfg = tmp_path / f"{name}.py"
    cfg.write_text(NANOGPT_CONFIGS[name])
    # offline: a local folder in place of the hub's weights
    pretrained = [f"--init_from={hf_folder}"] if "init_from" in NANOGPT_CONFIGS[name] else []
    wandb = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    p = run("train.py", cfg, f"--dataset={nanogpt_data / 'data' / 'shakespeare'}",
            f"--out_dir={tmp_path / 'o'}", *(SMALL if not pretrained else SMALL[3:]), *pretrained,
            "--gradient_accumulation_steps=1", env=wandb, cwd=tmp_path)
    assert f"config: read {cfg}" in p.stdout
    assert "nanoGPT's headerless train.bin / val.bin" in p.stdout
    assert "step 0: train loss" in p.stdout


# a config file in nanoGPT's form, each key off its default: the run must use every one
SMALL_CONFIG = """out_dir = 'out-small'
n_layer = 3
n_head = 2
n_embd = 48
block_size = 16
batch_size = 3
gradient_accumulation_steps = 2
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 2
lr_decay_iters = 4
max_iters = 100
eval_interval = 4
eval_iters = 2
"""


def test_a_config_files_keys_take_effect(bpe_data, tmp_path):
    cfg = tmp_path / "small.py"
    cfg.write_text(SMALL_CONFIG)
    # the command line overrides the file (out_dir, max_iters)
    p = run("train.py", cfg, f"--dataset={bpe_data}", f"--out_dir={tmp_path / 'o'}",
            "--max_iters=4", "--device=cpu", "--compile=False", "--final_eval=False",
            "--peak_flops=1e11")
    state = ckpt.load(str(tmp_path / "o" / "ckpt.pt"))
    assert {k: state["model_args"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")} == \
        dict(n_layer=3, n_head=2, n_embd=48, block_size=16)
    assert state["model"]["transformer.h.2.mlp.c_fc.weight"].shape == (192, 48)
    config = state["config"]
    assert (config["batch_size"], config["learning_rate"], config["max_iters"]) == (3, 2e-3, 4)
    assert "tokens per iteration: 96 (1 process(es) x 2 micro-steps x 3 sequences x 16 tokens)" \
        in p.stdout
    # warmup to 2e-3 over 2 steps, then the cosine down to min_lr at step 4
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    lrs = [e["lr"] for e in log if "loss" in e]
    assert lrs == pytest.approx([2e-3 / 3, 4e-3 / 3, 2e-3, 1.1e-3])
    assert state["iter_num"] == 4


def test_nanogpt_char_data_trains_and_reports_per_char(nanogpt_data, tmp_path):
    p = run("train.py", f"--dataset={nanogpt_data / 'data' / 'shakespeare_char'}",
            f"--out_dir={tmp_path / 'o'}", *SMALL, "--final_eval=True", "--max_iters=20",
            "--eval_interval=20")
    n_chars = len(set(SHAKESPEARE.read_text(encoding="utf-8")[:200_000]))
    assert "(char tokens)" in p.stdout and f"char tokenizer, {n_chars} tokens" in p.stdout
    found = re.search(r"([\d.]+) nats/token, ([\d.]+) nats/char", p.stdout)
    nats_token, nats_char = map(float, found.groups())
    # one token per character
    assert nats_char == pytest.approx(nats_token * 19_999 / 20_000, abs=1e-4)
    state = ckpt.load(str(tmp_path / "o" / "ckpt.pt"))
    chars = "".join(sorted(set(SHAKESPEARE.read_text()[:200_000])))
    assert state["tokenizer"] == {"name": "char", "chars": chars, "eot": False}
    assert state["model_args"]["vocab_size"] == 64


class Touch:
    """Unpickled, this calls open(path, 'w'): the file appears if the global was loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_nanogpt_meta_pkl_that_runs_code_is_refused(tmp_path):
    (tmp_path / "train.bin").write_bytes(b"\0\0" * 100)
    (tmp_path / "val.bin").write_bytes(b"\0\0" * 100)
    marker = tmp_path / "marker"
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 1, "itos": Touch(marker)}))
    # the payload runs where an unpickler loads any global
    with open(tmp_path / "meta.pkl", "rb") as f:
        pickle.load(f)["itos"].close()
    assert marker.exists()
    marker.unlink()
    p = run("train.py", f"--dataset={tmp_path}", f"--out_dir={tmp_path / 'o'}", *SMALL, check=False)
    assert not marker.exists()
    assert p.returncode == 1 and "refusing to load it" in p.stderr and "Traceback" not in p.stderr
    assert "io.open, which is not plain data" in p.stderr


def nanogpt_checkpoint(path, vocab_size, dataset, bias=False, compiled=True):
    """A ckpt.pt as nanoGPT's train.py writes it: exact-GELU model, no tokenizer, no RNG states."""
    torch.manual_seed(0)
    args = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=bias, vocab_size=vocab_size,
                dropout=0.0)
    model = GPT(GPTConfig(**args, gelu="exact"))
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu", fused=False)
    sd = {("_orig_mod." if compiled else "") + k: v for k, v in model.state_dict().items()}
    torch.save({"model": sd, "optimizer": optimizer.state_dict(), "model_args": args, "iter_num": 5,
                "best_val_loss": torch.tensor(4.2),
                "config": {"dataset": dataset, "batch_size": 4}}, path)
    return model


@pytest.mark.parametrize("kind", ["gpt2", "char"])
def test_nanogpt_checkpoint_samples_and_resumes(kind, nanogpt_data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    vocab, dataset = (50304, "shakespeare") if kind == "gpt2" else (65, "shakespeare_char")
    model = nanogpt_checkpoint(out / "ckpt.pt", vocab, dataset)
    # nanoGPT's own sample.py command line, run from nanoGPT's folder (where data/<dataset>/meta.pkl
    # is found)
    p = run("sample.py", "--init_from=resume", f"--out_dir={out}", "--start=ROMEO:",
            "--num_samples=2", "--max_new_tokens=8", "--temperature=0", "--device=cpu",
            "--dtype=float32", "--compile=False", cwd=nanogpt_data)
    assert p.stdout.count("ROMEO:") == 2 and "iteration 5" in p.stderr
    state = ckpt.load(str(out / "ckpt.pt"))
    monkeypatch.chdir(nanogpt_data)
    tok = load_tokenizer(state, "ckpt.pt")
    # nanoGPT's MLP: exact GELU
    assert tok.name == kind and ckpt.model_from(state).config.gelu == "exact"
    x = torch.tensor([tok.encode("ROMEO:")])
    want = model.eval().generate(x, 8, temperature=0)
    assert torch.equal(ckpt.model_from(state).generate(x, 8, temperature=0), want)
    p = run("train.py", f"--dataset={nanogpt_data / 'data' / dataset}", f"--out_dir={out}", *TINY,
            "--max_iters=7", "--eval_interval=100", "--final_eval=False")
    assert "resuming from" in p.stdout and "iter 6:" in p.stdout
    assert "no random states (nanoGPT's)" in p.stdout


def test_sample_start_file_and_prepare_char(tmp_path):
    (tmp_path / "prompt.txt").write_text("JULIET:", encoding="utf-8")
    p = run("sample.py", f"--start=FILE:{tmp_path / 'prompt.txt'}", "--max_new_tokens=5",
            "--device=cpu")
    assert p.stdout.startswith("JULIET:")
    run("data/prepare.py", f"--input={SHAKESPEARE}", "--tokenizer=char",
        f"--out_dir={tmp_path / 'char'}")
    from data.shards import read_meta
    from data.tokenizer import load_tokenizer

    meta = read_meta(str(tmp_path / "char"))
    tok = load_tokenizer(str(tmp_path / "char"))
    # nanoGPT's split of the same text
    assert meta["splits"]["train"]["tokens"] == 1003854
    assert meta["splits"]["val"]["tokens"] == 111540
    assert tok.n_vocab == 66 and tok.eot_token == 65
    assert tok.decode(tok.encode("To be, or not")) == "To be, or not"
