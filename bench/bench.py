"""
Training throughput: train.py's optimizer step on its model, timed, with the device's peak measured alongside.

    python bench/bench.py config/bench_gpt2vocab.py          # L6/C384/T256/B8, GPT-2's vocabulary
    python bench/bench.py --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 --vocab_size=65
    python bench/bench.py config/train_gpt2.py --batch_size=16 --gradient_accumulation_steps=4   # on a GPU

Takes train.py's config files and settings (the ones that do not shape a step are ignored) plus the few below.
The tokens come from the dataset when it has been prepared, else they are random (speed does not depend on
which). Prints tokens/s, ms/iter, achieved GFLOP/s (model FLOPs as train.py counts them), the peak (a matmul
measured in this process, or the datasheet on known GPUs), MFU against it, peak memory, and the compile time
on its own line. On a CPU it also times two references alternating with ours and prints the ratios: the plain
F.cross_entropy and nn.Dropout instead of the chunked loss and integer masks, and a nanoGPT-equivalent step
(the same shapes with nanoGPT's choices: exact GELU, the plain loss and dropout, AdamW's default per-tensor
loop, float32). With --compile=True the references stay eager, as nanoGPT's CPU command runs (--compile=False),
so the ratio is what compiling buys on top; with --dtype=bfloat16 (on a CPU with native bf16) the
nanoGPT-equivalent step stays float32, as nanoGPT's does on a CPU, so the ratio includes what bf16 buys.
"""

import os
import random
import re
import resource
import sys
import time
from contextlib import nullcontext

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root
import configurator
from data.shards import Batches, data_dir, read_meta
from model import GPT, GPTConfig
from support import speedups
from support.common import one_line_errors
from support.devices import (
    autocast,
    device_peak_flops,
    device_type,
    measure_matmul_peak,
    resolve_device,
    setup_training,
)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the model and the step, as in train.py
dataset = "openwebtext"  # real tokens from this prepared dataset when it exists, else random ones
gradient_accumulation_steps = 1  # micro-steps per optimizer step
batch_size = 12  # sequences per micro-step
block_size = 1024  # context length
n_layer = 12  # transformer blocks
n_head = 12  # attention heads
n_embd = 768  # width
dropout = 0.0  # dropout
bias = True  # biases in Linears and LayerNorms
gelu = "tanh"  # 'tanh' or 'exact'
vocab_size = 0  # 0: the dataset's tokenizer padded to a multiple of 64, or GPT-2's 50304 with random tokens
learning_rate = 6e-4  # AdamW's learning rate
weight_decay = 1e-1  # AdamW's weight decay
beta1 = 0.9  # AdamW's beta1
beta2 = 0.95  # AdamW's beta2
eps = 1e-8  # AdamW's epsilon
grad_clip = 1.0  # gradient clipping (0: off)
device = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = "auto"  # 'auto', 'float32', 'bfloat16', 'float16'
compile = None  # torch.compile; None: on CUDA only, as in train.py
seed = 1337  # seeds the init and the tokens
peak_flops = 0.0  # the peak FLOP/s for MFU; 0: the datasheet on known GPUs, else measured here
# the benchmark
steps = 10  # timed optimizer steps
warmup = 2  # untimed steps first (compilation, allocator and cache warm-up)
reference = True  # on a CPU, also time the plain loss and a nanoGPT-equivalent step, alternating, and print ratios
profile = False  # after the timings, print torch.profiler's table of our steps: the operators taking the time


def step(model, optimizer, scaler, ctx, next_batch) -> float:
    """One optimizer step, as train.py takes it (one process)."""
    for _ in range(gradient_accumulation_steps):
        x, y = next_batch()
        with ctx:
            _, loss = model(x, y)
        scaler.scale(loss / gradient_accumulation_steps).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def timed_runs(variants: dict, sync) -> dict:
    """Each variant's steps, alternating, so that a busy moment slows all alike: (seconds, minor page faults,
    system seconds) per step. Page faults and system time show the cost of fresh big buffers."""
    stats, names = {name: [] for name in variants}, list(variants)
    for i in range(steps):
        # a shuffled order each round, so that no variant mostly comes right after the same one (on
        # a busy CPU a step slows the one that follows it)
        for name in random.Random(i).sample(names, len(names)):
            run = variants[name]
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            run()
            sync()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            stats[name].append((time.perf_counter() - t0, r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime))
    return stats


