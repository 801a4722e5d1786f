"""
Device set-up for training, sampling and the benchmarks: which device and precision, mixed precision through
autocast, the process group under torchrun, and the device's peak FLOP/s for MFU.
"""

import os
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist

# bf16/fp16 dense tensor-core peaks (no sparsity) from the datasheets, for MFU on GPUs
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10": 125e12, "L4": 121e12, "4090": 165e12,
             "3090": 71e12, "V100": 125e12, "T4": 65e12}


def resolve_device(device: str, dtype: str) -> tuple[str, str]:
    """'auto' device: cuda, else mps, else cpu. 'auto' dtype: bfloat16 on CUDA where supported, else float16
    there; float32 elsewhere (a CPU without native bf16 runs bf16 matmuls hundreds of times slower)."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if not {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}[kind] or \
            (index and int(index) >= torch.cuda.device_count()):
        raise ValueError(f"device={device} is not available to PyTorch on this machine; use --device=auto or cpu")
    if dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if kind == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return device, dtype


def device_type(device: str) -> str:
    return device.split(":")[0]


def autocast(device: str, dtype: str):
    """Mixed precision (weights stay fp32, matmuls run in bf16/fp16) unless dtype is float32."""
    return nullcontext() if dtype == "float32" else torch.autocast(device_type(device), getattr(torch, dtype))


def setup_training(device: str, backend: str = "") -> tuple[bool, int, int, str]:
    """TF32 on CUDA; under torchrun (RANK is set) join the process group, one GPU per process, nccl on CUDA and
    gloo elsewhere unless backend says otherwise. Returns (ddp, rank, world_size, device)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # for fp32 outside autocast
    if int(os.environ.get("RANK", -1)) == -1:
        return False, 0, 1, device
    dist.init_process_group(backend=backend or ("nccl" if device_type(device) == "cuda" else "gloo"))
    if device_type(device) == "cuda":
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    return True, dist.get_rank(), dist.get_world_size(), device


def measure_matmul_peak(device: str, dtype: str, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul on this device, in this process: the honest ceiling for MFU. 2048 fills
    a CPU's cores; a GPU needs 8192 to reach its tensor cores' rate. CPU training runs in fp32."""
    n, cuda = (8192, True) if device_type(device) == "cuda" else (2048, False)
    g = torch.Generator(device=device).manual_seed(0)  # its own RNG: a resumed run draws what the first did
    a, b = (torch.randn(n, n, device=device, dtype=getattr(torch, dtype if cuda else "float32"), generator=g)
            for _ in range(2))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b  # warm-up
    sync()
    best, t_end = 0.0, time.time() + seconds
    while time.time() < t_end:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def device_peak_flops(device: str, dtype: str) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from): the datasheet on known GPUs in bf16/fp16, else measured."""
    name = torch.cuda.get_device_name(device) if device_type(device) == "cuda" else ""
    for key, flops in GPU_PEAKS.items():
        if key in name and dtype != "float32":
            return flops, f"{name} datasheet"
    return measure_matmul_peak(device, dtype), "matmul measured in this process"
