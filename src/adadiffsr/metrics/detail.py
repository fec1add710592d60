"""Detail against the truth: how much of the ground truth's fine detail an output has, per scale.

At scale ``s`` pixels, the band is the luma blurred at ``sigma = s / 2`` minus the luma blurred at
``sigma = s`` (a difference of Gaussians: detail about ``s`` px across). Its energy (mean square) is
taken over non-overlapping ``16 s``-px windows, and the ratio output / truth is the geometric mean
over the windows where the truth's energy is above its 25th percentile (where the truth has
detail to keep). 1 keeps the truth's amount of detail; below 1 is smoother than the truth (blur,
painted texture), above 1 busier (invented texture, noise). An amount, not a position: texture
in the wrong place counts too, which is why it sits beside PSNR, not instead of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .psnr import rgb_to_y

SCALES: tuple[int, ...] = (1, 2, 4)  # the bench's detail_1, detail_2, detail_4
WINDOW = 16  # window side in units of the scale
PERCENTILE = 0.25  # windows where the truth's band energy is above this quantile are scored


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with reflect padding, radius ``ceil(3 sigma)``."""
    radius = max(1, math.ceil(3 * sigma))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def band_energy(luma: Tensor, scale: int) -> Tensor:
    """Mean square of the ``scale``-px band over ``16 scale``-px windows: ``(B, h, w)``."""
    band = gaussian_blur(luma, scale / 2) - gaussian_blur(luma, scale)
    return F.avg_pool2d(band**2, WINDOW * scale)[:, 0]


def detail_ratio(output: Tensor, target: Tensor, scale: int) -> Tensor:
    """Per image ``(B,)``: the geometric mean of output / truth band energy at ``scale`` px over the
    windows where the truth has detail. ``ValueError`` where the image is smaller than one window."""
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ in size")
    if min(output.shape[-2:]) < WINDOW * scale:
        raise ValueError(f"detail at {scale} px needs images of at least {WINDOW * scale} px a side")
    out = torch.empty(output.shape[0], dtype=torch.float64)
    e_out = band_energy(rgb_to_y(output.double().clamp(0, 1)), scale)
    e_true = band_energy(rgb_to_y(target.double().clamp(0, 1)), scale)
    tiny = 1e-12
    for i in range(output.shape[0]):
        truth = e_true[i].flatten()
        chosen = truth > torch.quantile(truth, PERCENTILE)
        if not bool(chosen.any()):
            chosen = truth >= truth.max()
        ratio = (e_out[i].flatten()[chosen] + tiny) / (truth[chosen] + tiny)
        out[i] = float(ratio.log().mean().exp())
    return out
