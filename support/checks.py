"""
The ranges of train.py's settings, checked once before a run reads, builds or writes anything, so that a bad
value costs no time and leaves nothing behind; values that PyTorch would refuse later are refused here.
"""

import importlib
import os

from configurator import require
from model import GPTConfig
from support import hf
from support.common import check_writable


def check_settings(s: dict):
    require(s, "> 0", "eval_interval log_interval eval_iters sample_tokens batch_size block_size "
                      "gradient_accumulation_steps learning_rate eps")
    require(s, ">= 0", "sample_interval vocab_size max_iters max_seconds weight_decay grad_clip warmup_iters "
                       "lr_decay_iters min_lr peak_flops seed")
    require(s, "in [0, 1)", "beta1 beta2")
    world = int(os.environ.get("WORLD_SIZE", 1))  # processes under torchrun
    if s["gradient_accumulation_steps"] % world:
        raise ValueError(f"gradient_accumulation_steps ({s['gradient_accumulation_steps']}) must be divisible by the "
                         f"number of processes ({world}): the global batch is split among them")
    GPTConfig(**{k: s[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "gelu")},
              vocab_size=s["vocab_size"] or 1)  # the model's own checks
    if s["init_from"] not in ("auto", "scratch", "resume", *hf.PRETRAINED) and not os.path.isdir(s["init_from"]):
        raise ValueError(f"init_from={s['init_from']!r} is none of auto, scratch, resume, {', '.join(hf.PRETRAINED)}"
                         f", nor a folder of Hugging Face weights")
    if s["backend"] not in ("", "nccl", "gloo", "mpi"):
        raise ValueError(f"backend must be '', nccl, gloo or mpi, got {s['backend']!r}")
    check_writable(s["out_dir"])
    try:
        if s["wandb_log"]:
            importlib.import_module("wandb")  # an optional dependency, imported only when asked for
    except ImportError:
        raise ValueError("wandb_log=True needs Weights & Biases: pip install wandb") from None
