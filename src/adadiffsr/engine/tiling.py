"""The only tiling code: the grid of overlapping regions and their Gaussian-weighted fusion (3.4).

Boxes are given in low-resolution pixels; ``TileGrid.scaled`` maps them into the backbone's working
space (latent or pixel). Every tile has the same size, so tiles stack into batches; the last tile
of a row or column is aligned to the border instead of being cut short.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError


@dataclass(frozen=True)
class Box:
    """A rectangle ``[top, top + height) x [left, left + width)``."""

    top: int
    left: int
    height: int
    width: int

    def scaled(self, factor: int) -> Box:
        return Box(self.top * factor, self.left * factor, self.height * factor, self.width * factor)

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of overlapping windows of size ``min(tile, length)`` that cover ``[0, length)``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def balanced_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """As many windows as ``tile_starts`` over ``[0, length)``, but each only as long as they need to
    overlap by ``overlap``, spread evenly: ``(side, starts)``. A 320-pixel side in 256-pixel windows
    takes two of 168 (overlapping by 16) instead of two of 256 (by 192)."""
    count = len(tile_starts(length, tile, overlap))
    if count == 1:
        return min(tile, length), [0]
    side = min(tile, math.ceil((length + (count - 1) * overlap) / count))
    return side, [round(i * (length - side) / (count - 1)) for i in range(count)]


@dataclass(frozen=True)
class TileGrid:
    """Overlapping equal-sized tiles covering an ``height x width`` image."""

    height: int
    width: int
    boxes: tuple[Box, ...]

    @classmethod
    def build(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        if tile < 1:
            raise ConfigError(f"tile size must be positive, got {tile}")
        if not 0 <= overlap < tile:
            raise ConfigError(f"overlap must be in [0, tile) = [0, {tile}), got {overlap}")
        th, tw = min(tile, height), min(tile, width)
        boxes = tuple(
            Box(top, left, th, tw)
            for top in tile_starts(height, tile, overlap)
            for left in tile_starts(width, tile, overlap)
        )
        return cls(height, width, boxes)

    @classmethod
    def balanced(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        """``build``'s count of tiles, each cut to the side they need (``balanced_starts``): equal tiles
        no larger than ``tile`` with the least pixels in overlaps (what a whole-image network is run on)."""
        cls.build(height, width, tile, overlap)  # checks the sizes
        th, tops = balanced_starts(height, tile, overlap)
        tw, lefts = balanced_starts(width, tile, overlap)
        return cls(height, width, tuple(Box(top, left, th, tw) for top in tops for left in lefts))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.boxes[0].height, self.boxes[0].width

    def scaled(self, factor: int) -> TileGrid:
        return TileGrid(self.height * factor, self.width * factor, tuple(b.scaled(factor) for b in self.boxes))

    def crop(self, image: Tensor, indices: range | None = None) -> Tensor:
        """``(1, C, H, W) -> (N, C, h, w)``: the tiles of the image (all, or those of ``indices``)."""
        boxes = self.boxes if indices is None else [self.boxes[i] for i in indices]
        return torch.cat([image[(..., *box.slices())] for box in boxes])


def gaussian_weights(height: int, width: int, sigma: float = 0.25, device: torch.device | str = "cpu") -> Tensor:
    """A separable Gaussian bump ``(height, width)``, centred, std ``sigma`` times each side, max 1."""

    def bump(n: int) -> Tensor:
        x = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
        return torch.exp(-0.5 * (x / (sigma * n)) ** 2)

    return (bump(height)[:, None] * bump(width)[None, :]).float()


def weight_total(grid: TileGrid, sigma: float = 0.25, device: torch.device | str = "cpu") -> Tensor:
    """``(H, W)`` sum of every tile's Gaussian weight map: the normaliser of ``accumulate``."""
    if sigma <= 0 or not math.isfinite(sigma):
        raise ConfigError(f"fusion sigma must be positive, got {sigma}")
    weight = gaussian_weights(*grid.tile_shape, sigma=sigma, device=device)
    total = torch.zeros(grid.height, grid.width, device=device)
    for box in grid.boxes:
        total[box.slices()] += weight
    return total


def accumulate(canvas: Tensor, tiles: Tensor, boxes: list[Box], total: Tensor, sigma: float = 0.25,
               owner: Tensor | None = None, indices: list[int] | None = None) -> None:
    """Add ``(n, C, h, w)`` tiles at ``boxes`` into ``canvas (1, C, H, W)`` with normalised weights.

    Weights are normalised before the tiles are added, so a single tile covering the image comes
    back bit-exact and a constant stays constant across seams. Tiles can come in any groups.
    With ``owner`` (the ``dominant_tile`` map) and the tiles' grid ``indices``, each pixel is taken
    from the one tile that owns it instead: hard seams, the ablation of region integration.
    """
    if owner is not None:
        assert indices is not None, "hard stitching needs the tiles' grid indices"
        for tile, box, i in zip(tiles, boxes, indices, strict=True):
            canvas[(0, slice(None), *box.slices())] += (owner[box.slices()] == i).to(tiles.dtype) * tile
        return
    weight = gaussian_weights(tiles.shape[-2], tiles.shape[-1], sigma=sigma, device=tiles.device)
    for tile, box in zip(tiles, boxes, strict=True):
        canvas[(0, slice(None), *box.slices())] += (weight / total[box.slices()]).to(tiles.dtype) * tile


def fuse(tiles: Tensor, grid: TileGrid, sigma: float = 0.25) -> Tensor:
    """Region integration: ``(N, C, h, w)`` tiles -> ``(1, C, H, W)`` Gaussian-weighted average."""
    if tiles.shape[0] != len(grid):
        raise ValueError(f"{tiles.shape[0]} tiles for a grid of {len(grid)}")
    total = weight_total(grid, sigma, tiles.device)
    out = torch.zeros(1, tiles.shape[1], grid.height, grid.width, device=tiles.device, dtype=tiles.dtype)
    accumulate(out, tiles, list(grid.boxes), total, sigma)
    return out


def apply_tiled(network: Callable[[Tensor], Tensor], image: Tensor, tile: int, overlap: int, scale: int) -> Tensor:
    """A whole-image network (a prior) over a ``(1, C, H, W)`` image: in one call when it fits in
    ``tile``, else over overlapping tiles fused with Gaussian weights, so memory stays bounded; the
    tiles are cut to what they need (``TileGrid.balanced``: x4plus over a 320x240 input took 1.6x the
    pixels, and the time, in 256-pixel tiles)."""
    h, w = image.shape[-2:]
    if h <= tile and w <= tile:
        return network(image)
    grid = TileGrid.balanced(h, w, tile, overlap)
    tiles = torch.cat([network(t[None]) for t in grid.crop(image)])
    return fuse(tiles, grid.scaled(scale))


def dominant_tile(grid: TileGrid, sigma: float = 0.25) -> Tensor:
    """``(H, W)`` index of the tile with the largest fusion weight at each pixel (for step maps)."""
    weight = gaussian_weights(*grid.tile_shape, sigma=sigma)
    best = torch.full((grid.height, grid.width), -1.0)
    index = torch.zeros(grid.height, grid.width, dtype=torch.long)
    for i, box in enumerate(grid.boxes):
        region = best[box.slices()]
        better = weight > region
        region[better] = weight[better]
        index[box.slices()][better] = i
    return index
