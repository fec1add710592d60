"""Autocast for a compute dtype: what the refiner's and the prior's PyTorch calls run under."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` in ``dtype`` on ``device``; nothing at all for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
