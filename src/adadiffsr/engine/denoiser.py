"""The model the sampling loop calls: one object whatever networks are behind it.

As k-diffusion's ``external.py`` wraps a network so that its samplers see one ``model(x, sigma)``,
``Denoiser`` holds the backbone and, where a plan routes tiles to it, the distilled student, and
beside it the student made for the compact prior's estimate (taken by the student's tiles whose
estimate came from the compact prior): the loop asks for the prediction of a batch of tiles and the
denoiser answers with the network each tile was given (all share the backbone's condition and
working space).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.backbone import Backbone, BackboneSpec
from ..errors import ConfigError

BACKBONE, STUDENT, COMPACT_STUDENT = 0, 1, 2  # ``Denoiser.networks``: which network a tile takes


@dataclass(frozen=True)
class Denoiser:
    backbone: Backbone
    student: Backbone | None = None  # a distilled refiner with the backbone's condition
    by_student: Tensor | None = None  # (N,) bool over the run's tiles: one step of the student from their start
    # the student distilled on the compact prior's estimate (``NAME.compact-student.safetensors``), and the
    # tiles whose estimate is the compact prior's (N,) bool: those of ``by_student`` take it instead
    compact_student: Backbone | None = None
    on_compact: Tensor | None = None

    def __post_init__(self) -> None:
        if self.by_student is not None and self.student is None and bool(self.by_student.any()):
            raise ConfigError("tiles were routed to the student, but no student was given")

    @property
    def spec(self) -> BackboneSpec:
        return self.backbone.spec

    def networks(self, n: int, device: torch.device) -> Tensor:
        """``(N,)`` long: the network each tile takes (``BACKBONE``, ``STUDENT`` or ``COMPACT_STUDENT``)."""
        chosen = torch.zeros(n, dtype=torch.long, device=device)
        if self.by_student is None or self.student is None:
            return chosen
        by_student = self.by_student.to(device)
        chosen[by_student] = STUDENT
        if self.compact_student is not None and self.on_compact is not None:
            chosen[by_student & self.on_compact.to(device)] = COMPACT_STUDENT
        return chosen

    def __call__(self, x: Tensor, t: Tensor, c: Tensor, network: Tensor) -> Tensor:
        """The prediction for a batch (float32), each sample by its ``network`` (``networks``)."""
        models = {BACKBONE: self.backbone, STUDENT: self.student, COMPACT_STUDENT: self.compact_student}
        kinds = network.unique().tolist()
        if len(kinds) == 1:
            return models[kinds[0]].predict(x, t, c).float()  # type: ignore[union-attr]
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        for kind in kinds:
            mask = network == kind
            out[mask] = models[kind].predict(x[mask], t[mask], c[mask]).float()  # type: ignore[union-attr]
        return out
