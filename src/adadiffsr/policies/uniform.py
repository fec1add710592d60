"""Uniform sampling: every tile jumps by the same interval and runs to the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.policy import Decision, StepObservation
from ..errors import ConfigError


@dataclass(frozen=True)
class UniformPolicy:
    """Fixed interval ``k`` for every tile: ``ceil(T / k)`` steps from ``T - 1`` down to the clean sample."""

    interval: int = 20

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ConfigError(f"interval must be at least 1, got {self.interval}")

    @property
    def intervals(self) -> tuple[int, ...]:
        return (self.interval,)

    def initial(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t, dtype=torch.long)

    def __call__(self, obs: StepObservation) -> Decision:
        n = obs.t.shape[0]
        none = torch.zeros(n, dtype=torch.bool, device=obs.t.device)
        return Decision(interval_index=torch.zeros(n, dtype=torch.long, device=obs.t.device), exit=none, keep=~none)
