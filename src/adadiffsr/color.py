"""Colour correction of the output against the input, as StableSR offers it (``--color-fix``).

``adain`` matches each channel's mean and standard deviation to the bicubic upsample of the input;
``wavelet`` keeps the output's high frequencies and takes the low frequencies from the upsample.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

ColorFix = Literal["none", "wavelet", "adain"]
COLOR_FIXES: tuple[str, ...] = ("none", "wavelet", "adain")


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-channel mean/std of ``style`` on ``content``; both ``(B, C, H, W)``."""
    c_mean, c_std = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True)
    s_mean, s_std = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True)
    return (content - c_mean) / (c_std + eps) * s_std + s_mean


def wavelet_blur(image: Tensor, radius: int) -> Tensor:
    """One level of the a-trous wavelet: a 3x3 binomial blur dilated by ``radius``."""
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=image.dtype, device=image.device) / 16
    c = image.shape[1]
    padded = F.pad(image, (radius,) * 4, mode="replicate")
    return F.conv2d(padded, k.expand(c, 1, 3, 3), groups=c, dilation=radius)


def low_frequency(image: Tensor, levels: int = 5) -> Tensor:
    """The residual low-pass after ``levels`` wavelet levels (dilations 1, 2, 4, ...)."""
    for i in range(levels):
        image = wavelet_blur(image, 2**i)
    return image


def wavelet_fix(content: Tensor, style: Tensor, levels: int = 5) -> Tensor:
    """High frequencies of ``content`` plus low frequencies of ``style``."""
    return content - low_frequency(content, levels) + low_frequency(style, levels)


def apply_color_fix(kind: str, output: Tensor, lr: Tensor) -> Tensor:
    """Correct ``output (B, 3, sH, sW)`` against ``lr (B, 3, H, W)``; values in ``[-1, 1]``."""
    if kind == "none":
        return output
    reference = F.interpolate(lr, size=output.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    if kind == "adain":
        return adain(output, reference).clamp(-1, 1)
    if kind == "wavelet":
        return wavelet_fix(output, reference).clamp(-1, 1)
    raise ConfigError(f"unknown color fix {kind!r}; choose one of {', '.join(COLOR_FIXES)}")
