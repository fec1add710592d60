"""The policy contract: after every step, each tile's next interval, or its early exit.

A policy is a pure function of what the sampler observed for the tiles that just stepped. It never
calls a network itself; gains (MMLE) are computed by the sampler's gain function and handed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


@dataclass(frozen=True)
class StepObservation:
    """What the sampler saw for the ``n`` tiles that just took a step."""

    tile: Tensor  # (n,) indices of these tiles in the grid
    t: Tensor  # (n,) timestep the step started from
    t_next: Tensor  # (n,) timestep reached; -1 means the tile reached the clean sample
    steps: Tensor  # (n,) steps taken so far, this one included
    gain: Tensor | None = None  # (n, G) information gain components, if a gain function is set
    gain_sum: Tensor | None = None  # (n, G) gains summed over the tile's steps, this one included
    best_sum: Tensor | None = None  # (n,) the NR gain sum when the tile's best state was kept
    late: Tensor | None = None  # (n,) bool: the NR gain counts at this step (t below the gain function's nr_start)


@dataclass(frozen=True)
class Decision:
    """The policy's answer for the same ``n`` tiles."""

    interval_index: Tensor  # (n,) long: which of the policy's ``intervals`` the next jump takes
    exit: Tensor  # (n,) bool, stop now and keep the tile's best state
    keep: Tensor  # (n,) bool, record this step's x0 as the tile's best state
    category: Tensor | None = None  # (n,) long, the policy's label for the step map and report


class Policy(Protocol):
    """Decides the pace of every tile. ``intervals`` is the set its indices refer to."""

    intervals: tuple[int, ...]

    def initial(self, t: Tensor) -> Tensor:
        """Interval indices ``(n,)`` for each tile's first jump, from its start timestep ``t (n,)``."""
        ...

    def __call__(self, obs: StepObservation) -> Decision:
        ...


@dataclass(frozen=True)
class TilePlan:
    """Patch-adaptive groups: where each tile starts, and which tiles the student takes."""

    start: Tensor  # (N,) first timestep per tile; -1: no step (the prior's estimate is the result)
    by_student: Tensor | None = None  # (N,) bool: one step of the distilled student from ``start`` instead


PlanFn = Callable[[Tensor], TilePlan]
"""``difficulty (N,) -> TilePlan``: each tile's start (and network) from its difficulty."""
