"""The compact prior: an x4 network of the SRVGGNetCompact class, ours, distilled from Real-ESRGAN x4plus.

Plain 3x3 convolutions at the input's resolution with PReLU, one pixel shuffle to x4, and the
input's nearest-neighbour upsample added back (Real-ESRGAN's ``realesr-*`` compact networks and
SPAN have this shape). With 64 features and 16 body convolutions it has 0.62M parameters and
costs about 0.6M multiply-adds per input pixel, some 30x less than x4plus's RRDBNet: cheap enough
to run over the whole image, so that x4plus only runs where a region needs it
(``prior/routing.py``). Trained by ``adadiffsr train prior`` (``train/prior.py``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

ARCHITECTURE = "compact-prior"  # what the weights file's metadata names
DEFAULT_FILE = "compact-prior-x4.safetensors"  # the shipped one, in the repository's weights/


@dataclass(frozen=True)
class CompactPriorConfig:
    """Architecture of the compact prior; stored inside its weights file."""

    scale: int = 4
    num_feat: int = 64
    num_conv: int = 16  # body convolutions between the first and the last

    def __post_init__(self) -> None:
        if self.scale < 1 or self.num_feat < 1 or self.num_conv < 0:
            raise ConfigError(f"invalid compact prior config {self}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompactPriorConfig:
        return cls(**{k: int(v) for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CompactPrior(nn.Module):
    """RGB ``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 3, sH, sW)``: a residual over the nearest upsample."""

    def __init__(self, config: CompactPriorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or CompactPriorConfig()
        layers: list[nn.Module] = [nn.Conv2d(3, c.num_feat, 3, padding=1), nn.PReLU(c.num_feat)]
        for _ in range(c.num_conv):
            layers += [nn.Conv2d(c.num_feat, c.num_feat, 3, padding=1), nn.PReLU(c.num_feat)]
        layers += [nn.Conv2d(c.num_feat, 3 * c.scale**2, 3, padding=1), nn.PixelShuffle(c.scale)]
        self.body = nn.Sequential(*layers)
        # He initialisation for PReLU's slope: with PyTorch's default, the output of a plain stack of 18
        # convolutions hardly depends on its input (std 7e-8 between two random inputs) and training stayed
        # at the nearest upsample (a first run: the loss did not move in 1,500 steps); the last layer starts
        # small, so training starts near that upsample
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            convs[-1].weight.mul_(0.1)

    def forward(self, rgb: Tensor) -> Tensor:
        return self.body(rgb) + F.interpolate(rgb, scale_factor=self.config.scale, mode="nearest")


def default_file() -> Path:
    """The shipped compact prior: ``$ADADIFFSR_WEIGHTS_DIR`` or the repository's ``weights/``."""
    from ..weights import default_weights_path

    return default_weights_path().with_name(DEFAULT_FILE)


def load_compact_prior(path: str | os.PathLike[str] | None = None) -> CompactPrior:
    """A compact prior's weights file (the shipped one when ``path`` is None), on the CPU, in eval mode."""
    from ..weights import load_module

    return load_module(path or default_file(), ARCHITECTURE,
                       lambda config: CompactPrior(CompactPriorConfig.from_dict(config)),
                       retrain_hint=" (train one: adadiffsr train prior)")
