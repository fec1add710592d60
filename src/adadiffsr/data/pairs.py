"""Training pairs: random crops of ground-truth photos, flipped and rotated, then degraded.

Sample ``i`` depends only on ``(seed, i)``, so a run resumed at step ``s`` sees exactly the data it
would have seen without the interruption.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError
from .degradations import DEGRADATIONS, parse_mix


def load_rgb(path: Path) -> Tensor:
    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def make_lr(hr: Tensor, degradation: str, seed: int) -> Tensor:
    """The degradation named ``degradation`` (``DEGRADATIONS``) of ``hr``."""
    if degradation not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[degradation](hr, seed)


def random_crop(image: Tensor, rng: np.random.Generator, crop: int, scale: int = 4) -> Tensor:
    """A ``crop``-sided patch (a multiple of ``scale``, at most the image), flipped and rotated at random."""
    h, w = image.shape[-2:]
    c = min(crop, h, w) // scale * scale
    top, left = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
    hr = image[:, top : top + c, left : left + c]
    if rng.uniform() < 0.5:
        hr = hr.flip(-1)
    return torch.rot90(hr, int(rng.integers(4)), dims=(-2, -1)).contiguous()


class PairDataset(Dataset[tuple[Tensor, Tensor]]):
    """``(lr, hr)`` pairs in ``[0, 1]``: ``hr`` a ``crop x crop`` patch, ``lr`` its degraded ``1/scale``;
    ``degradation`` names one, or a mix (``realesrgan-x4:0.7,bicubic-x4:0.3``) drawn per sample."""

    def __init__(
        self, files: list[Path], crop: int = 256, scale: int = 4, degradation: str = "realesrgan-x4",
        seed: int = 0, length: int = 10**9,
    ) -> None:
        self.mix = parse_mix(degradation)  # one name, or NAME:WEIGHT,... drawn per sample (checked there)
        if scale != 4:
            raise ConfigError(f"the named degradations are x4; a x{scale} backbone needs its own")
        self.files, self.crop, self.scale, self.degradation = files, crop, scale, degradation
        self.seed, self.length = seed, length
        self._images: dict[int, Tensor] = {}  # loaded lazily, per worker

    def __len__(self) -> int:
        return self.length

    def image(self, index: int) -> Tensor:
        if index not in self._images:
            self._images[index] = load_rgb(self.files[index])
        return self._images[index]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, i])
        image = self.image(int(rng.integers(len(self.files))))
        hr = random_crop(image, rng, self.crop, self.scale)
        name = self.mix[0][0]
        if len(self.mix) > 1:  # a single degradation draws nothing more, so its samples stay as they were
            weights = np.array([w for _, w in self.mix])
            name = self.mix[int(rng.choice(len(self.mix), p=weights / weights.sum()))][0]
        return make_lr(hr, name, int(rng.integers(2**62))), hr
