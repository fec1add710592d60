"""SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003) on the luma channel. Higher is better.

SSIM follows the reference used by SR papers (BasicSR / MATLAB): 11x11 Gaussian window of std 1.5,
valid filtering, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = 255``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .psnr import rgb_to_y

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float64) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _ssim_maps(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """SSIM map and contrast-structure map of ``(B, 1, H, W)`` images in ``[0, 255]``."""
    w = _window(dtype=x.dtype).to(x.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x**2
    syy = F.conv2d(y * y, w) - mu_y**2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs, cs


def _luma255(image: Tensor, border: int) -> Tensor:
    y = rgb_to_y((image.clamp(0, 1) * 255).round().double() / 255) * 255
    return y[..., border : y.shape[-2] - border, border : y.shape[-1] - border] if border else y


def ssim_y(output: Tensor, target: Tensor, border: int = 4) -> Tensor:
    """Per-image SSIM of the Y channel of ``(B, 3, H, W)`` images in ``[0, 1]``."""
    ssim_map, _ = _ssim_maps(_luma255(output, border), _luma255(target, border))
    return ssim_map.mean((1, 2, 3))


def ms_ssim_y(output: Tensor, target: Tensor, border: int = 4) -> Tensor:
    """Per-image MS-SSIM of the Y channel (5 scales); each side must be at least 176 pixels."""
    x, y = _luma255(output, border), _luma255(target, border)
    if min(x.shape[-2:]) < 11 * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM needs at least 176 pixels a side, got {tuple(x.shape[-2:])}")
    values = []
    for i in range(len(MS_SSIM_WEIGHTS)):
        ssim_map, cs = _ssim_maps(x, y)
        values.append((ssim_map if i == len(MS_SSIM_WEIGHTS) - 1 else cs).mean((1, 2, 3)).clamp(min=0))
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.prod(torch.stack(values, 1) ** weights, 1)
