"""
Device set-up for training, sampling and the benchmarks: which device and precision, mixed precision
through autocast, the process group under torchrun, the device's peak FLOP/s for MFU, and the random
states of every process, which a checkpoint keeps so that a resumed run draws what the first would.
"""

import importlib
import os
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist

# bf16/fp16 dense tensor-core peaks (no sparsity) from the datasheets, for MFU on GPUs
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10": 125e12, "L4": 121e12,
             "4090": 165e12, "3090": 71e12, "V100": 125e12, "T4": 65e12}


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 matmuls run about
    twice as fast as fp32 ones, where without it they are emulated, hundreds of times slower."""
    return any(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)()
               for name in ("avx512_bf16", "amx_tile"))


def resolve_device(device: str, dtype: str) -> tuple[str, str]:
    """'auto' device: cuda, else mps, else cpu. 'auto' dtype: bfloat16 on CUDA where supported, else
    float16 there; float32 elsewhere. bfloat16 asked of a CPU without native bf16 runs in float32,
    with a note: there float32 is faster than emulated bf16, and more precise."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if not {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}[kind] or \
            (index and int(index) >= torch.cuda.device_count()):
        raise ValueError(f"device={device} is not available to PyTorch on this machine; "
                         f"use --device=auto or cpu")
    if dtype == "auto" and kind == "cuda":
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    elif dtype == "auto":
        dtype = "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    if dtype == "bfloat16" and kind == "cpu" and not cpu_has_bf16():
        print("note: this CPU has no native bfloat16 (AVX512-BF16 or AMX): running in float32")
        dtype = "float32"
    return device, dtype


def device_type(device: str) -> str:
    return device.split(":")[0]


def autocast(device: str, dtype: str):
    """Mixed precision (weights stay fp32, matmuls run in bf16/fp16) unless dtype is float32."""
    if dtype == "float32":
        return nullcontext()
    return torch.autocast(device_type(device), getattr(torch, dtype))


def setup_training(device: str, backend: str = "") -> tuple[bool, int, int, str]:
    """TF32 on CUDA; under torchrun (RANK is set) join the process group, one GPU per process, nccl
    on CUDA and gloo elsewhere unless backend says otherwise.
    Returns (ddp, rank, world_size, device)."""
    # fp32 matmuls outside autocast run on the tensor cores
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if int(os.environ.get("RANK", -1)) == -1:
        return False, 0, 1, device
    cuda = device_type(device) == "cuda"
    # DDP and ZeRO-1 import these modules, whose functions take group.WORLD as a default argument:
    # imported once the group exists, they would keep it alive past destroy_process_group, and
    # gloo's threads would be torn down as Python exits instead, where a rank can abort (SIGABRT)
    for module in ("torch.distributed.nn", "torch.distributed.optim"):
        importlib.import_module(module)
    dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    if cuda:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    return True, dist.get_rank(), dist.get_world_size(), device


def measure_matmul_peak(device: str, dtype: str, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul on this device, in this process: the honest ceiling for MFU.
    2048 fills a CPU's cores; a GPU needs 8192 to reach its tensor cores' rate. A CPU's matmuls run in
    bf16 under bf16 autocast (resolve_device allows it only where native), else in fp32."""
    n, cuda = (8192, True) if device_type(device) == "cuda" else (2048, False)
    # its own RNG: a resumed run draws what the first did
    g = torch.Generator(device=device).manual_seed(0)
    kind = getattr(torch, dtype if cuda or dtype == "bfloat16" else "float32")
    a, b = (torch.randn(n, n, device=device, dtype=kind, generator=g) for _ in range(2))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # one product first, untimed: it allocates and warms the caches
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


def device_peak_flops(device: str, dtype: str, given: float = 0.0) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from): the figure given if it is not 0, else the datasheet
    on known GPUs in bf16/fp16, else measured."""
    if given:
        return given, "given"
    name = torch.cuda.get_device_name(device) if device_type(device) == "cuda" else ""
    for key, flops in GPU_PEAKS.items():
        if key in name and dtype != "float32":
            return flops, f"{name} datasheet"
    return measure_matmul_peak(device, dtype), "matmul measured in this process"


def random_states(sampler: torch.Generator, ddp: bool, world: int, cuda: bool) -> dict:
    """Every random state a run draws from, for its checkpoint: the batch sampler's, each process's
    torch state (its dropout masks) and the CUDA state. Under DDP every process must call this."""
    rng = dict(torch=[torch.get_rng_state()], sampler=sampler.get_state())
    if cuda:
        rng["cuda"] = [torch.cuda.get_rng_state()]
    if ddp:
        rng["torch"] = [None] * world
        dist.all_gather_object(rng["torch"], torch.get_rng_state())
    return rng


def set_random_states(rng: dict, sampler: torch.Generator, rank: int, cuda: bool):
    """Restore what random_states saved: each process takes its own torch state (a run with more
    processes than the saved one reuses them in turn)."""
    sampler.set_state(rng["sampler"])
    torch.set_rng_state(rng["torch"][rank % len(rng["torch"])])
    if cuda and rng.get("cuda"):
        torch.cuda.set_rng_state(rng["cuda"][rank % len(rng["cuda"])])


def any_process(flag: bool, ddp: bool, device: str) -> bool:
    """Whether the flag is set on any process, told to every process (all of them call this)."""
    if not ddp:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_rank0(value: float, device: str) -> float:
    """Rank 0's value of a number, on every process of the group."""
    t = torch.tensor(value, device=device)
    dist.broadcast(t, 0)
    return t.item()
