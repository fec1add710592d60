"""DTSS along a fixed walk: the grouped policy's starts, then each tile's pace and exit from its gain.

The patch-adaptive groups (``groups.py``) decide before any step where a tile joins the walk. Along
the walk, DTSS (``dtss.py``, AdaDiffSR 3.3) then decides from each step's information gain:

- *growing* (information still arrives: ``activity`` above ``tau``): the walk's next timestep;
- *stable*: the largest jump there is, straight to the clean sample (one step and done);
- *saturated* (the NR performance fell more than ``drop`` below its best): exit with the best state.

The first step's gain is measured against the estimate the tile started from (the sampler's
``first_gain="estimate"``), so a tile can be judged after its first step. Gains are taken per
timestep (in units of the walk's longest jump), as DTSS does, so one threshold means the same after a
long jump and a short one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from ..core.policy import Decision, StepObservation
from ..errors import ConfigError
from .dtss import GROWING, SATURATED, FRChange, classify, gain_rate
from .timesteps import TimestepsPolicy


@dataclass(frozen=True)
class WalkDTSSPolicy:
    """``timesteps`` as the walk; DTSS's ``tau``, ``drop`` and ``fr_change`` for the pace along it."""

    timesteps: tuple[int, ...]
    tau: float = 0.02
    drop: float = 0.05
    fr_change: FRChange = "any"

    def __post_init__(self) -> None:
        _ = self.walk  # checks the walk
        if self.tau < 0 or self.drop < 0:
            raise ConfigError("tau and drop must not be negative")

    @cached_property
    def walk(self) -> TimestepsPolicy:
        """The fixed walk (made once: the policy is called at every step)."""
        return TimestepsPolicy(self.timesteps)

    @cached_property
    def intervals(self) -> tuple[int, ...]:
        """The walk's jumps, and from each of its timesteps the jump to the clean sample (``t + 1``)."""
        return tuple(sorted(set(self.walk.jumps) | {t + 1 for t in self.timesteps}))

    def _index(self, jump: Tensor) -> Tensor:
        table = torch.tensor(self.intervals, device=jump.device)
        return (table[None, :] == jump[:, None]).long().argmax(1)

    def initial(self, t: Tensor) -> Tensor:
        """The walk's jump from each tile's start (a walk timestep; above the walk joins it at its first)."""
        return self._index(self.walk.jump_from(t.clamp(max=self.timesteps[0])))

    def __call__(self, obs: StepObservation) -> Decision:
        if obs.gain is None or obs.gain_sum is None or obs.best_sum is None or obs.late is None:
            raise ConfigError("the grouped-dtss policy needs a gain function (gain learned or exact)")
        longest = max(self.walk.jumps)
        gain = gain_rate(obs.gain, obs.t, obs.t_next, longest)
        category = classify(gain, obs.gain_sum, obs.best_sum, obs.late, self.tau, self.drop, self.fr_change)
        done = obs.t_next < 0
        t_next = torch.where(done, torch.full_like(obs.t_next, self.timesteps[-1]), obs.t_next)
        jump = torch.where(category == GROWING, self.walk.jump_from(t_next), t_next + 1)  # stable: straight to clean
        return Decision(
            interval_index=torch.where(done, torch.zeros_like(t_next), self._index(jump)),
            exit=category == SATURATED,
            keep=obs.gain_sum[:, 1] >= obs.best_sum,  # the starting estimate is the best until a step beats it
            category=category,
        )