def median(xs):  # robust to another process taking the CPU for a moment
    return sorted(xs)[len(xs) // 2]


def main(argv: list[str]):
    with open(os.path.join(_ROOT, "train.py"), encoding="utf-8") as f:  # its settings: `name = value  # ...`
        train_settings = re.findall(r"^(\w+) = ", f.read(), re.M)
    configurator.configure(globals(), argv, doc=__doc__, verbose=False, ignore=train_settings)
    dev, dt = resolve_device(device, dtype)
    setup_training(dev)
    torch.manual_seed(seed)
    ctx, kind = autocast(dev, dt), device_type(dev)
    path = data_dir(dataset)
    if os.path.exists(os.path.join(path, "meta.json")):
        meta = read_meta(path)
        data = Batches(path, meta, "train", block_size, batch_size, dev)
        vocab, gen = vocab_size or -(-meta["vocab_size"] // 64) * 64, torch.Generator().manual_seed(seed)
        next_batch, source = lambda: data.get(data.draw(gen, 1)[0]), f"tokens from {path}"
    else:
        vocab, source = vocab_size or 50304, "random tokens (no prepared dataset)"
        next_batch = lambda: tuple(torch.randint(vocab, (batch_size, block_size), device=dev) for _ in range(2))

    def make(act, fused=True, chunked=True):
        torch.manual_seed(seed)
        m = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, vocab_size=vocab,
                          dropout=dropout, bias=bias, gelu=act)).to(dev)
        opt = m.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), kind, eps, fused=fused)
        # train.py's CPU fast paths: the chunked loss, integer dropout masks, attention in float32 under bf16
        return (speedups.use_cpu_training(m) if chunked and kind == "cpu" else m), opt

    model, optimizer = make(gelu)
    scaler = torch.amp.GradScaler(kind, enabled=(dt == "float16"))
    use_compile = kind == "cuda" if compile is None else compile
    step_model = torch.compile(model) if use_compile else model
    tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
    print(f"model: {n_layer} layers, {n_head} heads, width {n_embd}, context {block_size}, vocab {vocab}, "
          f"{model.get_num_params() / 1e6:.2f}M parameters; batch {batch_size} x {gradient_accumulation_steps} "
          f"micro-steps; {source}; device {dev} {dt}, compile {use_compile}, {torch.get_num_threads()} threads")
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    variants = {"ours": lambda: step(step_model, optimizer, scaler, ctx, next_batch)}
    if reference and kind == "cpu":  # eager even when ours is compiled
        plain, nano = make(gelu, chunked=False), make("exact", fused=False, chunked=False)
        variants["plain loss"] = lambda: step(*plain, scaler, ctx, next_batch)
        # nanoGPT runs float32 on a CPU whatever its dtype setting (its ctx is nullcontext there)
        variants["nanoGPT-equivalent"] = lambda: step(*nano, scaler, nullcontext(), next_batch)
    t0 = time.perf_counter()
    for run in variants.values():  # the first steps compile (when compile is on) and warm the allocator
        for _ in range(max(warmup, 1)):
            run()
    sync()
    first = time.perf_counter() - t0
    if kind == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stats = timed_runs(variants, sync)
    dt_ours = median([s[0] for s in stats["ours"]])
    if len(variants) > 1:
        for name, st in stats.items():
            print(f"{name}: {median([s[0] for s in st]) * 1000:.1f} ms/iter, {median([s[1] for s in st]):,} minor "
                  f"page faults/iter, {median([s[2] for s in st]) * 1000:.0f} ms system time/iter")
        ours = "our compiled step" if use_compile else "our step"
        for name, what in [("plain loss", f"{ours} over one with the plain loss"),
                           ("nanoGPT-equivalent", f"{ours} over a nanoGPT-equivalent one")]:
            ratio = median([s[0] for s in stats[name]]) / dt_ours
            print(f"speed-up of {what} (same process, alternating): {ratio:.3f}x")
    report(model, dev, dt, dt_ours, [s[0] for s in stats["ours"]], tokens_per_iter, first if use_compile else None)
    if profile:  # where our step's time goes, operator by operator, over as many steps again
        with torch.profiler.profile() as prof:
            for _ in range(steps):
                variants["ours"]()
            sync()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def report(model, dev, dt, step_time, times, tokens_per_iter, first):
    peak, peak_source = (peak_flops, "given") if peak_flops else device_peak_flops(dev, dt)
    flops = model.flops_per_token() * tokens_per_iter / step_time
    print(f"tokens/s: {tokens_per_iter / step_time:,.0f}")
    print(f"ms/iter: {step_time * 1000:.1f} (median of {len(times)}; mean {sum(times) / len(times) * 1000:.1f})")
    print(f"achieved: {flops / 1e9:,.1f} GFLOP/s (model FLOPs, {model.flops_per_token():,} per token)")
    print(f"peak: {peak / 1e9:,.1f} GFLOP/s ({peak_source})")
    print(f"MFU: {flops / peak * 100:.1f}%")
    if device_type(dev) == "cuda" and peak_source.endswith("datasheet"):  # what the card really does, alongside
        measured = measure_matmul_peak(dev, dt)
        print(f"MFU against the {dt} matmul peak measured in this process ({measured / 1e12:,.0f} TFLOP/s, "
              f"8192^3): {flops / measured * 100:.1f}%")
    if device_type(dev) == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB (torch.cuda.max_memory_allocated)")
    else:  # ru_maxrss is KiB on Linux, bytes on macOS
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        print(f"peak memory: {rss:,.0f} MiB (peak RSS of the process)")
    if first is not None:
        print(f"compile: {first - step_time * max(warmup, 1):.1f} s (the warm-up steps minus as many timed steps)")


if __name__ == "__main__":
    one_line_errors()
    main(sys.argv[1:])
