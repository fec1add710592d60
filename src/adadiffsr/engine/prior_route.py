"""What stage 1 hands the pipeline: the prior's estimate, and which prior ran where when it was routed.

The routing itself (the compact prior everywhere, the full one on the regions that need it) is
``prior/routing.py``; this is the value it returns, which the pipeline, the report and the step
map read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .tiling import TileGrid, gaussian_weights, weight_total


@dataclass(frozen=True)
class RegionRoute:
    """Which prior each region took: ``full[i]`` for region ``grid.boxes[i]`` (input pixels)."""

    grid: TileGrid
    full: Tensor  # (R,) bool: the regions that took the full prior
    difficulty: Tensor  # (R,) each region's difficulty on the compact estimate

    def full_map(self) -> Tensor:
        """``(H, W)`` in input pixels: the full prior's weight in the fused estimate (0 to 1)."""
        mix = torch.zeros(self.grid.height, self.grid.width)
        total = weight_total(self.grid)
        weight = gaussian_weights(*self.grid.tile_shape)
        for box, chosen in zip(self.grid.boxes, self.full.tolist(), strict=True):
            if chosen:
                mix[box.slices()] += weight / total[box.slices()]
        return mix

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
