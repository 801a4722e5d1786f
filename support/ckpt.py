"""
Checkpoints: saving them atomically, loading them safely, and the model and tokenizer they hold.

A checkpoint is a dict written with torch.save: model (the state dict), model_args (GPTConfig's fields),
tokenizer (Tokenizer.to_dict()), and for resuming: optimizer, iter_num, best_val_loss, rng, config.
"""

import os
import pickle
import sys
import zipfile

import torch

from data import nanogpt
from data.tokenizer import get_gpt2_tokenizer, tokenizer_from_dict
from model import GPT, GPTConfig
from support import hf
from support.common import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
DEFAULT = os.path.join(ROOT, "checkpoint")  # the committed checkpoint: what sample.py uses by default


def save(state: dict, path: str):
    """Write atomically: a crash or a full disk mid-save leaves the previous checkpoint as it was."""
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as e:
        raise ValueError(f"could not write checkpoint {path} ({e.strerror or e}); the previous checkpoint is "
                         f"intact; free space or fix permissions, then rerun to resume") from None


def load(path: str) -> dict:
    """Load a checkpoint as plain data: weights_only=True refuses pickles that would run code. torch.load does
    not check the CRC-32 that torch.save stores for every record of its zip file, so a flipped bit in the
    weights would load silently: zipfile's testzip() checks them all first."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"checkpoint {path} is corrupt ({bad} fails its checksum); restore a copy, "
                                 f"or move it away to start from scratch")
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # no class or function referenced: not a pickle at all
            raise ValueError(f"{path} is not a checkpoint (a file torch.save wrote): give a .pt file or the "
                             f"folder that holds ckpt.pt") from None
        first = next((line for line in str(e).splitlines() if "GLOBAL" in line), "")[:200]
        raise ValueError(f"refusing to load {path}: it holds objects other than tensors and plain data, "
                         f"which could run code ({first}); only load checkpoints you trust") from None
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} not found") from None
    except ValueError:
        raise
    except Exception as e:  # zip, EOF and storage errors all mean a damaged file
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); restore a copy, "
                         f"or move it away to start from scratch") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_args" not in ck:
        raise ValueError(f"{path} is not a checkpoint written by train.py (no model / model_args)")
    return ck


def find(path: str) -> str:
    """A .pt file, or a folder holding ckpt.pt."""
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path} not found; give a .pt file or a folder")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "ckpt.pt")):
        raise ValueError(f"{path} holds no checkpoint yet: train.py saves one at every eval_interval")
    return os.path.join(path, "ckpt.pt") if os.path.isdir(path) else path


def model_args(ck: dict) -> dict:
    """GPTConfig's arguments. A checkpoint without them all is older, with tanh GELU, or nanoGPT's (no
    tokenizer), whose MLP uses the exact GELU."""
    return {**GPTConfig(gelu="tanh" if "tokenizer" in ck else "exact").to_dict(), **ck["model_args"]}


def check_resume(ck: dict, path: str, given: dict, tokenizer) -> dict:
    """The model_args to resume with, after checking them against the settings given and the data's tokenizer."""
    args = model_args(ck)
    for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "gelu"):
        if k in given and given[k] != args[k]:
            raise ValueError(f"{path} was trained with {k}={args[k]}, but {k}={given[k]} was given: drop the "
                             f"override, or use another out_dir")
    if ck.get("tokenizer") and tokenizer_from_dict(ck["tokenizer"]).to_dict() != tokenizer.to_dict():
        raise ValueError(f"{path} was trained with a different tokenizer than the data's: use the same "
                         f"dataset (or one prepared with --tokenizer={path}), or another out_dir")
    if args["vocab_size"] < tokenizer.n_vocab:
        raise ValueError(f"{path} has vocab_size {args['vocab_size']} but the data's tokenizer has "
                         f"{tokenizer.n_vocab} tokens: use the dataset it was trained on, or another out_dir")
    return args


def model_from(ck: dict) -> GPT:
    """The model a checkpoint holds, in fp32 (compact checkpoints store fp16 and the tied embedding once)."""
    model = GPT(GPTConfig(**model_args(ck)))
    state = {k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()}
    state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def tokenizer_from(ck: dict, path: str):
    """The checkpoint's own tokenizer (nanoGPT's checkpoints carry none: nanogpt.py), checked against its model."""
    try:
        tok = tokenizer_from_dict(ck["tokenizer"]) if "tokenizer" in ck else nanogpt.checkpoint_tokenizer(ck)
    except ValueError as e:
        raise ValueError(f"{path}: its tokenizer cannot be used ({e}); retrain or restore it") from None
    if tok.n_vocab > ck["model_args"]["vocab_size"]:
        raise ValueError(f"{path}: its tokenizer has {tok.n_vocab} tokens but the model only "
                         f"{ck['model_args']['vocab_size']}; the checkpoint is inconsistent, retrain it")
    return tok


def load_for_inference(source: str | None, device: str):
    """(model in eval mode, tokenizer, description, documents) for a .pt file or a folder holding one, OpenAI's
    gpt2*, a Hugging Face folder, or None: the committed checkpoint (an untrained GPT-2, with a warning, without
    it). documents: how many the training text had; with one, <|endoftext|> never came up in training."""
    if source in hf.PRETRAINED or (source and os.path.isfile(os.path.join(source, "model.safetensors"))):
        return GPT.from_pretrained(source).to(device).eval(), hf.tokenizer_of(source), source, 2
    if source is None and not os.path.isfile(os.path.join(DEFAULT, "ckpt.pt")):
        print("warning: no checkpoint in checkpoint/ and none given: sampling from an UNTRAINED GPT-2, the output "
              "is noise (train one, or pass --checkpoint=out)", file=sys.stderr)
        return GPT(GPTConfig()).to(device).eval(), get_gpt2_tokenizer(), "untrained GPT-2 (124M)", 2
    path = find(source or DEFAULT)
    ck = load(path)
    tok = tokenizer_from(ck, path)
    desc = f"{path} (iteration {ck.get('iter_num', '?')})"
    return model_from(ck).to(device).eval(), tok, desc, ck.get("documents", 1)


def export_half(source: str, dest: str) -> str:
    """A compact checkpoint for sampling and sharing (how checkpoint/ckpt.pt was made): fp16 weights, the tied
    embedding stored once, no optimizer state; model_from() converts back to fp32."""
    ck = load(find(source))
    weights = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items() if k != "lm_head.weight"}
    keep = ("model_args", "config", "iter_num", "best_val_loss", "tokenizer")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    save(dict(model=weights, **{k: ck[k] for k in keep if k in ck}), dest)
    return dest
