"""
Train a GPT. One process:

    python train.py config/train_shakespeare.py --max_iters=2000

Several processes (DDP), one node with 8 GPUs, or several nodes (run the same command on each, with
--node_rank=0..N-1; the global batch stays the same, see gradient_accumulation_steps below):

    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29500 train.py config/train_gpt2.py

Every setting below is a plain variable with its default (the GPT-2 124M recipe on OpenWebText); a config
file and --key=value arguments override them (see configurator.py, and --help for the list).
If out_dir holds a checkpoint the run resumes from it, else it starts from scratch; it says which.
"""

import json
import math
import os
import pickle
import sys
import tempfile
import time
import zipfile
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import configurator
from configurator import ConfigError
from data.prepare import DataError, read_meta, read_shard
from model import GPT, GPTConfig
from tokenizer import load_tokenizer, tokenizer_from_dict

# -----------------------------------------------------------------------------------------------------
# Settings. Defaults: GPT-2 (124M) on OpenWebText, as in nanoGPT; the names are nanoGPT's too.
# I/O
out_dir = "out"
eval_interval = 2000  # evaluate (and checkpoint) every this many iterations
log_interval = 1
eval_iters = 200  # batches per split in each evaluation
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # False: save only when the val loss improves
init_from = "auto"  # 'auto' (resume if out_dir has ckpt.pt, else scratch), 'scratch', 'resume',
#                      'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' or a directory of HF-format weights
final_eval = True  # after the last iteration: loss over the whole val split, in nats/char and bits/byte
sample_interval = 0  # print a short sample every this many iterations (0: never)
sample_tokens = 200
# data
dataset = "openwebtext"  # a directory under data/ (made by data/prepare.py) or a path to one
gradient_accumulation_steps = 5 * 8  # micro-steps per optimizer step, summed over all processes
batch_size = 12  # sequences per micro-step; 12 * 1024 * 40 = 491,520 tokens per optimizer step
block_size = 1024  # context length: the model's and the batch sampler's, one setting for both
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0  # 0 for pretraining; 0.1+ for finetuning or small data
bias = True  # biases in Linears and LayerNorms, as in GPT-2
gelu = "tanh"  # GPT-2's tanh approximation; "exact" (nanoGPT's) is ~2x cheaper on a CPU, as good from scratch
vocab_size = None  # None: the data's tokenizer size, padded up to a multiple of 64
# AdamW
learning_rate = 6e-4  # peak learning rate
max_iters = 600000
max_seconds = 0.0  # >0: also stop after this many seconds of training steps (evaluations not counted),
#                     the cosine decay running over that time instead of over iterations
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
eps = 1e-8
grad_clip = 1.0  # clip the global gradient norm at this value (0: don't)
# learning rate schedule: linear warmup, then cosine decay to min_lr (at lr_decay_iters, or at max_seconds)
decay_lr = True
warmup_iters = 2000
lr_decay_iters = 600000  # ~= max_iters per Chinchilla
min_lr = 6e-5  # ~= learning_rate / 10 per Chinchilla
# system
device = "auto"  # 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = "auto"  # 'auto' (bfloat16 on CUDA if supported, else float16; float32 elsewhere), or a name
compile = None  # None: on for CUDA, off on CPU (0-7% faster there for 25-40 s of compiling, and it
#                 would replace the chunked loss, worth ~1.18x, by the plain one); True/False to force
backend = ""  # DDP backend; '' = nccl on CUDA, gloo on CPU
seed = 1337
peak_flops = 0.0  # the device's peak FLOP/s for MFU; 0: datasheet value on known GPUs, else measured


# -----------------------------------------------------------------------------------------------------
# Pieces that bench.py reuses: device set-up, the batch sampler, the learning rate, checkpoints.

class CheckpointError(ValueError):
    pass


def resolve_device(device: str, dtype: str) -> tuple[str, str]:
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            # A CPU without native bf16 runs bf16 matmuls hundreds of times slower than fp32.
            dtype = "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    return device, dtype


def autocast_context(device: str, dtype: str):
    """Mixed precision on CUDA (weights stay fp32, matmuls run in bf16/fp16); plain fp32 elsewhere."""
    if dtype == "float32":
        return nullcontext()
    device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
    return torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))


