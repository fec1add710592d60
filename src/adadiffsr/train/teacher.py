"""What the student learns from: the teacher's walk, and what its default does to a crop."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backbones import CompactSR
from ..core.precision import autocast
from ..core.schedule import SkipCodebook, add_noise
from ..core.step import denoise_step
from ..errors import ConfigError
from ..policies.groups import GroupSettings, steps_by_thresholds, tile_texture
from ..policies.timesteps import TimestepsPolicy

DEFAULT_GROUPS = GroupSettings()  # the grouped policy's thresholds and flat level, as the teacher's default uses them


@torch.no_grad()
def teacher_walk(teacher: CompactSR, codebook: SkipCodebook, walk: tuple[int, ...], x_t: Tensor, cond: Tensor,
                 generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """The teacher's DDPM walk over ``walk`` (each tile from its first timestep) to the clean sample: the
    sampler's step (``denoise_step``) for a whole training batch at one timestep, one generator per batch."""
    spec = teacher.spec
    x = x_t
    for t, jump in zip(walk, TimestepsPolicy(walk).jumps, strict=True):
        k_idx = torch.full((x.shape[0],), codebook.interval_index(jump), dtype=torch.long, device=x.device)
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        last = jump == t + 1  # to the clean sample: no noise
        noise = torch.zeros_like(x) if last else torch.randn(x.shape, generator=generator, device=x.device)
        with autocast(x.device, dtype):
            prediction = teacher.predict(x, tt, cond)
        _, x = denoise_step(codebook, spec, prediction.float(), x, tt, k_idx, "ddpm", noise)
    return x


@torch.no_grad()
def default_target(teacher: CompactSR, codebook: SkipCodebook, walk: tuple[int, ...], estimate: Tensor, cond: Tensor,
                   noise: Tensor, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                   groups: GroupSettings = DEFAULT_GROUPS) -> Tensor:
    """What the teacher's default (``--policy grouped``) does to each crop: the walk's last ``s``
    steps from the prior's ``estimate`` noised there with ``noise``, ``s`` from the texture of the
    estimate by the default thresholds, and at least 1 on a crop that is not flat (at inference the
    floor gives such tiles a step on a smooth photo); a flat crop keeps the estimate."""
    difficulty = tile_texture(teacher.decode(estimate))
    steps = steps_by_thresholds(difficulty, groups.thresholds, len(walk))
    steps = torch.where((steps == 0) & (difficulty >= groups.flat), 1, steps)
    target = estimate.clone()
    for s in range(1, len(walk) + 1):
        chosen = steps == s
        if bool(chosen.any()):
            t = torch.full((int(chosen.sum()),), walk[-s], dtype=torch.long, device=estimate.device)
            x_t = add_noise(teacher.spec.schedule, estimate[chosen], t, noise[chosen])
            target[chosen] = teacher_walk(teacher, codebook, walk[-s:], x_t, cond[chosen], generator, dtype)
    return target


def distill_walk(teacher: CompactSR) -> tuple[int, ...]:
    walk = tuple(int(t) for t in teacher.spec.sampling.get("timesteps", ()))
    if not walk or not teacher.starts_from_estimate:
        raise ConfigError("distillation needs a refiner over a prior with a timestep walk in its config "
                          "(the shipped model's 399,149,29)")
    return walk
