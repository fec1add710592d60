"""PIQE (Venkatanath et al., "Blind image quality evaluation using perception based features",
NCC 2015). Lower is better, 0-100.

Follows MATLAB's ``piqe`` as ported by the PyPI package ``pypiqe``: 16x16 blocks of the
mean-subtracted contrast-normalised gray image; a spatially active block (variance > 0.1) counts as
distorted when one of its edges holds a flat 6-pixel segment (noticeable artefact, weight
``1 - var``) or when its centre and surround deviations say noise (weight ``var``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK, WINDOW, THRESHOLD = 16, 6, 0.1


def _gray_u8(image: Tensor) -> Tensor:
    """OpenCV's fixed-point RGB -> gray of 8-bit values: ``(B, 3, H, W)`` in [0, 1] -> ``(B, H, W)``."""
    rgb = (image.clamp(0, 1) * 255).round().long()
    return ((rgb[:, 0] * 4899 + rgb[:, 1] * 9617 + rgb[:, 2] * 1868 + 8192) >> 14).double()


def _gaussian_blur(x: Tensor) -> Tensor:
    """OpenCV ``GaussianBlur`` 7x7, sigma 7/6, replicated borders, of ``(H, W)``."""
    ax = torch.arange(7, dtype=torch.float64) - 3
    g = torch.exp(-(ax**2) / (2 * (7 / 6) ** 2))
    g = (g / g.sum()).to(x.device)
    y = F.pad(x[None, None], (3, 3, 3, 3), mode="replicate")
    y = F.conv2d(y, g.view(1, 1, 1, 7))
    return F.conv2d(y, g.view(1, 1, 7, 1))[0, 0]


def _symmetric_pad_end(x: Tensor, ph: int, pw: int) -> Tensor:
    if ph:
        x = torch.cat([x, x[-ph:].flip(0)], 0)
    if pw:
        x = torch.cat([x, x[:, -pw:].flip(1)], 1)
    return x


def piqe_gray(gray: Tensor) -> float:
    """PIQE of one ``(H, W)`` gray image of 8-bit values."""
    h, w = gray.shape
    x = _symmetric_pad_end(gray, (-h) % BLOCK, (-w) % BLOCK)
    x = torch.round(255 * (x / x.max()))
    mu = _gaussian_blur(x)
    sigma = (_gaussian_blur(x * x) - mu * mu).abs().sqrt()
    norm = (x - mu) / (sigma + 1)
    nh, nw = norm.shape[0] // BLOCK, norm.shape[1] // BLOCK
    blocks = norm.reshape(nh, BLOCK, nw, BLOCK).permute(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
    var = blocks.flatten(1).var(1)
    active = var > THRESHOLD

    # noticeable artefacts: a flat 6-pixel segment on any of the four edges
    edges = torch.stack([blocks[:, 0, :], blocks[:, :, -1], blocks[:, -1, :], blocks[:, :, 0]], 1)  # (n, 4, 16)
    segments = edges.unfold(-1, WINDOW, 1)  # (n, 4, 11, 6)
    impaired = (segments.std(-1) < THRESHOLD).flatten(1).any(1)

    # noise: centre columns against the surround (MATLAB deletes column 8, then column 9 of the rest)
    centre = torch.cat([blocks[:, :, 7], blocks[:, :, 8]], 1)
    keep = [c for c in range(BLOCK) if c not in (7, 9)]
    surround = blocks[:, :, keep].flatten(1)
    ratio = centre.std(1) / surround.std(1)
    ratio = torch.nan_to_num(ratio, nan=0.0)
    block_sigma = var.sqrt()
    beta = (block_sigma - ratio).abs() / torch.maximum(block_sigma, ratio)
    noisy = block_sigma > 2 * beta

    scores = impaired.double() * (1 - var) + noisy.double() * var
    total = float((scores * active).sum())
    return (total + 1) / (1 + int(active.sum())) * 100


def piqe(image: Tensor) -> Tensor:
    """Per-image PIQE of ``(B, 3, H, W)`` RGB in ``[0, 1]``."""
    return torch.tensor([piqe_gray(g) for g in _gray_u8(image.cpu())], dtype=torch.float64)