def measure_matmul_peak(device: str, dtype: str, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul on this device, in this process: the honest ceiling for MFU.
    2048 fills a CPU's cores; a GPU needs 8192 to reach its tensor cores' rate."""
    n = 8192 if device.startswith("cuda") else 2048
    dt = getattr(torch, dtype)
    if device == "cpu" and dtype != "float32":
        dt = torch.float32  # CPU training runs fp32
    g = torch.Generator(device=device).manual_seed(0)  # its own RNG: a resumed run must draw what the original did
    a = torch.randn(n, n, device=device, dtype=dt, generator=g)
    b = torch.randn(n, n, device=device, dtype=dt, generator=g)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    best, t_end = 0.0, time.time() + seconds
    while time.time() < t_end:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


# bf16/fp16 dense tensor-core peaks (no sparsity) from the datasheets, for MFU on GPUs.
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10": 125e12, "L4": 121e12, "4090": 165e12,
             "3090": 71e12, "V100": 125e12, "T4": 65e12}


def device_peak_flops(device: str, dtype: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAKS.items():
            if key in name and dtype != "float32":
                return flops, f"{name} datasheet"
    return measure_matmul_peak(device, dtype), "matmul measured in this process"


class Batches:
    """Random windows of block_size+1 tokens from a split's memory-mapped shards.

    Each optimizer step draws the start positions of its whole global batch from one generator that every
    process holds identically; process r then takes micro-steps r*k .. r*k+k-1. So the global batch does
    not depend on the number of processes, and the generator's state in the checkpoint makes a resumed
    run draw exactly what the uninterrupted run would have drawn."""

    def __init__(self, data_dir: str, split: str, block_size: int, batch_size: int, device: str):
        meta = read_meta(data_dir)
        self.shards = [read_shard(os.path.join(data_dir, name)) for name in meta["splits"][split]["shards"]]
        self.block_size, self.batch_size, self.device = block_size, batch_size, device
        self.vocab_size = meta["vocab_size"]
        ntok = sum(len(s) for s in self.shards)
        starts = [max(len(s) - block_size, 0) for s in self.shards]  # valid window starts per shard
        if sum(starts) == 0:
            raise DataError(f"the {split} split of {data_dir} has {ntok} tokens, fewer than block_size+1 = "
                            f"{block_size + 1}: use a smaller --block_size or more text")
        self.cum = np.cumsum(starts)

    def draw(self, generator: torch.Generator, n_micro: int) -> torch.Tensor:
        """Start positions (as global indices) for n_micro micro-batches."""
        return torch.randint(int(self.cum[-1]), (n_micro, self.batch_size), generator=generator)

    def get(self, starts: torch.Tensor):
        T = self.block_size
        rows = []
        for g in starts.tolist():
            k = int(np.searchsorted(self.cum, g, side="right"))
            off = g - (int(self.cum[k - 1]) if k else 0)
            rows.append(self.shards[k][off : off + T + 1])
        buf = np.stack(rows).astype(np.int64)
        if buf.max() >= self.vocab_size:
            raise DataError(f"token id {buf.max()} is outside the vocabulary ({self.vocab_size}): the data "
                            f"is corrupt; run data/prepare.py again")
        xy = torch.from_numpy(buf)
        x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()
        if self.device.startswith("cuda"):
            # pinned host memory lets the copy to the GPU run asynchronously with the compute
            return (x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True))
        return x.to(self.device), y.to(self.device)


def get_lr(it: int, elapsed: float = 0.0) -> float:
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr. With a time
    budget (max_seconds) the decay follows the elapsed fraction of it instead: a run on a slow or busy
    machine does fewer steps but still ends its schedule, rather than being cut off at a high lr."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if max_seconds > 0:
        ratio = min(elapsed / max_seconds, 1.0)
    elif it > lr_decay_iters:
        return min_lr
    else:
        ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (learning_rate - min_lr)


def train_step(model, optimizer, scaler, ctx, micro_batches, n_micro: int, ddp: bool, clip: float):
    """One optimizer step over n_micro (X, Y) micro-batches, gradients averaged over them and over the
    processes; DDP all-reduces only on the last micro-step (no_sync on the others). Returns this process's
    mean loss as a device tensor (reading it is the caller's choice: .item() waits for the device)."""
    loss_sum = None
    for micro_step, (X, Y) in enumerate(micro_batches):
        last = micro_step == n_micro - 1
        with (model.no_sync() if ddp and not last else nullcontext()), ctx:
            _, loss = model(X, Y)
            loss = loss / n_micro  # a mean over the micro-steps
        scaler.scale(loss).backward()
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    if clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    # Fresh gradient and activation buffers cost page faults each step on a CPU (L6/C384/T256/B8: ~300k
    # faults and ~1.0 s system time per step with the chunked loss, ~500k and ~2.4 s without; bench.py
    # prints them). glibc's MALLOC_MMAP_THRESHOLD_/TRIM_THRESHOLD_/TOP_PAD_ did not change the count
    # (measured at L2/B4): tensors this big are mmapped regardless. set_to_none still saves a zero-fill.
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def save_checkpoint(ckpt: dict, path: str):
    """Write atomically: a crash or a full disk mid-save leaves the previous checkpoint as it was."""
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600); a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(f"could not write checkpoint {path} ({e.strerror or e}); the previous "
                                  f"checkpoint is intact; free space or fix permissions, then rerun to "
                                  f"resume") from None
        raise


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load a checkpoint as plain data: weights_only=True refuses pickles that would run code.

    torch.load does not check the CRC-32 that torch.save stores for every record of its zip file, so a
    flipped bit in the weights would load silently; zipfile's testzip() checks them all first."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise CheckpointError(f"checkpoint {path} is corrupt ({bad} fails its checksum); restore a "
                                      f"copy, or move it away to start from scratch")
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain data, "
                              f"which could run code ({first}); only load checkpoints you trust") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found") from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, EOF and storage errors all mean a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); restore a "
                              f"copy, or move it away to start from scratch") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py (no model / model_args)")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> GPT:
    model = GPT(GPTConfig(**ckpt["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))  # tied; compact files store it once
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


# -----------------------------------------------------------------------------------------------------

def main(argv: list[str]):  # noqa: C901 - a training script reads best top to bottom
    global gradient_accumulation_steps, device, dtype, compile, backend
    sys.stdout.reconfigure(line_buffering=True)  # `python train.py > log &` shows each line as it happens
    defaults = dict(globals())
    config = configurator.configure(globals(), argv, doc=__doc__)

    # --- processes and devices -------------------------------------------------------------------
    ddp = int(os.environ.get("RANK", -1)) != -1
    device, dtype = resolve_device(device, dtype)
    device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
    if ddp:
        backend = backend or ("nccl" if device_type == "cuda" else "gloo")
        dist.init_process_group(backend=backend)
        rank, local_rank, world = dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size()
        if device_type == "cuda":
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        if gradient_accumulation_steps % world:
            raise ConfigError(f"gradient_accumulation_steps ({gradient_accumulation_steps}) must be divisible "
                              f"by the number of processes ({world}): the global batch is split among them")
        gradient_accumulation_steps //= world
    else:
        rank, world = 0, 1
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    tokens_per_iter = gradient_accumulation_steps * world * batch_size * block_size
    log(f"tokens per iteration: {tokens_per_iter:,} ({world} process(es) x {gradient_accumulation_steps} "
        f"micro-steps x {batch_size} sequences x {block_size} tokens)")

    if master:
        try:
            os.makedirs(out_dir, exist_ok=True)
            tempfile.TemporaryFile(dir=out_dir).close()
        except OSError as e:
            raise ConfigError(f"out_dir {out_dir} is not writable ({e.strerror}); choose another with "
                              f"--out_dir") from None
        # a run killed while saving leaves its temporary file behind: each is a checkpoint's size
        for name in os.listdir(out_dir):
            if name.startswith("ckpt.pt.") and name.endswith(".tmp"):
                os.remove(os.path.join(out_dir, name))

    torch.manual_seed(seed + rank)  # different dropout masks per process; the init is broadcast by DDP
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left outside autocast
        torch.backends.cudnn.allow_tf32 = True
    ctx = autocast_context(device, dtype)

    # --- data ------------------------------------------------------------------------------------
    data_dir = dataset if os.path.isdir(dataset) or os.sep in dataset else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", dataset)
    meta = read_meta(data_dir)
    tokenizer = load_tokenizer(data_dir)
    train_data = Batches(data_dir, "train", block_size, batch_size, device)
    val_data = Batches(data_dir, "val", block_size, batch_size, device)
    data_vocab = meta["vocab_size"]
    log(f"data: {data_dir} ({tokenizer.name} tokenizer, {data_vocab:,} tokens in the vocabulary, "
        f"{meta['splits']['train']['tokens']:,} train / {meta['splits']['val']['tokens']:,} val tokens)")

    # --- model: resume, scratch or pretrained ----------------------------------------------------
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    mode = init_from
    if mode == "auto":
        mode = "resume" if os.path.exists(ckpt_path) else "scratch"
    if mode == "resume" and not os.path.exists(ckpt_path):
        raise CheckpointError(f"init_from=resume but {ckpt_path} does not exist; use init_from=auto or scratch")
    model_keys = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "gelu")
    iter_num, best_val_loss, ckpt = 0, float("inf"), None
    if mode == "resume":
        log(f"resuming from {ckpt_path}")
        ckpt = load_checkpoint(ckpt_path)
        model_args = {**GPTConfig().to_dict(), **ckpt["model_args"], "dropout": dropout}  # older: no gelu
        for k in model_keys:
            if config[k] != defaults[k] and config[k] != model_args[k]:
                raise CheckpointError(f"{ckpt_path} was trained with {k}={model_args[k]}, but {k}={config[k]} "
                                      f"was given: drop the override, or use another out_dir")
        if ckpt.get("tokenizer") and tokenizer_from_dict(ckpt["tokenizer"]).to_dict() != tokenizer.to_dict():
            raise CheckpointError(f"{ckpt_path} was trained with a different tokenizer than {data_dir} uses: "
                                  f"use the same dataset, or another out_dir")
        if model_args["vocab_size"] < data_vocab:
            raise CheckpointError(f"{ckpt_path} has vocab_size {model_args['vocab_size']} but the data has "
                                  f"{data_vocab} tokens: use the dataset it was trained on, or another out_dir")
        model = model_from_checkpoint(ckpt)
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    elif mode == "scratch":
        if os.path.exists(ckpt_path) and master:
            os.replace(ckpt_path, ckpt_path + ".old")
            log(f"init_from=scratch: moved the existing checkpoint to {ckpt_path}.old")
        padded = ((data_vocab + 63) // 64) * 64  # a multiple of 64 runs faster on GPUs
        if vocab_size is not None and vocab_size < data_vocab:
            raise ConfigError(f"vocab_size={vocab_size} is smaller than the data's tokenizer ({data_vocab} "
                              f"tokens): drop --vocab_size to take it from the data")
        model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                          gelu=gelu, vocab_size=vocab_size or padded, dropout=dropout)
        log(f"starting from scratch: {n_layer} layers, {n_head} heads, width {n_embd}, vocab "
            f"{model_args['vocab_size']}")
        model = GPT(GPTConfig(**model_args))
    else:
        log(f"initializing from pretrained weights: {init_from}")
        model = GPT.from_pretrained(init_from, dict(dropout=dropout))
        vocab_file, merges_file = (os.path.join(init_from, f) for f in ("vocab.json", "merges.txt"))
        if os.path.isfile(vocab_file) and os.path.isfile(merges_file):  # a folder with its tokenizer
            from export import hf_tokenizer_files

            ours = hf_tokenizer_files(tokenizer)
            with open(vocab_file, encoding="utf-8") as f, open(merges_file, encoding="utf-8") as g:
                same = json.load(f) == json.loads(ours["vocab.json"]) and \
                    g.read().split() == ours["merges.txt"].split()
        else:  # the hub's GPT-2 (only the weights are fetched) or bare weights: GPT-2's vocabulary
            same = tokenizer.name == "gpt2"
        if not same or model.config.vocab_size < data_vocab:
            raise CheckpointError(f"{init_from} has another vocabulary than the {tokenizer.name} tokenizer "
                                  f"{data_dir} was prepared with: prepare the data with the model's tokenizer")
        model_args = model.config.to_dict()
    if block_size < model.config.block_size:
        model.crop_block_size(block_size)
        model_args["block_size"] = block_size
    elif block_size > model.config.block_size:
        raise ConfigError(f"block_size={block_size} is larger than the model's ({model.config.block_size})")
    model.to(device)
    log(f"model: {model.get_num_params() / 1e6:.2f}M parameters")

    # fp16 needs loss scaling so small gradients don't flush to zero; bf16 and fp32 don't.
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, eps)
    gen = torch.Generator().manual_seed(seed)  # the batch sampler's, identical on every process
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        gen.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"][rank % len(ckpt["rng"]["torch"])])
        if device_type == "cuda" and ckpt["rng"].get("cuda"):
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"][rank % len(ckpt["rng"]["cuda"])])
    ckpt = None  # free the memory
    start_iter = iter_num  # a resumed run does not rewrite the checkpoint it just loaded

    raw_model = model
    use_compile = device_type == "cuda" if compile is None else bool(compile)
    if use_compile:
        log("compiling the model (the first iteration takes longer)...")
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)

    @torch.no_grad()
    def estimate_loss() -> dict:
        """Mean loss over eval_iters batches per split; the same batches every time, spread over the
        processes. A fixed generator keeps evaluations comparable and leaves the training RNG alone."""
        out = {}
        model.eval()
        for i, (split, data) in enumerate((("train", train_data), ("val", val_data))):
            starts = data.draw(torch.Generator().manual_seed(seed + 1000 + i), eval_iters)
            total = torch.zeros(2, device=device)
            for k in range(rank, eval_iters, world):
                X, Y = data.get(starts[k])
                with ctx:
                    _, loss = model(X, Y)
                total += torch.stack([loss.float(), torch.ones((), device=device)])
            if ddp:
                dist.all_reduce(total)
            out[split] = (total[0] / total[1]).item()
        model.train()
        return out

    def checkpoint_dict() -> dict:
        rng = dict(torch=[torch.get_rng_state()], sampler=gen.get_state())
        if device_type == "cuda":
            rng["cuda"] = [torch.cuda.get_rng_state()]
        if ddp:  # every process's dropout RNG, gathered to rank 0
            states = [None] * world
            dist.all_gather_object(states, torch.get_rng_state())
            rng["torch"] = states
        ck = dict(model=raw_model.state_dict(), optimizer=optimizer.state_dict(), model_args=model_args,
                  config=config, iter_num=iter_num, best_val_loss=best_val_loss, rng=rng,
                  tokenizer=tokenizer.to_dict(), dataset=os.path.abspath(data_dir))
        if scaler.is_enabled():
            ck["scaler"] = scaler.state_dict()
        return ck

    log_path = os.path.join(out_dir, "log.jsonl")

    def log_json(**entry):
        if master:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    peak, peak_source = (peak_flops, "given") if peak_flops else device_peak_flops(device, dtype)
    if master:
        log(f"device: {device}, {dtype}, peak {peak / 1e12:.2f} TFLOP/s ({peak_source})")
    flops_per_iter = raw_model.flops_per_token() * tokens_per_iter

    # --- the training loop -----------------------------------------------------------------------
    t0 = time.time()
    t_start = t0
    train_seconds = 0.0  # time in training steps only: what max_seconds budgets
    running_mfu = -1.0
    while True:
        lr = get_lr(iter_num, train_seconds)
        for group in optimizer.param_groups:
            group["lr"] = lr
        done = iter_num >= max_iters or 0 < max_seconds <= train_seconds

        if iter_num % eval_interval == 0 or done or eval_only:
            losses = estimate_loss()
            log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            log_json(iter=iter_num, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                     tokens=iter_num * tokens_per_iter, time=time.time() - t_start)
            if not math.isfinite(losses["val"]):
                raise FloatingPointError(f"val loss is {losses['val']} at iteration {iter_num}")
            improved = losses["val"] < best_val_loss
            if improved:
                best_val_loss = losses["val"]
            if iter_num > start_iter and (improved or always_save_checkpoint) and not eval_only:
                ck = checkpoint_dict()  # every process takes part (the RNG gather)
                if master:
                    save_checkpoint(ck, ckpt_path)
                    log(f"saved checkpoint to {ckpt_path}")
            if master:
                plot_losses(out_dir)
            if eval_only:
                break
        if sample_interval and iter_num % sample_interval == 0 and master:
            log(f"sample at step {iter_num}:\n{sample_text(raw_model, tokenizer, device, ctx)}")
        if done:
            break

        # One optimizer step; each process takes its share of the global batch, loaded as it goes.
        t_step = time.time()
        starts = train_data.draw(gen, gradient_accumulation_steps * world)
        mine = starts[rank * gradient_accumulation_steps : (rank + 1) * gradient_accumulation_steps]
        batches = (train_data.get(s) for s in mine)
        loss_sum = train_step(model, optimizer, scaler, ctx, batches, gradient_accumulation_steps, ddp, grad_clip)
        if ddp:
            dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
        lossf = loss_sum.item()  # syncs with the device once per step
        if not math.isfinite(lossf):
            raise FloatingPointError(f"loss is {lossf} at iteration {iter_num}")
        t1 = time.time()
        dt, t0 = t1 - t0, t1
        train_seconds += t1 - t_step
        if ddp and max_seconds > 0:  # the lr and the last step must agree on every process: rank 0's clock
            clock = torch.tensor(train_seconds, device=device)
            dist.broadcast(clock, 0)
            train_seconds = clock.item()
        iter_num += 1
        if iter_num % log_interval == 0 and master:
            tok_s = tokens_per_iter / dt
            mfu = flops_per_iter / world / dt / peak  # per device: peak is one device's
            running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
            log(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, {dt * 1000:.1f}ms, {tok_s:,.0f} tok/s "
                f"({tok_s / world:,.0f} per process), mfu {running_mfu * 100:.1f}%")
            log_json(iter=iter_num, loss=lossf, lr=lr, ms=dt * 1000, tokens_per_sec=tok_s, mfu=mfu,
                     tokens=iter_num * tokens_per_iter, time=time.time() - t_start)

    if final_eval and not eval_only and master:
        full_val_report(raw_model, val_data, meta, ctx, log, log_json, iter_num)
    if ddp:
        dist.destroy_process_group()


