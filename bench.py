"""
Training throughput: train.py's own optimizer step, timed, with the device's peak measured alongside.

    python bench.py config/bench_gpt2vocab.py              # L6/C384/T256/B8, GPT-2 vocabulary
    python bench.py --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 --vocab_size=65
    python bench.py config/train_shakespeare.py             # real tokens when data/shakespeare exists

Takes train.py's settings (config files and --key=value, same names) plus the few below. The model,
optimizer, autocast, compile setting and step function are train.py's; the tokens come from the dataset
when it has been prepared, else they are random (speed does not depend on which tokens). Prints tokens/s,
ms/iter, achieved GFLOP/s (model FLOPs as train.py counts them), the matmul peak measured in this process
(datasheet peak on known GPUs), MFU against it, peak memory, and the compile time on its own line. On a
CPU it also times, alternating with ours, the plain loss and a nanoGPT-equivalent step, and prints ratios.
"""

import os
import resource
import sys
import time

import torch

import configurator
import model as model_py
import train
from configurator import ConfigError
from model import GPT, GPTConfig

# bench settings (train.py's are all accepted too)
steps = 10  # timed optimizer steps
warmup = 2  # untimed steps first (compilation, allocator and cache warm-up)
reference = True  # on a CPU, also time the plain loss and a nanoGPT-equivalent step, alternating, and print ratios


