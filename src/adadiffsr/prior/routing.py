"""The prior chosen per region: the compact prior everywhere, Real-ESRGAN x4plus only where it is needed.

PCSR (ECCV 2024) routes each region to an upsampler of the size it needs; PatchScaler reads each
region's difficulty off its restoration module's output. Here:

1. the compact prior (``prior/compact.py``, about 1/30 of x4plus's cost) runs over the whole image;
2. the image is cut into overlapping regions (``region`` input pixels, ``overlap`` between them) and
   each region's difficulty is the texture of the compact estimate over it (``tile_texture``);
3. regions at or above ``threshold`` take the full prior, the hardest first, at most ``share`` of
   them: a sky costs the compact prior alone, a forest at most ``share`` of x4plus;
4. the full prior's regions (one call per run of neighbouring chosen regions in a row, with ``margin``
   pixels of context, then cropped; one call over the whole image instead where the runs would add
   up to as many pixels, as rows of regions overlap) are fused into
   the compact estimate: ``out = compact + sum_i (w_i / W) (full_i - compact)``, where ``w_i`` is 1
   inside a region and falls to nearly 0 at its edges over the overlap (``ramp_weights``) and ``W``
   sums the weights of every region, so a boundary between the two blends over the overlap with no seam.

When every region is routed alike the result is exactly the single prior's output (the full prior
then runs over the whole image as it would alone).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine.prior_route import PriorEstimate, RegionRoute, ramp_weights
from ..engine.tiling import Box, TileGrid
from ..errors import ConfigError
from ..policies.groups import tile_texture

SIGNALS: tuple[str, ...] = ("estimate", "input")
ROUTED = "routed"  # the name of stage 1 chosen per region (UpscaleConfig.prior)
# the share of regions that may take the full prior, by device type. 1: every region at or above the
# threshold. On the 8 validation photos (realesrgan-x4) a cap below that cost more quality than time:
# the threshold decides (docs/benchmarks.md); GPUs are not measured yet, so they share the CPU's value
DEFAULT_SHARE: dict[str, float] = {"cpu": 1.0, "cuda": 1.0, "mps": 1.0}


def default_share(device_type: str) -> float:
    """The share of regions that may take the full prior on this kind of device."""
    return DEFAULT_SHARE.get(device_type, DEFAULT_SHARE["cpu"])


PriorFn = Callable[[Tensor], Tensor]
"""``(1, 3, H, W)`` in ``[-1, 1]`` -> ``(1, 3, sH, sW)`` in ``[-1, 1]``: a prior over a whole image or a region."""


@dataclass(frozen=True)
class PriorRouting:
    """How regions choose between the compact prior and the full one."""

    # at most this fraction of the regions take the full prior (0: the compact prior alone, 1: every region
    # at or above the threshold); None = the model's default for the device (``default_share``)
    prior_share: float | None = None
    # the difficulty (tile_texture of the compact estimate) from which a region takes the full prior: on the
    # 8 validation photos (realesrgan-x4) 0.010, the refiner's first group threshold, left most regions to the
    # compact prior (-0.42 dB PSNR-Y, NIQE +22% against x4plus everywhere); 0.005 gave -0.20 dB, NIQE -2.3%
    # at 0.58x the time (docs/benchmarks.md)
    prior_threshold: float = 0.005
    # what a region's difficulty is read off: "estimate" (the compact prior's output) or "input" (the bicubic
    # upsample of the input, noise and all, before any prior runs)
    prior_signal: str = "estimate"
    prior_region: int = 64  # region side, input pixels (as the refiner's tiles)
    prior_overlap: int = 8
    # input pixels of context around a region that the full prior also sees (then cropped away), so that its
    # output near the region's edges is what it would be over the whole image
    prior_margin: int = 4

    def __post_init__(self) -> None:
        if self.prior_share is not None and not 0 <= self.prior_share <= 1:
            raise ConfigError(f"prior share must be in [0, 1], got {self.prior_share}")
        if not (self.prior_threshold >= 0 and math.isfinite(self.prior_threshold)):
            raise ConfigError(f"prior threshold must be a non-negative number, got {self.prior_threshold}")
        if self.prior_signal not in SIGNALS:
            raise ConfigError(f"unknown prior signal {self.prior_signal!r}; choose one of {', '.join(SIGNALS)}")
        if self.prior_margin < 0:
            raise ConfigError(f"prior margin must be at least 0, got {self.prior_margin}")
        if not 0 <= self.prior_overlap < self.prior_region:
            raise ConfigError(f"prior regions must exceed their overlap, got region {self.prior_region}, "
                              f"overlap {self.prior_overlap}")


def choose_regions(difficulty: Tensor, share: float, threshold: float) -> Tensor:
    """``(R,)`` bool: the regions at or above ``threshold``, hardest first, at most ``floor(share * R)``
    of them (ties go to the earlier region)."""
    count = math.floor(share * difficulty.numel() + 1e-9)
    order = torch.argsort(difficulty.float(), descending=True, stable=True)
    chosen = torch.zeros(difficulty.numel(), dtype=torch.bool)
    chosen[order[:count]] = True
    return chosen & (difficulty.cpu() >= threshold)


def routed_prior(lr: Tensor, compact: PriorFn, full: PriorFn, routing: PriorRouting, share: float,
                 scale: int = 4) -> PriorEstimate:
    """The compact prior over ``lr`` (1, 3, H, W) in [-1, 1], the full one on the regions that need it
    (see the module docstring); ``share`` as resolved (``routing.prior_share`` or the model's default)."""
    h, w = lr.shape[-2:]
    t0 = time.perf_counter()
    base = compact(lr)
    seconds = {"prior_compact": time.perf_counter() - t0, "prior_full": 0.0}
    grid = TileGrid.build(h, w, routing.prior_region, routing.prior_overlap)
    hr_grid = grid.scaled(scale)
    difficulty = torch.cat([tile_texture(_signal(lr, base, grid, hr_grid, i, routing.prior_signal, scale))
                            for i in range(len(grid))])
    chosen = choose_regions(difficulty.cpu(), share, routing.prior_threshold)
    t0 = time.perf_counter()
    if bool(chosen.all()):  # exactly the full prior's output, as when it runs alone
        base = full(lr)
    elif bool(chosen.any()):
        ramp = routing.prior_overlap * scale
        total = torch.zeros(hr_grid.height, hr_grid.width, device=base.device)
        for hr_box in hr_grid.boxes:
            total[hr_box.slices()] += ramp_weights(hr_box, hr_grid, ramp, base.device)
        out = base.clone()
        runs = row_runs(grid, chosen)  # one call per run of neighbouring chosen regions in a row
        unions = [Box(grid.boxes[r[0]].top, grid.boxes[r[0]].left, grid.boxes[r[0]].height,
                      grid.boxes[r[-1]].left + grid.boxes[r[-1]].width - grid.boxes[r[0]].left) for r in runs]
        padded = [_with_margin(u, routing.prior_margin, h, w) for u in unions]
        # rows of regions overlap, so runs can add up to more pixels than the image: then one call over it all
        whole = full(lr) if sum(p.height * p.width for p in padded) >= h * w else None
        for run, union, pad in zip(runs, unions, padded, strict=True):
            if whole is not None:
                strip = whole[(..., *union.scaled(scale).slices())]
            else:
                dy, dx = (union.top - pad.top) * scale, (union.left - pad.left) * scale
                strip = full(lr[(..., *pad.slices())])[..., dy : dy + union.height * scale, dx : dx + union.width * scale]
            for i in run:
                hr_box = hr_grid.boxes[i]
                dx = hr_box.left - union.left * scale
                region = strip[..., dx : dx + hr_box.width]
                share_map = (ramp_weights(hr_box, hr_grid, ramp, base.device) / total[hr_box.slices()]).to(base.dtype)
                out[(..., *hr_box.slices())] += share_map * (region - base[(..., *hr_box.slices())])
        base = out.clamp(-1, 1)
    seconds["prior_full"] = time.perf_counter() - t0
    return PriorEstimate(base, RegionRoute(grid, chosen, difficulty.cpu(), routing.prior_overlap), seconds)


def _signal(lr: Tensor, estimate: Tensor, grid: TileGrid, hr_grid: TileGrid, i: int, signal: str, scale: int) -> Tensor:
    """Region ``i`` as the difficulty reads it: the compact estimate, or the input's bicubic upsample."""
    if signal == "estimate":
        return hr_grid.crop(estimate, range(i, i + 1)).clamp(-1, 1)
    up = F.interpolate(grid.crop(lr, range(i, i + 1)), scale_factor=scale, mode="bicubic", align_corners=False)
    return up.clamp(-1, 1)


def row_runs(grid: TileGrid, chosen: Tensor) -> list[list[int]]:
    """The chosen regions in runs of horizontal neighbours (same row, next in the grid's row-major
    order): the full prior runs once over each run's union, not once per region, so overlaps inside
    a run cost nothing."""
    runs: list[list[int]] = []
    for i in torch.nonzero(chosen).flatten().tolist():
        if runs and runs[-1][-1] == i - 1 and grid.boxes[i - 1].top == grid.boxes[i].top:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _with_margin(box: Box, margin: int, height: int, width: int) -> Box:
    """``box`` grown by up to ``margin`` pixels of context on each side, inside a ``height x width`` image."""
    top, left = max(0, box.top - margin), max(0, box.left - margin)
    return Box(top, left, min(height, box.top + box.height + margin) - top, min(width, box.left + box.width + margin) - left)
