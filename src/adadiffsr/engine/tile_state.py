"""What the sampling loop keeps per tile: where each is (``TileStates``), its gain bookkeeping
(``GainTracker``, eq. 1) and the best states a policy asked to keep (``BestStates``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.gain import information_gain


@dataclass
class GainTracker:
    """Each tile's gain bookkeeping (eq. 1): its last performance ``R``, its latest gain (what PFJ
    modulates with), the sum of its gains and the NR sum where its best state was kept."""

    r_prev: Tensor  # (N, 2)
    last: Tensor  # (N, 2)
    total: Tensor  # (N, 2)
    best_nr: Tensor  # (N,)

    @classmethod
    def start(cls, n: int, device: torch.device) -> GainTracker:
        return cls(*(torch.zeros(n, 2, device=device) for _ in range(3)), torch.zeros(n, device=device))

    def observe(self, chunk: Tensor, r: Tensor, t: Tensor, first: Tensor, nr_start: float) -> Tensor:
        """The gains of eq. 1 of ``chunk`` from their new performance ``r``; 0 at a tile's ``first`` step
        (where it has nothing to gain against)."""
        gain = information_gain(r, self.r_prev[chunk], t, nr_start)
        gain[first] = 0
        self.r_prev[chunk] = r
        self.total[chunk] += gain
        self.last[chunk] = gain
        return gain


@dataclass
class BestStates:
    """The estimate a policy asked to keep per tile (``Decision.keep``): what an early exit returns."""

    x0: Tensor | None = None  # (N, C, h, w), allocated when a policy first keeps a state
    kept: Tensor | None = None  # (N,) bool

    def keep(self, tiles: Tensor, x0: Tensor, n: int) -> None:
        if self.x0 is None or self.kept is None:
            self.x0 = torch.zeros((n, *x0.shape[1:]), dtype=x0.dtype, device=x0.device)
            self.kept = torch.zeros(n, dtype=torch.bool, device=x0.device)
        self.x0[tiles] = x0
        self.kept[tiles] = True

    def exit_states(self, tiles: Tensor, x0: Tensor) -> Tensor:
        """What tiles leaving early end with: their kept best, or this step's estimate without one."""
        if self.x0 is None or self.kept is None:
            return x0
        return torch.where(self.kept[tiles].view(-1, 1, 1, 1), self.x0[tiles], x0)


@dataclass
class TileStates:
    """Where every tile is: its state, timestep, next interval, and what it has spent."""

    x: Tensor  # (N, C, h, w) x_t of active tiles; the final state of finished ones
    t: Tensor  # (N,) current timestep; -1 once finished
    k_idx: Tensor  # (N,) interval index of the next jump
    active: Tensor  # (N,) bool
    steps: Tensor  # (N,) backbone evaluations so far
    exit_t: Tensor  # (N,) timestep where a tile stopped early; -1 where it ran to the end
    category: Tensor  # (N,) last category the policy gave (-1: none)
