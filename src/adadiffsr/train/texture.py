"""How much detail, not which: a texture loss that does not average stochastic detail away.

The teacher's DDPM walk draws fresh noise at every step, so the fine texture of its output is one
sample among many the same input allows. An L1 loss to that sample teaches its conditional median,
which in textured regions is smoother than any sample: the student learns the teacher's edges but
not its grain. This loss compares the *local amount* of fine detail instead (the RMS of the luma's
high frequencies over ``window`` x ``window`` pixels), which does not depend on the texture's phase:
the student is asked to draw as much detail as the teacher does, region by region, and no more (a
smooth sky in the target penalises grain in the student's output). Energies are compared as
logarithms, so faint grain over a smooth region counts as much as a difference on an edge (NIQE, too,
divides each pixel by its local contrast); ``FLOOR`` keeps detail below 8-bit quantisation noise out.

With ``levels`` above 1 the same comparison is also made at coarser scales (the image average-pooled
by 2, 4... with the window shrunk alike, so every level compares the same regions): on the held-out
photos the teacher's walk adds more of its detail at 2-4 pixel scales than at the finest one
(docs/benchmarks.md), which the 3x3 high-pass of the finest level hardly sees.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..core.pixels import luma

FLOOR = 2 / 255 / 12**0.5  # the RMS of 8-bit quantisation noise in [-1, 1] units (0.0023)
WINDOW = 16  # pixels per side of the windows whose detail is compared
MAX_LEVELS = WINDOW.bit_length() - 1  # levels before the window, halved at each, is under 2 pixels (4)


def detail_energy(image: Tensor, window: int = WINDOW) -> Tensor:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 1, H / window, W / window)``: the RMS of the luma minus
    its 3x3 mean, over each window (colour left out: chroma grain reads as noise, not detail)."""
    y = luma(image.float())
    high = y - F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return F.avg_pool2d(high.square(), window).add(1e-8).sqrt()


def log_detail(image: Tensor, window: int = WINDOW) -> Tensor:
    """``log(detail_energy + FLOOR)``: the local amount of detail on a relative scale."""
    return detail_energy(image, window).add(FLOOR).log()


def coarser(image: Tensor, level: int) -> Tensor:
    """``image`` average-pooled by ``2 ** level`` (level 0: itself)."""
    return F.avg_pool2d(image, 2**level) if level else image


def log_detail_at(image: Tensor, level: int, window: int = WINDOW) -> Tensor:
    """:func:`log_detail` at ``level``: the image pooled by ``2 ** level`` and the window by as much, so
    every level's windows cover the same regions (at least 2 pixels each)."""
    if level < 0 or window >> level < 2 or window % 2**level:
        raise ValueError(f"level {level} of a {window}-pixel window leaves no window to compare")
    return log_detail(coarser(image, level), window >> level)


def texture_loss(image: Tensor, target: Tensor, window: int = WINDOW, levels: int = 1) -> Tensor:
    """L1 between the two images' :func:`log_detail_at` levels ``0 .. levels - 1``, averaged."""
    if levels < 1:
        raise ValueError(f"the texture loss needs at least 1 level, got {levels}")
    return sum(F.l1_loss(log_detail_at(image, i, window), log_detail_at(target, i, window))
               for i in range(levels)) / levels


def detail_ratio(image: Tensor, target: Tensor, window: int = WINDOW, level: int = 0) -> Tensor:
    """The geometric mean over windows of ``image``'s detail over ``target``'s (1: as much detail), at
    ``level`` (:func:`log_detail_at`)."""
    return (log_detail_at(image, level, window) - log_detail_at(target, level, window)).mean().exp()
