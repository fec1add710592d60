"""A fixed timestep list for every tile (diffusers' ``timesteps=`` argument): a walk that spends
its steps where they matter, e.g. a fine tail near the clean sample, which keeps the detail that a
last jump from a high timestep averages away."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.policy import Decision, StepObservation
from ..errors import ConfigError


def even_walk(first: int, steps: int) -> tuple[int, ...]:
    """``steps`` timesteps from ``first`` down, evenly spaced (diffusers' trailing spacing): exactly
    ``steps`` steps to the clean sample, where a uniform interval can only approximate the count
    (1000 / 45 steps: interval 23 takes 44). Equal to the interval walk where ``steps`` divides
    ``first + 1``."""
    if not 1 <= steps <= first + 1:
        raise ConfigError(f"{steps} steps do not fit between timestep {first} and the clean sample")
    span = first + 1
    return tuple(round(span - k * span / steps) - 1 for k in range(steps))


@dataclass(frozen=True)
class TimestepsPolicy:
    """Every tile visits ``timesteps`` (strictly decreasing, ending above or at 0), then the clean sample."""

    timesteps: tuple[int, ...]

    def __post_init__(self) -> None:
        ts = self.timesteps
        if not ts or any(a <= b for a, b in zip(ts, ts[1:])) or ts[-1] < 0:
            raise ConfigError(f"timesteps must be strictly decreasing and non-negative, got {ts}")

    @property
    def jumps(self) -> tuple[int, ...]:
        """The jump from each listed timestep: to the next one, the last to the clean sample."""
        ts = self.timesteps
        return tuple(a - b for a, b in zip(ts, ts[1:])) + (ts[-1] + 1,)

    @property
    def intervals(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.jumps)))

    def _index(self, t: Tensor) -> Tensor:
        """Interval index of the jump from each ``t`` (a listed timestep)."""
        table = torch.full((max(self.timesteps) + 1,), -1, dtype=torch.long)
        for step, jump in zip(self.timesteps, self.jumps, strict=True):
            table[step] = self.intervals.index(jump)
        index = table.to(t.device)[t.clamp(min=0, max=len(table) - 1)]
        if bool((index < 0).any()):
            raise ConfigError(f"the walk reached a timestep outside {self.timesteps}; start it at {self.timesteps[0]}")
        return index

    def jump_from(self, t: Tensor) -> Tensor:
        """The jump the walk takes from each ``t`` (a listed timestep)."""
        return torch.tensor(self.intervals, device=t.device)[self._index(t)]

    def initial(self, t: Tensor) -> Tensor:
        """The jump from each tile's start: a listed timestep (a later one for a tile of a
        patch-adaptive group), or a timestep above the walk, which joins it at its first."""
        return self._index(t.clamp(max=self.timesteps[0]))

    def __call__(self, obs: StepObservation) -> Decision:
        n = obs.t.shape[0]
        none = torch.zeros(n, dtype=torch.bool, device=obs.t.device)
        done = obs.t_next < 0  # reached the clean sample: no next jump to look up
        index = self._index(torch.where(done, torch.full_like(obs.t_next, self.timesteps[0]), obs.t_next))
        index = torch.where(done, torch.zeros_like(index), index)
        return Decision(interval_index=index, exit=none, keep=~none)