def main(argv: list[str]):
    # one namespace for train.py's settings and these, written back into train so its pieces see them
    ns = {k: v for k, v in vars(train).items() if k in configurator._settings(vars(train))}
    ns.update(steps=steps, warmup=warmup, reference=reference)
    cfg = configurator.configure(ns, argv, doc=__doc__, verbose=False)
    for k in vars(train):
        if k in ns:
            setattr(train, k, ns[k])
    t = train
    device, dtype = train.resolve_device(t.device, t.dtype)
    device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
    torch.manual_seed(t.seed)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ctx = train.autocast_context(device, dtype)

    # tokens: the prepared dataset if there is one, else random ids
    data_dir = t.dataset if os.path.isdir(t.dataset) or os.sep in t.dataset else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", t.dataset)
    if os.path.exists(os.path.join(data_dir, "meta.json")):
        data = train.Batches(data_dir, "train", t.block_size, t.batch_size, device)
        vocab = t.vocab_size or ((data.vocab_size + 63) // 64) * 64
        gen = torch.Generator().manual_seed(t.seed)
        next_batch = lambda: data.get(data.draw(gen, 1)[0])  # noqa: E731
        source = f"tokens from {data_dir}"
    else:
        vocab = t.vocab_size or 50304
        next_batch = lambda: (torch.randint(vocab, (t.batch_size, t.block_size), device=device),  # noqa: E731
                              torch.randint(vocab, (t.batch_size, t.block_size), device=device))
        source = "random tokens (no prepared dataset)"

    def make_model(gelu):
        return GPT(GPTConfig(n_layer=t.n_layer, n_head=t.n_head, n_embd=t.n_embd, block_size=t.block_size,
                             vocab_size=vocab, dropout=t.dropout, bias=t.bias, gelu=gelu)).to(device)

    model = make_model(t.gelu)
    optimizer = model.configure_optimizers(t.weight_decay, t.learning_rate, (t.beta1, t.beta2), device_type, t.eps)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    use_compile = device_type == "cuda" if t.compile is None else bool(t.compile)
    step_model = torch.compile(model) if use_compile else model
    n_micro = t.gradient_accumulation_steps
    tokens_per_iter = n_micro * t.batch_size * t.block_size
    print(f"model: {t.n_layer} layers, {t.n_head} heads, width {t.n_embd}, context {t.block_size}, vocab {vocab}, "
          f"{model.get_num_params() / 1e6:.2f}M parameters; batch {t.batch_size} x {n_micro} micro-steps; "
          f"{source}; device {device} {dtype}, compile {use_compile}, {torch.get_num_threads()} threads")

    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)

    def step(m=None, opt=None):  # our model and optimizer, unless a reference's are given
        m, opt = (step_model, optimizer) if m is None else (m, opt)
        batches = (next_batch() for _ in range(n_micro))
        return train.train_step(m, opt, scaler, ctx, batches, n_micro, False, t.grad_clip).item()

    t0 = time.perf_counter()
    step()  # the first step compiles, when compile is on
    sync()
    first = time.perf_counter() - t0
    for _ in range(max(ns["warmup"] - 1, 0)):
        step()
    sync()
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # On a CPU (eager), the references run alternating with our step, so that a busy machine slows all
    # alike: the plain F.cross_entropy instead of the chunked loss (model.py), and a nanoGPT-equivalent
    # step: the same shapes with nanoGPT's choices, exact GELU, the plain loss and AdamW's default
    # per-tensor loop. Minor page faults and system time show the cost of fresh big buffers.
    chunk_rows = model_py.LOSS_CHUNK_ROWS
    variants = [("ours", chunk_rows, None, None)]
    if ns["reference"] and device_type == "cpu" and not use_compile:
        nano = make_model("exact")
        nano_opt = nano.configure_optimizers(t.weight_decay, t.learning_rate, (t.beta1, t.beta2), device_type, t.eps,
                                             fused=False)
        variants += [("plain loss", 0, None, None)] if chunk_rows else []
        variants += [("nanoGPT-equivalent", 0, nano, nano_opt)]
        for _ in range(max(ns["warmup"], 1)):
            step(nano, nano_opt)
    stats = {v[0]: [] for v in variants}
    for _ in range(ns["steps"]):
        for name, rows, m, opt in variants:
            model_py.LOSS_CHUNK_ROWS = rows
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            step(m, opt)
            sync()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            stats[name].append((time.perf_counter() - t0, r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime))
    model_py.LOSS_CHUNK_ROWS = chunk_rows

    def median(xs):  # robust to another process stealing the CPU for a moment
        return sorted(xs)[len(xs) // 2]

    times = [s[0] for s in stats["ours"]]
    if len(variants) > 1:
        for name, st in stats.items():
            print(f"{name}: {median([s[0] for s in st]) * 1000:.1f} ms/iter, {median([s[1] for s in st]):,} minor "
                  f"page faults/iter, {median([s[2] for s in st]) * 1000:.0f} ms system time/iter")
        ours = median(times)
        for name, what in [("plain loss", "the chunked loss over the plain one"),
                           ("nanoGPT-equivalent", "our step over a nanoGPT-equivalent one")]:
            if name in stats:
                print(f"speed-up of {what} (same process, alternating): "
                      f"{median([s[0] for s in stats[name]]) / ours:.3f}x")
    dt = median(times)
    peak, peak_source = (t.peak_flops, "given") if t.peak_flops else train.device_peak_flops(device, dtype)

    flops = model.flops_per_token() * tokens_per_iter / dt
    print(f"tokens/s: {tokens_per_iter / dt:,.0f}")
    print(f"ms/iter: {dt * 1000:.1f} (median of {len(times)}; mean {sum(times) / len(times) * 1000:.1f})")
    print(f"achieved: {flops / 1e9:,.1f} GFLOP/s (model FLOPs, {model.flops_per_token():,} per token)")
    print(f"peak: {peak / 1e9:,.1f} GFLOP/s ({peak_source})")
    print(f"MFU: {flops / peak * 100:.1f}%")
    if device_type == "cuda" and peak_source.endswith("datasheet"):  # what the card really does, alongside
        measured = train.measure_matmul_peak(device, dtype)
        print(f"MFU against the {dtype} matmul peak measured in this process ({measured / 1e12:,.0f} TFLOP/s, "
              f"8192^3): {flops / measured * 100:.1f}%")
    if device_type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB (torch.cuda.max_memory_allocated)")
    else:  # ru_maxrss is KiB on Linux, bytes on macOS
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        print(f"peak memory: {rss:,.0f} MiB (peak RSS of the process)")
    if use_compile:
        print(f"compile: {first - dt:.1f} s (first step {first:.1f} s minus a timed step)")
    return cfg


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ConfigError, train.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
