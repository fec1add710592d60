"""NLPD (Laparra et al., "Perceptual image quality assessment using a normalized Laplacian
pyramid", 2016). Lower is better.

Follows the authors' ``NLP_dist.m``: a 6-level Laplacian pyramid (Burt-Adelson 5-tap filter,
symmetric borders when reducing, replicated when expanding), each level divided by
``sigma + conv2(|L|, F2)`` with the published per-level filters, then the mean over levels of the
RMS difference. Computed on the luma channel in ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .psnr import rgb_to_y

LEVELS = 6
SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)
_CENTRES = (  # the 3x3 centres of the 5x5 divisive-normalisation filters, level by level
    ((0, 0.1011, 0), (0.1493, 0, 0.1460), (0, 0.1015, 0)),
    ((0, 0.0757, 0), (0.1986, 0, 0.1846), (0, 0.0837, 0)),
    ((0, 0.0477, 0), (0.2138, 0, 0.2243), (0, 0.0467, 0)),
    ((0, 0, 0), (0.2503, 0, 0.2616), (0, 0, 0)),
    ((0, 0, 0), (0.2598, 0, 0.2552), (0, 0, 0)),
    ((0, 0, 0), (0.2215, 0, 0.0717), (0, 0, 0)),
)


def _dn_filter(level: int, dtype: torch.dtype) -> Tensor:
    f = torch.zeros(5, 5, dtype=dtype)
    f[1:4, 1:4] = torch.tensor(_CENTRES[level], dtype=dtype)
    if level == 0:
        f[2, 4] = 0.0072  # the first level's filter reaches one pixel further right
    return f


def _burt_adelson(dtype: torch.dtype) -> Tensor:
    f = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=dtype)
    return (f[:, None] * f[None, :])[None, None]


def _symmetric_pad(x: Tensor, p: int) -> Tensor:
    """MATLAB's 'symmetric' padding (the border pixel is repeated)."""
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)


def _reduce(x: Tensor, k: Tensor) -> Tensor:
    return F.conv2d(_symmetric_pad(x, 2), k)[..., ::2, ::2]


def _expand(x: Tensor, odd: tuple[int, int], k: Tensor) -> Tensor:
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    up = torch.zeros(*x.shape[:-2], 2 * x.shape[-2], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    up[..., ::2, ::2] = 4 * x
    up = F.conv2d(F.pad(up, (2, 2, 2, 2)), k)  # imfilter's default: zero borders
    r, c = up.shape[-2:]
    return up[..., 2 : r - 2 - odd[0], 2 : c - 2 - odd[1]]


def laplacian_pyramid(y: Tensor) -> list[Tensor]:
    """``(B, 1, H, W)`` -> 6 band-pass levels, the last one the low-pass residual."""
    k = _burt_adelson(y.dtype).to(y.device)
    levels, current = [], y
    for _ in range(LEVELS - 1):
        low = _reduce(current, k)
        odd = (2 * low.shape[-2] - current.shape[-2], 2 * low.shape[-1] - current.shape[-1])
        levels.append(current - _expand(low, odd, k))
        current = low
    return [*levels, current]


def reconstruct(levels: list[Tensor]) -> Tensor:
    """Invert ``laplacian_pyramid`` (expand and add, coarse to fine)."""
    k = _burt_adelson(levels[0].dtype).to(levels[0].device)
    image = levels[-1]
    for band in reversed(levels[:-1]):
        odd = (2 * image.shape[-2] - band.shape[-2], 2 * image.shape[-1] - band.shape[-1])
        image = band + _expand(image, odd, k)
    return image


def normalized_laplacian(y: Tensor) -> list[Tensor]:
    """``(B, 1, H, W)`` luma in ``[0, 1]`` -> the 6 divisively normalised pyramid levels."""
    out = []
    for n, lap in enumerate(laplacian_pyramid(y)):
        f = _dn_filter(n, y.dtype).flip(0, 1)[None, None].to(y.device)  # conv2 flips the kernel
        a2 = F.conv2d(F.pad(lap.abs(), (2, 2, 2, 2)), f)
        out.append(lap / (SIGMAS[n] + a2))
    return out


def nlpd(output: Tensor, target: Tensor) -> Tensor:
    """Per-image NLPD of ``(B, 3, H, W)`` RGB in ``[0, 1]`` (luma, 8-bit rounded)."""
    def luma(x: Tensor) -> Tensor:
        return rgb_to_y((x.clamp(0, 1) * 255).round().double() / 255)

    a, b = normalized_laplacian(luma(output)), normalized_laplacian(luma(target))
    per_level = [((x - y) ** 2).mean((1, 2, 3)).sqrt() for x, y in zip(a, b, strict=True)]
    return torch.stack(per_level, 1).mean(1)
