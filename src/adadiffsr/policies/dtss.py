"""DTSS: the dynamic timesteps sampling strategy (AdaDiffSR 3.3), as a pure function of the gains.

Each step every tile is put in one of three categories from its information gain (MMLE):

- *growing*: information still arrives (the NR gain above ``tau`` in the second half of the path,
  where NR measures are meaningful; the FR gain above ``tau`` before): a small interval, the
  smaller the stronger the gain (above ``tau``, ``2 tau``, ``4 tau``: one, two, three intervals
  below the largest). With ``fr_change="any"`` an FR gain of either sign counts, in both halves:
  for backbones that move *away* from the input's feature as they draw detail;
- *stable*: nothing much changes: the largest interval;
- *saturated*: the NR performance fell more than ``drop`` below the best it reached (the sum of
  NR gains since the start, a smoothed form of the paper's "NR metrics significantly declined"):
  exit early with the best state seen.

The category is re-evaluated every step, so a tile can change pace. The best state is the estimate
at the highest cumulative NR gain so far.

A gain over a short jump is smaller than one over a long jump, so the thresholds apply to the gain
*per timestep*, in units of the largest interval (``rate``): the gain of a jump of ``k`` timesteps
is scaled by ``max(intervals) / k``. Without it, a tile that slowed down for growing would look
stable at its next step and speed up again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..core.policy import Decision, StepObservation
from ..errors import ConfigError

FRChange = Literal["rise", "any"]
FR_CHANGES: tuple[str, ...] = get_args(FRChange)
GROWING, STABLE, SATURATED = 0, 1, 2
CATEGORY_NAMES = ("growing", "stable", "saturated")


def activity(gain: Tensor, late: Tensor, fr_change: FRChange = "rise") -> Tensor:
    """How fast information arrives, per tile, from ``(n, 2)`` FR/NR gains: the FR gain before the
    second half of the path, the NR gain in it (``"rise"``, the paper's reading); with ``"any"``
    an FR change of either sign counts too, in both halves (for backbones whose estimates move
    *away* from the input's feature as they gain detail, as x0-predicting ones do)."""
    fr, nr = gain[:, 0], gain[:, 1]
    if fr_change == "rise":
        return torch.where(late, nr, fr)
    return torch.where(late, torch.maximum(fr.abs(), nr), fr.abs())


def classify(gain: Tensor, gain_sum: Tensor, best_sum: Tensor, late: Tensor, tau: float, drop: float,
             fr_change: FRChange = "rise") -> Tensor:
    """Category per tile from ``(n, 2)`` FR/NR gains, their running sums and the NR sum at the best state."""
    saturated = late & (best_sum - gain_sum[:, 1] > drop)
    return torch.where(saturated, SATURATED, torch.where(activity(gain, late, fr_change) > tau, GROWING, STABLE))


def pace(gain: Tensor, late: Tensor, category: Tensor, tau: float, num_intervals: int,
         fr_change: FRChange = "rise") -> Tensor:
    """Interval index per tile: the largest when stable, smaller the faster a growing tile grows."""
    rising = activity(gain, late, fr_change)
    steps_down = (rising > tau).long() + (rising > 2 * tau).long() + (rising > 4 * tau).long()
    index = (num_intervals - 1 - steps_down).clamp(min=0)
    return torch.where(category == GROWING, index, num_intervals - 1)


def gain_rate(gain: Tensor, t: Tensor, t_next: Tensor, reference: int) -> Tensor:
    """``(n, G)`` gains of jumps ``t -> t_next`` (-1: the clean sample) as gains per ``reference``
    timesteps, so that one threshold means the same at every interval."""
    jump = (t - t_next).clamp(min=1).to(gain.dtype)
    return gain * (reference / jump)[:, None]


@dataclass(frozen=True)
class DTSSPolicy:
    """Region-adaptive pace from the gains; needs a gain function in the sampler."""

    intervals: tuple[int, ...] = (5, 10, 15, 20)
    tau: float = 5e-3
    drop: float = 0.05
    fr_change: FRChange = "rise"  # "any": an FR gain of either sign means information arrives
    rate: bool = True  # thresholds on the gain per timestep (x the largest interval), not per step

    def __post_init__(self) -> None:
        if list(self.intervals) != sorted(set(self.intervals)) or not self.intervals or self.intervals[0] < 1:
            raise ConfigError(f"intervals must be increasing positive integers, got {self.intervals}")
        if self.fr_change not in FR_CHANGES:
            raise ConfigError(f"fr_change must be one of {', '.join(FR_CHANGES)}, got {self.fr_change!r}")
        if self.tau < 0 or self.drop < 0:
            raise ConfigError("tau and drop must not be negative")

    def initial(self, t: Tensor) -> Tensor:
        """Start at the largest interval: early estimates change slowly (the paper's stable regions)."""
        return torch.full_like(t, len(self.intervals) - 1, dtype=torch.long)

    def __call__(self, obs: StepObservation) -> Decision:
        if obs.gain is None or obs.gain_sum is None or obs.best_sum is None or obs.late is None:
            raise ConfigError("the adaptive sampler needs a gain function (gain exact or learned)")
        late = obs.late  # the second half of the path, where the gain function's NR part starts
        gain = gain_rate(obs.gain, obs.t, obs.t_next, max(self.intervals)) if self.rate else obs.gain
        category = classify(gain, obs.gain_sum, obs.best_sum, late, self.tau, self.drop, self.fr_change)
        return Decision(
            interval_index=pace(gain, late, category, self.tau, len(self.intervals), self.fr_change),
            exit=category == SATURATED,
            keep=(obs.gain_sum[:, 1] >= obs.best_sum) | (obs.steps == 1),
            category=category,
        )


SHIPPED: DTSSPolicy = DTSSPolicy(intervals=(20, 50, 100), tau=0.02, drop=0.05, fr_change="any")
"""DTSS as tuned for the shipped model on training photos (docs/benchmarks.md): the defaults of
``UpscaleConfig`` and of the training commands that mimic its decisions. The paper's preset is
``DTSSPolicy()``: intervals (5, 10, 15, 20), tau 5e-3, fr_change "rise" (drop 0.02 traded NIQE away)."""
