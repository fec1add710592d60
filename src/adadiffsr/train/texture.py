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
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..core.pixels import luma

FLOOR = 2 / 255 / 12**0.5  # the RMS of 8-bit quantisation noise in [-1, 1] units (0.0023)


def detail_energy(image: Tensor, window: int = 16) -> Tensor:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 1, H / window, W / window)``: the RMS of the luma minus
    its 3x3 mean, over each window (colour left out: chroma grain reads as noise, not detail)."""
    y = luma(image.float())
    high = y - F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return F.avg_pool2d(high.square(), window).add(1e-8).sqrt()


def log_detail(image: Tensor, window: int = 16) -> Tensor:
    """``log(detail_energy + FLOOR)``: the local amount of detail on a relative scale."""
    return detail_energy(image, window).add(FLOOR).log()


def texture_loss(image: Tensor, target: Tensor, window: int = 16) -> Tensor:
    """L1 between the two images' :func:`log_detail`."""
    return F.l1_loss(log_detail(image, window), log_detail(target, window))


def detail_ratio(image: Tensor, target: Tensor, window: int = 16) -> Tensor:
    """The geometric mean over windows of ``image``'s detail over ``target``'s (1: as much detail)."""
    return (log_detail(image, window) - log_detail(target, window)).mean().exp()
