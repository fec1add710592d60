"""GMSD (Xue et al., "Gradient magnitude similarity deviation", 2014). Lower is better.

As the authors' MATLAB code: luma ``0.299 R + 0.587 G + 0.114 B`` in ``[0, 255]``, 2x2 average and
2x decimation, Prewitt gradients with zero padding, ``T = 170``, deviation with ``N - 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.pixels import LUMA


def _gradient_magnitude(y: Tensor) -> Tensor:
    dx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=y.dtype, device=y.device) / 3
    kernels = torch.stack([dx, dx.T])[:, None]
    g = F.conv2d(y, kernels, padding=1)
    return (g**2).sum(1, keepdim=True).sqrt()


def gmsd(output: Tensor, target: Tensor, t: float = 170.0) -> Tensor:
    """Per-image GMSD of ``(B, 3, H, W)`` images in ``[0, 1]``."""
    weights = torch.tensor(LUMA, dtype=torch.float64, device=output.device).view(1, 3, 1, 1)

    def prep(x: Tensor) -> Tensor:
        y = ((x.clamp(0, 1) * 255).round().double() * weights).sum(1, keepdim=True)
        y = F.pad(y, (0, 1, 0, 1))  # MATLAB conv2 'same' with a 2x2 kernel looks right/down
        return F.avg_pool2d(y, 2, stride=1)[..., ::2, ::2]

    g1, g2 = _gradient_magnitude(prep(output)), _gradient_magnitude(prep(target))
    gms = (2 * g1 * g2 + t) / (g1**2 + g2**2 + t)
    return gms.flatten(1).std(1)
