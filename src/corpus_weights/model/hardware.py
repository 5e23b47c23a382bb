"""What the machine is: CPU name and flags, whether bf16 matmul is native, and the matmul peak measured on it.

One place for /proc/cpuinfo, so the trainer (dtype choice, MFU) and the benchmarks read the same facts.
"""
from __future__ import annotations

import statistics
import time

import torch

__all__ = ["cpu_flags", "cpu_name", "native_bf16_flags", "matmul_peak_tflops", "time_matmul"]


def _cpuinfo_field(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is unavailable)."""
    return set((_cpuinfo_field("flags") or "").split())


def cpu_name() -> str:
    return _cpuinfo_field("model name") or "cpu"


def native_bf16_flags() -> set[str]:
    """The flags that give native bf16 matmul on a CPU (AMX or AVX-512 BF16); empty: bf16 is emulated, slow."""
    return {"amx_bf16", "avx512_bf16"} & cpu_flags()


def time_matmul(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Achieved TFLOP/s of an n x n matmul (median of reps, after one warm-up)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """The matmul rate MFU is quoted against: measured here, never assumed from a data sheet."""
    if n is None:
        n = 8192 if device.type == "cuda" else 512
    return time_matmul(device, dtype, n, reps)
