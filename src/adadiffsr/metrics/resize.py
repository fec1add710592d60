"""MATLAB's ``imresize`` (bicubic, antialiased when shrinking), which NIQE's reference uses.

Written as two resampling matrices, ``out = W_h @ image @ W_w^T``, with MATLAB's symmetric
boundary handling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _cubic(x: Tensor) -> Tensor:
    a = x.abs()
    return ((1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)) + ((-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> Tensor:
    """``(out_len, in_len)`` float64 weights of MATLAB bicubic resampling along one axis."""
    width = 4.0 / scale if scale < 1 and antialias else 4.0
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in input coordinates (1-based)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]  # 1-based input indices
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 and antialias else _cubic(dist)
    w = w / w.sum(1, keepdim=True)
    zero_based = idx.long() - 1
    mirrored = torch.where(zero_based < 0, -zero_based - 1, zero_based)  # symmetric padding
    mirrored = torch.where(mirrored >= in_len, 2 * in_len - mirrored - 1, mirrored)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, mirrored, w)
    return matrix


def imresize(image: Tensor, scale: float, antialias: bool = True) -> Tensor:
    """Resize the last two dims of ``image`` by ``scale`` as MATLAB does (output size rounded up)."""
    h, w = image.shape[-2:]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    wh = resize_matrix(h, oh, scale, antialias).to(image.device)
    ww = resize_matrix(w, ow, scale, antialias).to(image.device)
    return (wh.to(image.dtype) @ image @ ww.T.to(image.dtype))
