"""The model the sampling loop calls: one object whatever networks are behind it.

As k-diffusion's ``external.py`` wraps a network so that its samplers see one ``model(x, sigma)``,
``Denoiser`` holds the backbone and, where a plan routes tiles to it, the distilled student: the loop
asks for the prediction of a batch of tiles and the denoiser answers with the network each tile was
given (both share the backbone's condition and working space).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.backbone import Backbone, BackboneSpec
from ..errors import ConfigError


@dataclass(frozen=True)
class Denoiser:
    backbone: Backbone
    student: Backbone | None = None  # a distilled refiner with the backbone's condition
    by_student: Tensor | None = None  # (N,) bool over the run's tiles: one step of the student from their start

    def __post_init__(self) -> None:
        if self.by_student is not None and self.student is None and bool(self.by_student.any()):
            raise ConfigError("tiles were routed to the student, but no student was given")

    @property
    def spec(self) -> BackboneSpec:
        return self.backbone.spec

    def routed(self, n: int, device: torch.device) -> Tensor:
        """``(N,)`` bool: the tiles the student takes."""
        if self.by_student is None or self.student is None:
            return torch.zeros(n, dtype=torch.bool, device=device)
        return self.by_student.to(device)

    def __call__(self, x: Tensor, t: Tensor, c: Tensor, routed: Tensor) -> Tensor:
        """The prediction for a batch (float32): the backbone's, the student's for its ``routed`` samples."""
        if self.student is None or not bool(routed.any()):
            return self.backbone.predict(x, t, c).float()
        if bool(routed.all()):
            return self.student.predict(x, t, c).float()
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        out[~routed] = self.backbone.predict(x[~routed], t[~routed], c[~routed]).float()
        out[routed] = self.student.predict(x[routed], t[routed], c[routed]).float()
        return out
