"""Run an ncnn model (``.param`` + ``.bin``) from PyTorch tensors with the ``ncnn`` runtime from PyPI.

What a CPU user of Real-ESRGAN runs (the Real-ESRGAN-ncnn-vulkan family), here on the CPU
(Vulkan off). Tiled like the PyTorch path, so memory stays bounded on large images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..engine.tiling import apply_tiled
from ..errors import WeightsError


def ncnn_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ncnn") is not None


class NcnnNetwork:
    """``(1, 3, H, W)`` RGB in ``[0, 1]`` -> ``(1, 3, sH, sW)``, in ncnn on ``threads`` CPU threads."""

    name = "ncnn"
    devices: tuple[str, ...] = ("cpu",)  # the torch devices whose tensors it serves (Vulkan is off)

    def __init__(self, param: Path, weights: Path, scale: int = 4, threads: int | None = None) -> None:
        try:
            import ncnn
        except ImportError as e:
            raise WeightsError("the ncnn runtime is not installed: pip install ncnn") from e
        self.ncnn, self.scale = ncnn, scale
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads or torch.get_num_threads()
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise WeightsError(f"ncnn could not load {param} / {weights}")
        self.input_name, self.output_name = self.net.input_names()[0], self.net.output_names()[0]

    def _run(self, rgb: Tensor) -> Tensor:
        array = np.ascontiguousarray(rgb[0].float().cpu().numpy())  # kept alive: the Mat borrows its memory
        ex = self.net.create_extractor()
        ex.input(self.input_name, self.ncnn.Mat(array))
        _, out = ex.extract(self.output_name)
        return torch.from_numpy(np.array(out))[None]

    def __call__(self, rgb: Tensor, tile: int = 256, overlap: int = 16) -> Tensor:
        return apply_tiled(self._run, rgb, tile, overlap, self.scale).clamp(0, 1)
