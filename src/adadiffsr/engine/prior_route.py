"""What stage 1 hands the pipeline: the prior's estimate, and which prior ran where when it was routed.

The routing itself (the compact prior everywhere, the full one on the regions that need it) is
``prior/routing.py``; this is the value it returns, which the pipeline, the report and the step
map read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .tiling import Box, TileGrid


@dataclass(frozen=True)
class RegionRoute:
    """Which prior each region took: ``full[i]`` for region ``grid.boxes[i]`` (input pixels)."""

    grid: TileGrid
    full: Tensor  # (R,) bool: the regions that took the full prior
    difficulty: Tensor  # (R,) each region's difficulty on the compact estimate
    ramp: int = 0  # input pixels over which a region's blend weight rises from its edges (the regions' overlap)

    def full_map(self) -> Tensor:
        """``(H, W)`` in input pixels: the full prior's weight in the fused estimate (0 to 1), with the
        blend's own weights (``ramp_weights``)."""
        total = torch.zeros(self.grid.height, self.grid.width)
        for box in self.grid.boxes:
            total[box.slices()] += ramp_weights(box, self.grid, self.ramp)
        mix = torch.zeros_like(total)
        for box, chosen in zip(self.grid.boxes, self.full.tolist(), strict=True):
            if chosen:
                mix[box.slices()] += ramp_weights(box, self.grid, self.ramp) / total[box.slices()]
        return mix

    def on_compact(self, grid: TileGrid) -> Tensor:
        """``(N,)`` bool for each tile of ``grid``: is most of its estimate the compact prior's?"""
        return self.full_fraction(grid) < 0.5

    def full_fraction(self, grid: TileGrid) -> Tensor:
        """``(N,)`` for each tile of ``grid`` (input pixels, possibly over a padded input): the mean
        weight of the full prior over the part of the tile inside the image."""
        mix = self.full_map()
        return torch.stack([mix[box.slices()].mean() if box.top < mix.shape[0] and box.left < mix.shape[1]
                            else torch.tensor(0.0) for box in grid.boxes])


@dataclass
class PriorEstimate:
    """The prior's output for one image."""

    estimate: Tensor  # (1, 3, sH, sW) in [-1, 1]
    route: RegionRoute | None = None  # None: one prior over the whole image
    seconds: dict[str, float] = field(default_factory=dict)  # e.g. prior_compact, prior_full
    compact: bool = False  # the compact prior's over the whole image (the backbone's own prior's: False)


def ramp_weights(box: Box, grid: TileGrid, ramp: int, device: torch.device | str = "cpu") -> Tensor:
    """``(h, w)`` weight of a region: 1 inside, rising as sin^2 over ``ramp`` pixels from each side that
    lies inside the image (a side on the image's border stays at 1), never 0, so the weights of two
    overlapping regions cross over smoothly and the full prior's share fades to nothing at a region's edge."""

    def axis(start: int, length: int, size: int) -> Tensor:
        d = torch.arange(length, dtype=torch.float64, device=device)
        w = torch.ones(length, dtype=torch.float64, device=device)
        if ramp > 0 and start > 0:
            w = w * torch.where(d < ramp, torch.sin(torch.pi / 2 * (d + 0.5) / ramp) ** 2, 1.0)
        if ramp > 0 and start + length < size:
            e = length - 1 - d
            w = w * torch.where(e < ramp, torch.sin(torch.pi / 2 * (e + 0.5) / ramp) ** 2, 1.0)
        return w

    return (axis(box.top, box.height, grid.height)[:, None] * axis(box.left, box.width, grid.width)[None, :]).float()
