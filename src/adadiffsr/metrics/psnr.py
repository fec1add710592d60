"""PSNR on the luma channel with a border crop, as super-resolution papers report it."""

from __future__ import annotations

import torch
from torch import Tensor


def rgb_to_y(image: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H, W)`` ITU-R BT.601 luma in ``[16/255, 235/255]``
    (MATLAB's ``rgb2ycbcr``, used by the SR literature)."""
    weights = torch.tensor([65.481, 128.553, 24.966], device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return ((image * weights).sum(1, keepdim=True) + 16.0) / 255.0


def psnr_y(output: Tensor, target: Tensor, border: int = 4) -> Tensor:
    """Per-image PSNR (dB) of the Y channel of 8-bit-rounded ``[0, 1]`` images, ``border`` pixels cropped."""
    def prep(x: Tensor) -> Tensor:
        y = rgb_to_y((x.clamp(0, 1) * 255).round() / 255)
        return y[..., border : y.shape[-2] - border, border : y.shape[-1] - border] if border else y

    mse = ((prep(output) - prep(target)) ** 2).mean((1, 2, 3))
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-12))
