"""Patch-adaptive group sampling (PatchScaler's PGS) over a timestep walk, as pure functions.

Before any diffusion step, every tile's difficulty is read off what is already known: the prior's
estimate of the tile (a flat sky is easy, foliage is hard). Tiles then fall into groups by the
number of steps they get, ``0 .. len(walk)``, and a group with ``s`` steps starts at the walk's
``s``-th timestep from its end, from the prior's estimate noised there: easy groups start late
(``s = 1``: the last timestep only) or take no step at all (``s = 0``: the prior's estimate is the
tile's result); hard groups start early and take the whole walk. All groups share the sampler's
batches, so mixed start timesteps cost nothing extra.

Two ways to choose the groups:

- **thresholds** (the default): ``s`` is the number of ``thresholds`` at or below the tile's
  difficulty, so an image of sky spends little and an image of texture spends much; with a floor
  (``min_budget``) every image still gets at least that many mean steps per tile, spent on its own
  most textured tiles, unless they are ``flat`` (the thresholds are absolute, and a large photo's
  prior estimate is smoother per pixel than a small one's);
- **a budget**: ``budget`` mean steps per tile, met on every image (``round(budget * N)`` steps in
  all), the whole walk to the hardest tiles first.

Where the model has a distilled student (``NAME.student.safetensors``), the tiles of the groups in
``student_groups`` take one step of the student from the walk's first timestep instead of their
part of the teacher's walk: a tile ends with the prior's estimate (0 steps), the student's (1) or
the teacher's walk (all of it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.pixels import luma
from ..errors import ConfigError


def tile_texture(tiles: Tensor) -> Tensor:
    """Difficulty of each tile of ``(n, 3, h, w)`` in ``[-1, 1]``: the mean absolute luma
    difference between neighbouring pixels, in ``[0, 1]`` units (flat sky about 0.002, foliage
    0.05 and more)."""
    y = luma(tiles)[:, 0] / 2  # [-1, 1] -> half range: differences in [0, 1] units
    dx = (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=(1, 2))
    dy = (y[:, 1:, :] - y[:, :-1, :]).abs().mean(dim=(1, 2))
    return (dx + dy).float()


@dataclass(frozen=True)
class GroupSettings:
    """How tiles are grouped: by ``thresholds`` on the difficulty, or to meet ``budget``."""

    # difficulty at which a tile gets its 1st, 2nd, 3rd... step: below 0.010 the refiner's walk added
    # 0.2 dB to a tile of the validation photos, above 0.016 0.55 dB (docs/benchmarks.md)
    thresholds: tuple[float, ...] = (0.010, 0.012, 0.014)
    budget: float | None = None  # mean steps per tile over the image; None = the thresholds decide
    # with the thresholds: at least this many mean steps per tile, the hardest tiles first. On the 6 large
    # held-out photos (1280 px) the thresholds alone gave Wood no step and TwoWings 6 evaluations of 28 tiles;
    # the floor of 1 changed 4 of 8 validation photos by +0.01..+0.18 dB, NIQE +0..1% (docs/benchmarks.md)
    min_budget: float = 1.0
    # the floor never raises a tile flatter than this (a single colour is 0; the flattest tile of those 14
    # photos was 0.0040, the lowest the floor raised 0.0060), so flat graphics still cost no step
    flat: float = 0.003
    # the groups (by steps on the walk) the distilled student serves, where there is one
    student_groups: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self) -> None:
        if any(g < 0 for g in self.student_groups):
            raise ConfigError(f"student groups are step counts on the walk (0 or more), got {self.student_groups}")
        th = self.thresholds
        if not th or any(a > b for a, b in itertools.pairwise(th)) or th[0] < 0:
            raise ConfigError(f"group thresholds must be non-negative and non-decreasing, got {th}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"budget must be at least 0 steps per tile, got {self.budget}")
        if self.min_budget < 0:
            raise ConfigError(f"min_budget must be at least 0 steps per tile, got {self.min_budget}")
        if self.flat < 0:
            raise ConfigError(f"the flat difficulty must be at least 0, got {self.flat}")


def steps_by_thresholds(difficulty: Tensor, thresholds: tuple[float, ...], max_steps: int) -> Tensor:
    """Steps per tile: how many ``thresholds`` its difficulty reaches, at most ``max_steps``
    (thresholds past the walk's length count as its last)."""
    th = torch.tensor(thresholds, dtype=difficulty.dtype, device=difficulty.device)
    return (difficulty[:, None] >= th[None, :]).sum(1).clamp(max=max_steps).long()


def steps_for_budget(difficulty: Tensor, budget: float, max_steps: int) -> Tensor:
    """Steps per tile summing to ``round(budget * n)`` (capped at ``max_steps * n``), hardest tiles
    first, each given the whole walk before the next gets any: on the validation photos a step of
    the walk added about the same PSNR-Y to a tile as the one before it, so a step is worth most on
    the hardest tile that still lacks one. A harder tile never gets fewer steps than an easier one."""
    n = difficulty.shape[0]
    total = min(round(budget * n), max_steps * n)
    rank = torch.empty(n, dtype=torch.long, device=difficulty.device)
    # ties (equal difficulties) go to the earlier tile
    rank[torch.argsort(difficulty.float(), descending=True, stable=True)] = torch.arange(n, device=difficulty.device)
    return (total - max_steps * rank).clamp(min=0, max=max_steps).long()


def group_steps(difficulty: Tensor, settings: GroupSettings, max_steps: int) -> Tensor:
    """Steps per tile, ``0 .. max_steps``, as ``settings`` say: a budget wins over the thresholds;
    the thresholds' steps are raised, hardest tiles first, to at least ``min_budget`` mean steps
    (tiles below ``flat`` are never raised, so a flat image may spend less)."""
    if settings.budget is not None:
        return steps_for_budget(difficulty, settings.budget, max_steps)
    steps = steps_by_thresholds(difficulty, settings.thresholds, max_steps)
    if settings.min_budget > 0:
        floor = steps_for_budget(difficulty, settings.min_budget, max_steps)
        steps = torch.maximum(steps, floor.masked_fill(difficulty < settings.flat, 0))
    return steps


def walk_starts(walk: tuple[int, ...], steps: Tensor) -> Tensor:
    """Where a tile with ``s`` steps starts on ``walk`` (strictly decreasing timesteps): the
    ``s``-th timestep from its end; -1 (no step, the estimate as it is) for ``s = 0``."""
    table = torch.tensor((-1, *reversed(walk)), dtype=torch.long, device=steps.device)
    if bool((steps < 0).any()) or bool((steps > len(walk)).any()):
        raise ConfigError(f"steps per tile must be in 0..{len(walk)} for a walk of {len(walk)} timesteps")
    return table[steps]


def student_tiles(steps: Tensor, student_groups: tuple[int, ...]) -> Tensor:
    """``(N,)`` bool: the tiles whose group (steps on the walk) is one the student serves."""
    return torch.isin(steps, torch.tensor(student_groups, dtype=steps.dtype, device=steps.device))
