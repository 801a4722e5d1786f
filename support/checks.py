"""
The ranges of train.py's settings, checked once before a run reads, builds or writes anything, so
that a bad value costs no time and leaves nothing behind; values that PyTorch would refuse later are
refused here.
"""

import importlib
import math
import os

from model import GPTConfig
from support import hf
from support.common import check_writable


def positive(s: dict, *names: str):
    for name in names:
        if s[name] <= 0:
            raise ValueError(f"{name} must be > 0, got {s[name]!r}")


def non_negative(s: dict, *names: str):
    for name in names:
        if s[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {s[name]!r}")


def fraction(s: dict, *names: str):
    """A value from 0 up to, not including, 1 (AdamW's betas)."""
    for name in names:
        if not 0 <= s[name] < 1:
            raise ValueError(f"{name} must be in [0, 1), got {s[name]!r}")


def check_settings(s: dict):
    # block_size and the model's shape are GPTConfig's to check, below
    positive(s, "eval_interval", "log_interval", "eval_iters", "sample_tokens", "batch_size",
             "gradient_accumulation_steps", "learning_rate", "eps")
    non_negative(s, "sample_interval", "vocab_size", "max_iters", "max_seconds", "weight_decay",
                 "grad_clip", "warmup_iters", "lr_decay_iters", "min_lr", "peak_flops", "seed")
    fraction(s, "beta1", "beta2", "muon_momentum")
    non_negative(s, "muon_lr", "hellaswag_interval", "hellaswag_limit")
    if s["optimizer"] not in ("adamw", "muon"):
        raise ValueError(f"optimizer must be adamw or muon, got {s['optimizer']!r}")
    if s["lr_schedule"] not in ("cosine", "wsd"):
        raise ValueError(f"lr_schedule must be cosine or wsd, got {s['lr_schedule']!r}")
    if not 0 < s["wsd_decay"] <= 1:
        raise ValueError(f"wsd_decay must be in (0, 1], got {s['wsd_decay']!r}")
    if s["zero_stage"] not in (0, 1):
        raise ValueError(f"zero_stage must be 0 (off) or 1 (AdamW's state sharded), got "
                         f"{s['zero_stage']!r}")
    # ZeroRedundancyOptimizer shards one torch optimizer; fp16's loss scaler would unscale only
    # this process's share of the gradients before clipping all of them
    if s["zero_stage"] and (s["optimizer"] != "adamw" or s["dtype"] == "float16"):
        raise ValueError("zero_stage=1 shards AdamW in bfloat16 or float32: it combines with "
                         "neither optimizer=muon nor dtype=float16")
    # the processes under torchrun, each taking a share of the micro-steps
    world = int(os.environ.get("WORLD_SIZE", 1))
    if s["gradient_accumulation_steps"] % world:
        raise ValueError(f"gradient_accumulation_steps ({s['gradient_accumulation_steps']}) must "
                         f"be divisible by the number of processes ({world}): the global batch is "
                         f"split among them")
    # vocab_size 0 means the data's tokenizer size, known only once the data is read
    GPTConfig(**{k: s[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias",
                                   "gelu")}, vocab_size=s["vocab_size"] or 1)
    known = ("auto", "scratch", "resume", *hf.PRETRAINED)
    if s["init_from"] not in known and not os.path.isdir(s["init_from"]):
        raise ValueError(f"init_from={s['init_from']!r} is none of auto, scratch, resume, "
                         f"{', '.join(hf.PRETRAINED)}, nor a folder of Hugging Face weights")
    if s["backend"] not in ("", "nccl", "gloo", "mpi"):
        raise ValueError(f"backend must be '', nccl, gloo or mpi, got {s['backend']!r}")
    check_writable(s["out_dir"])
    # wandb is an optional dependency, imported only when asked for
    if s["wandb_log"]:
        try:
            importlib.import_module("wandb")
        except ImportError:
            raise ValueError("wandb_log=True needs Weights & Biases: pip install wandb") from None


def finite(loss: float, what: str, iter_num: int):
    """A diverged run ends here, before it could save: its last good checkpoint stays as it was."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"{what} is {loss} at iteration {iter_num}: training diverged; the "
                                 f"last good checkpoint is untouched. Lower learning_rate or raise "
                                 f"warmup_iters, then rerun to resume from it")