@torch.no_grad()
def full_val_report(model, data: Batches, meta: dict, ctx, log, log_json, iter_num: int):
    """Loss over every token of the val split, in consecutive windows of block_size, converted to nats per
    character and bits per byte so that runs with different tokenizers compare."""
    model.eval()
    T, total, count = data.block_size, 0.0, 0
    for shard in data.shards:
        # full windows batch_size at a time, then the shorter tail window alone
        n_full = (len(shard) - 1) // T
        batches = [np.arange(i, min(i + data.batch_size, n_full)) * T for i in range(0, n_full, data.batch_size)]
        if (len(shard) - 1) % T:
            batches.append(np.array([n_full * T]))
        for starts in batches:
            xy = np.stack([shard[j : j + T + 1] for j in starts]).astype(np.int64)
            xy = torch.from_numpy(xy).to(data.device)
            with ctx:
                _, loss = model(xy[:, :-1], xy[:, 1:])
            n = xy[:, 1:].numel()
            total += loss.float().item() * n
            count += n
    model.train()
    st = meta["splits"]["val"]
    loss = total / count
    nats_char = total / st["chars"]
    bpb = total / st["bytes"] / math.log(2)
    log(f"final val over all {count:,} tokens: {loss:.4f} nats/token, {nats_char:.4f} nats/char, "
        f"{bpb:.4f} bits/byte")
    log_json(iter=iter_num, final_val_loss=loss, val_nats_per_char=nats_char, val_bits_per_byte=bpb)


@torch.no_grad()
def sample_text(model, tokenizer, device, ctx) -> str:
    """A short sample from the start of a document, with its own RNG so training is unaffected."""
    with torch.random.fork_rng(devices=[]), ctx:
        torch.manual_seed(seed)
        model.eval()
        idx = torch.tensor([[tokenizer.eot_token]], device=device)
        out = model.generate(idx, sample_tokens, temperature=0.8, top_k=200)
        model.train()
    return tokenizer.decode([t for t in out[0, 1:].tolist() if t < tokenizer.n_vocab])


def plot_losses(out_dir_: str):
    try:
        import plot
    except ImportError:
        return
    plot.plot_log(out_dir_, quiet=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, FloatingPointError) as e:  # ConfigError, DataError, CheckpointError... are ValueErrors
        if isinstance(e, FloatingPointError):
            e = f"{e}: training diverged; the last good checkpoint is untouched. Lower learning_rate " \
                f"or raise warmup_iters, then rerun to resume from it"
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        sys.exit(130)
