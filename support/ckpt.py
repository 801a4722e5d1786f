"""
Checkpoints: saving them atomically, loading them safely, and the model and tokenizer they hold.

A checkpoint is a dict written with torch.save: model (the state dict, lm_head.weight included as
nanoGPT's are, tied to transformer.wte.weight), model_args (GPTConfig's fields), tokenizer
(Tokenizer.to_dict()), and for resuming: optimizer, iter_num, best_val_loss, rng, config.
"""

import os
import pickle
import sys
import zipfile

import torch

from data.tokenizer import check_fits, get_gpt2_tokenizer, load_tokenizer
from model import GPT, GPTConfig
from support import devices, hf
from support.common import atomic_write

# the repository, and its committed checkpoint: what sample.py uses by default
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "checkpoint")


def save(state: dict, path: str):
    """Write atomically: a crash or a full disk mid-save leaves the previous checkpoint as it
    was."""
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as e:
        raise ValueError(f"could not write checkpoint {path} ({e.strerror or e}); the previous "
                         f"checkpoint is intact; free space or fix permissions, then rerun to "
                         f"resume") from None


def remove_partial(path: str):
    """Remove the path.tmp that a save killed part way leaves behind."""
    if os.path.exists(path + ".tmp"):
        os.remove(path + ".tmp")


def set_aside(path: str):
    """Move a checkpoint out of a new run's way, to path.old (replacing an older one there), and
    say so."""
    os.replace(path, path + ".old")
    print(f"init_from=scratch: moved the existing checkpoint to {path}.old")


def load(path: str) -> dict:
    """Load a checkpoint as plain data: weights_only=True refuses pickles that would run code.
    torch.load does not check the CRC-32 that torch.save stores for every record of its zip file,
    so a flipped bit in the weights would load silently: zipfile's testzip() checks them all
    first."""
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path} not found")
    damaged = f"checkpoint {path} is corrupt or truncated"
    fix = "restore a copy, or move it away to start from scratch"
    # torch.save's zip format gets its CRCs checked; of anything else, torch.load says what it is
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        # a damaged header can fail in many ways (bad magic, an unknown compression, EOF)
        except Exception as e:
            raise ValueError(f"{damaged} ({type(e).__name__}); {fix}") from None
        if bad is not None:
            raise ValueError(f"checkpoint {path} is corrupt ({bad} fails its checksum); {fix}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(_refusal(path, str(e))) from None
    # zip, EOF and storage errors all mean a damaged file
    except Exception as e:
        raise ValueError(f"{damaged} ({type(e).__name__}); {fix}") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_args" not in ck:
        raise ValueError(f"{path} is not a checkpoint written by train.py (no model / model_args)")
    return ck


def _refusal(path: str, error: str) -> str:
    """What torch.load(weights_only=True) refused: a file that is no pickle, or one that would run
    code (it names a class or function: a GLOBAL)."""
    if "global" not in error.lower():
        return (f"{path} is not a checkpoint (a file torch.save wrote): give a .pt file or the "
                f"folder that holds ckpt.pt")
    first = next((line for line in error.splitlines() if "GLOBAL" in line), "")[:200]
    return (f"refusing to load {path}: it holds objects other than tensors and plain data, which "
            f"could run code ({first}); only load checkpoints you trust")


def find(path: str) -> str:
    """A .pt file, or a folder holding ckpt.pt."""
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path} not found; give a .pt file or a folder")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "ckpt.pt")):
        raise ValueError(f"{path} holds no checkpoint yet: train.py saves one at every "
                         f"eval_interval")
    return os.path.join(path, "ckpt.pt") if os.path.isdir(path) else path


def model_args(ck: dict) -> dict:
    """GPTConfig's arguments. A checkpoint without them all is older, with tanh GELU, or nanoGPT's
    (no tokenizer), whose MLP uses the exact GELU."""
    gelu = "tanh" if "tokenizer" in ck else "exact"
    return {**GPTConfig(gelu=gelu).to_dict(), **ck["model_args"]}


