"""The information gain of eq. 1 and the performance function the sampler is handed to compute it.

    I_i = tanh(R_i - R_{i-1})        (eq. 1, per component: full-reference and no-reference)

``R`` (eq. 2) is measured by ``adadiffsr.gain`` (the exact metrics or the learned regressor); the
sampler only needs this contract and the tanh.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class PerformanceFn(Protocol):
    """The performance ``R`` of eq. 2 (FR and NR components) of the tiles that just stepped, from
    their estimates ``x0``, conditions and timesteps: ``(n, 2)``. The sampler keeps each tile's last
    ``R`` and turns them into the gain of eq. 1, the NR part only once ``t < nr_start``."""

    nr_start: float

    def __call__(self, x0: Tensor, cond: Tensor, t: Tensor) -> Tensor: ...


def information_gain(r_now: Tensor, r_prev: Tensor, t: Tensor, nr_start: float) -> Tensor:
    """Eq. 1 per component: ``tanh(R_i - R_{i-1})``; the NR gain is 0 until ``t < nr_start``
    (``GainConfig.nr_from`` times the number of training timesteps: the second half of the path)."""
    gain = torch.tanh(r_now - r_prev)
    early = t.to(gain.device) >= nr_start
    gain[:, 1] = torch.where(early, torch.zeros_like(gain[:, 1]), gain[:, 1])
    return gain
