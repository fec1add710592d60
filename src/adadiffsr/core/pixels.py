"""The one pixel-range convention: images are RGB in ``[0, 1]`` at the library's boundaries (files,
PIL, metrics, priors' own networks) and in ``[-1, 1]`` inside the diffusion engine and its backbones.
These two functions are the only place the conversion is written (diffusers' names). Luma, as the
engine reads an image's texture, is written here once too."""

from __future__ import annotations

import torch
from torch import Tensor


def normalize(rgb: Tensor) -> Tensor:
    """``[0, 1]`` -> ``[-1, 1]``."""
    return rgb * 2 - 1


def denormalize(x: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]``, not clamped (callers clamp where they quantise)."""
    return (x + 1) / 2


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights, as PSNR-Y and NIQE read an image


def luma(rgb: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)``: the BT.601 luma, in the input's range."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(1, keepdim=True)
