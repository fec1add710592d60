"""PFJ: progressive feature injection (AdaDiffSR 3.4, eq. 3).

At every step the input's feature ``o`` (the backbone's condition) is modulated before it is fed
to the backbone, from the feature itself and the tile's current information gain ``I_i``:

    o_hat = alpha * o + beta,        alpha, beta = phi(o, I_i)

``phi`` is a small CNN, trained with the backbone frozen (``adadiffsr train pfj``). Its last layer
starts at zero, so an untrained PFJ is the identity (alpha = 1, beta = 0). ``strength`` (the
``--fidelity`` knob) scales the modulation: 0 feeds ``o`` unchanged (the backbone alone, the most
generative), 1 the trained injection (fidelity), values in between or above interpolate or
extrapolate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .weights import companion_path, load_module, save_module

ARCHITECTURE = "pfj"

InjectFn = Callable[[Tensor, Tensor], Tensor]
"""``(cond, gain (n, G)) -> cond_hat``: what the sampler applies to the condition before each call."""


@dataclass(frozen=True)
class PFJConfig:
    in_channels: int = 48  # channels of the backbone's condition
    gains: int = 2  # FR and NR information gain
    width: int = 32
    depth: int = 2  # 3x3 convolutions before the output layer (the receptive field grows by 2 px each)
    student: bool = False  # trained through the distilled student's one step: modulates the student's calls only


class FeatureInjection(nn.Module):
    """``phi(o, I) -> (alpha, beta)``, each shaped like ``o``."""

    def __init__(self, config: PFJConfig = PFJConfig()) -> None:
        super().__init__()
        self.config = config
        c, w = config.in_channels, config.width
        layers: list[nn.Module] = [nn.Conv2d(c + config.gains, w, 3, padding=1), nn.SiLU()]
        for _ in range(config.depth - 1):
            layers += [nn.Conv2d(w, w, 3, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(w, 2 * c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, o: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        maps = gain.to(o.dtype)[:, :, None, None].expand(-1, -1, *o.shape[-2:])
        scale, shift = self.out(self.body(torch.cat([o, maps], 1))).chunk(2, dim=1)
        return 1 + scale, shift

    def inject(self, o: Tensor, gain: Tensor, strength: float = 1.0) -> Tensor:
        """Eq. 3, with the modulation scaled by ``strength``."""
        alpha, beta = self(o, gain)
        return o + strength * ((alpha - 1) * o + beta)


def injector(model: FeatureInjection, strength: float) -> InjectFn:
    """The sampler's ``InjectFn`` for a trained PFJ at a fidelity strength."""

    @torch.no_grad()
    def inject(cond: Tensor, gain: Tensor) -> Tensor:
        return model.inject(cond.float(), gain.float(), strength).to(cond.dtype)

    return inject


def save_pfj(model: FeatureInjection, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    save_module(model, path, ARCHITECTURE, asdict(model.config), metadata)


def load_pfj(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> FeatureInjection:
    return load_module(path, ARCHITECTURE, lambda config: FeatureInjection(PFJConfig(**config)), device,
                       " (train one with `adadiffsr train pfj`)")


def pfj_path_for(backbone_weights: str | os.PathLike[str]) -> Path:
    """``weights/compact-x4.safetensors`` -> ``weights/compact-x4.pfj.safetensors``."""
    return companion_path(backbone_weights, "pfj")