def check_resume(ck: dict, path: str, given: dict, tokenizer, optimizer: str = "adamw") -> dict:
    """The model_args to resume with, after checking them against the settings given, the
    optimizer and the data's tokenizer."""
    args = model_args(ck)
    # the saved optimizer state is one optimizer's: the other cannot carry it on
    theirs = ck.get("config", {}).get("optimizer", "adamw")
    if theirs != optimizer:
        raise ValueError(f"{path} was trained with optimizer={theirs}, but optimizer={optimizer} "
                         f"is set: set optimizer={theirs} to resume, or use another out_dir")
    for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "gelu"):
        if k in given and given[k] != args[k]:
            raise ValueError(f"{path} was trained with {k}={args[k]}, but {k}={given[k]} was "
                             f"given: drop the override, or use another out_dir")
    # nanoGPT's checkpoints keep no tokenizer: the data's is the one to fit
    ours = load_tokenizer(ck, path) if ck.get("tokenizer") else tokenizer
    check_fits(ours, args["vocab_size"], path, tokenizer)
    return args


def restore_training(ck: dict, optimizer, scaler, sampler, rank: int, cuda: bool) -> bool:
    """Put a resumed run where the saved one was: optimizer state, loss scale, random states.
    False if the checkpoint holds no random states (nanoGPT's): batches and dropout restart."""
    optimizer.load_state_dict(ck["optimizer"])
    # fp16's loss scale; other runs save an empty state
    if ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    if "rng" in ck:
        devices.set_random_states(ck["rng"], sampler, rank, cuda)
    return "rng" in ck


def how_to_continue(saved_iter: int | None, iter_num: int, best_val_loss: float) -> str:
    """What an interrupted run leaves on disk, and how to go on from it."""
    if saved_iter is None:
        return "no step was finished, nothing is saved"
    # without always_save_checkpoint the checkpoint may be older than the last step: the best one
    kept = "" if saved_iter == iter_num else f", kept as the best (val loss {best_val_loss:.4f})"
    return f"rerun the same command to continue from the checkpoint of iteration {saved_iter}{kept}"


def model_from(ck: dict) -> GPT:
    """The model a checkpoint holds, in fp32 (compact checkpoints store fp16)."""
    model = GPT(GPTConfig(**model_args(ck)))
    # nanoGPT's compiled models prefix their keys; older compact checkpoints kept the tied
    # embedding only as transformer.wte.weight
    state = {k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()}
    state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def load_for_inference(source: str | None, device: str):
    """(model in eval mode, tokenizer, description, documents) for a .pt file or a folder holding
    one, OpenAI's gpt2*, a Hugging Face folder, or None: the committed checkpoint (an untrained
    GPT-2, with a warning, without it). documents: how many the training text had; with one,
    <|endoftext|> never came up in training."""
    if hf.is_pretrained(source):
        model, tok = GPT.from_pretrained(source), load_tokenizer(source)
        check_fits(tok, model.config.vocab_size, source)
        return model.to(device).eval(), tok, source, 2
    if source is None and not os.path.isfile(os.path.join(DEFAULT, "ckpt.pt")):
        print("warning: no checkpoint in checkpoint/ and none given: sampling from an UNTRAINED "
              "GPT-2, the output is noise (train one, or pass --checkpoint=out)", file=sys.stderr)
        return GPT(GPTConfig()).to(device).eval(), get_gpt2_tokenizer(), "untrained GPT-2 (124M)", 2
    path = find(source or DEFAULT)
    ck = load(path)
    tok = load_tokenizer(ck, path)
    desc = f"{path} (iteration {ck.get('iter_num', '?')})"
    return model_from(ck).to(device).eval(), tok, desc, ck.get("documents", 1)


def load_model(source: str | None = None, device: str = "cpu"):
    """(model, tokenizer) for Python users: a checkpoint (.pt file or its folder), OpenAI's gpt2*,
    a Hugging Face folder, or None for the committed checkpoint. The model is in eval mode."""
    model, tok, _, _ = load_for_inference(source, device)
    return model, tok


def export_half(source: str, dest: str) -> str:
    """A compact checkpoint for sampling and sharing (how checkpoint/ckpt.pt was made): fp16
    weights, no optimizer state; model_from() converts back to fp32."""
    ck = load(find(source))
    # the model's own state dict names the tied lm_head.weight and transformer.wte.weight, one
    # tensor: torch.save stores it once, and nanoGPT's load_state_dict finds every key it expects
    # (a plain dict: the OrderedDict's module metadata is not needed to load it)
    weights = dict(model_from(ck).half().state_dict())
    keep = ("model_args", "config", "iter_num", "best_val_loss", "tokenizer")
    save(dict(model=weights, **{k: ck[k] for k in keep if k in ck}), dest)
    return dest
