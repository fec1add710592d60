"""Where the networks run and in what precision: device and dtype names as users give them."""

from __future__ import annotations

import torch

from .errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_CHOICES: tuple[str, ...] = ("auto", *DTYPES)  # auto: bf16 where measured faster at equal quality (auto_dtype)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str, mps: bool = True) -> torch.device:
    """A device name as users give it; ``auto``: CUDA, else MPS (unless ``mps=False``: training, which is
    not measured there), else the CPU."""
    if name.startswith("cuda:") and name[5:].isdigit():  # one GPU of several (a rank of a launcher)
        if not torch.cuda.is_available() or int(name[5:]) >= torch.cuda.device_count():
            raise ConfigError(f"device {name} asked for, but this PyTorch sees {torch.cuda.device_count()} CUDA devices")
        return torch.device(name)
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but this PyTorch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps asked for, but MPS is not available here")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}"
                          + (" (auto is resolved by Upscaler.from_pretrained)" if name == "auto" else ""))
    return DTYPES[name]


def training_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` for training: bf16 where the device runs it natively (CUDA, a CPU with AMX- or AVX512-BF16),
    else fp32 (inference's rule, ``api.auto_dtype``, also asks which backbone and runtime run)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" or (device.type == "cpu" and cpu_runs_bf16()) else torch.float32
    return resolve_dtype(name)


def cpu_runs_bf16() -> bool:
    """Does this CPU have bf16 instructions: AMX-BF16 (Intel) or AVX512-BF16 (Intel, AMD Zen 4 on)?
    Where it has neither, oneDNN emulates bf16 and autocast is slower than fp32. Measured with 2
    threads: an Intel CPU with AMX ran the default upscale 2.4-2.9x faster in bf16; an AMD EPYC with
    AVX512-BF16 and no AMX ran the prior 1.44x faster than ncnn's fp32 (a 160x200 input: 3.46 vs
    4.99 s) and the refiner 1.8x faster (42 vs 76 ms per 64 px tile, batches of 8)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # a PyTorch without the probes: assume not
        return False
