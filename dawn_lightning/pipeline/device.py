"""Where and in which precision the pipeline runs."""

from __future__ import annotations

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features that run bf16 matrix products natively


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the first CUDA device if there is one, else the CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested, but CUDA is not available (use device=cpu)")
    return device


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 matrices natively (AMX or AVX512-BF16, from /proc/cpuinfo's flags):
    elsewhere bf16 is emulated and slower than fp32."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: bf16 on a CUDA device that supports it and on a CPU with native bf16, fp32 elsewhere."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
