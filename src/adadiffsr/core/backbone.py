"""The backbone contract: what a diffusion SR model must declare and do for the engine.

A backbone never sees the sampler. Given a noisy working-space tile ``x_t``, per-sample timesteps
``t`` of shape ``(B,)`` and the condition computed once from the low-resolution tile, it returns
its raw prediction, whose kind (eps, v or x0) it declares. ``encode``/``decode`` map between
high-resolution pixels in ``[-1, 1]`` and its working space (a rearrangement or identity for a
pixel-space model, a VAE for a latent one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..core.schedule import NoiseSchedule, PredictionType


@dataclass(frozen=True)
class BackboneSpec:
    """What the engine needs to know about a backbone."""

    prediction_type: PredictionType
    scale_factor: int  # high-resolution pixels per low-resolution pixel (e.g. 4)
    latent_scale: int  # working-space pixels per low-resolution pixel (1 for LDM-SR x4)
    latent_channels: int  # channels of the working space
    tile_size: int  # native tile side in low-resolution pixels
    size_multiple: int  # low-resolution tile sides must be multiples of this
    clip_sample: bool  # clip x0 to [-1, 1] at every step (pixel-space models)
    schedule: NoiseSchedule
    default_strength: float = 1.0  # where sampling starts by default (1: pure noise at T - 1)
    # peak bytes of one tile evaluation per working-space element, where known (``--batch-tiles auto``
    # on a CPU); None: measured on a CUDA device, not guessed elsewhere
    bytes_per_element: int | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # the model's own UpscaleConfig defaults (sampler, steps, rule, ...)


class Backbone(nn.Module, ABC):
    """A conditional diffusion model behind the engine. Subclasses set ``self.spec``."""

    spec: BackboneSpec
    starts_from_estimate: bool = False  # ``estimate`` gives a starting point (strength < 1, zero steps)
    costly_reference: bool = False  # reference_feature runs a network (an encoder): worth caching
    prior: nn.Module | None = None  # stage 1: run once over the whole image, its output passed to ``condition``

    def prepare(self, lr: Tensor) -> Tensor:
        """The whole input ``(1, 3, H, W)`` in ``[-1, 1]``, once per image before it is cut into tiles
        (what must agree where tiles overlap, such as noise augmentation); as it is by default."""
        return lr

    @abstractmethod
    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        """``(B, 3, h, w)`` low-resolution pixels in ``[-1, 1]`` -> the condition, batch-first.
        ``estimate``: the prior's high-resolution output for these tiles, when there is a prior."""

    def estimate(self, cond: Tensor) -> Tensor | None:
        """The working-space estimate a tile starts from (noised to its start timestep) and ends
        with when it takes no step; None for backbones that start from pure noise only."""
        return None

    @abstractmethod
    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """``(B, C, h', w')`` noisy tile, ``(B,)`` timesteps, ``(B, ...)`` condition -> raw prediction."""

    def reference_feature(self, cond: Tensor) -> Tensor:
        """The input's feature ``o`` of eq. 2 in working space, from the condition. The default
        suits a condition that already lives in the working space (the compact backbone's)."""
        return cond

    @abstractmethod
    def encode(self, hr: Tensor) -> Tensor:
        """High-resolution pixels in ``[-1, 1]`` -> working space."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Working space -> high-resolution pixels in ``[-1, 1]``."""
