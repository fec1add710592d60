"""The sampling loop: every tile walks from ``T - 1`` to the clean sample at its own pace.

Each iteration packs the active tiles, whatever their timesteps and intervals, into batches of
``batch_tiles``, calls the backbone once per batch, applies one codebook jump per tile and asks
the policy how each tile goes on. Tiles that exit early cost nothing more. NFE counts tile
evaluations (one tile through the backbone once).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.backbone import Backbone
from ..core.gain import PerformanceFn, information_gain
from ..core.policy import Policy, StepObservation
from ..core.precision import autocast
from ..core.schedule import SkipCodebook, UpdateRule, add_noise
from ..core.step import InjectFn, ProgressFn, denoise_step, strength_timestep
from ..errors import ConfigError, NumericalError


@dataclass(frozen=True)
class SamplerSettings:
    """How the loop runs; the policy decides the pace, these the mechanics."""

    rule: UpdateRule = "ddim"
    eta: float = 0.0  # DDIM stochasticity; ddpm is always stochastic
    batch_tiles: int = 8
    dtype: torch.dtype = torch.float32  # autocast dtype of backbone calls; the state stays float32
    spacing: str = "trailing"  # first timestep: T - 1 ("trailing") or the largest multiple of the first interval below T ("leading", diffusers' default)
    strength: float = 1.0  # diffusers' img2img strength: start at timestep round(strength * T) - 1 from the
    # backbone's starting estimate noised there (1 = pure noise at T - 1, 0 = no step: the estimate itself)


@dataclass
class TileRun:
    """Outcome of ``sample_tiles``."""

    x0: Tensor  # (N, C, h, w) each tile's final state, working space
    steps: Tensor  # (N,) steps taken (backbone evaluations) per tile
    exit_t: Tensor  # (N,) timestep where a tile stopped early; -1 where it ran to the end
    category: Tensor  # (N,) last category the policy gave each tile (-1: none)
    nfe: int
    seconds: dict[str, float] = field(default_factory=dict)  # backbone, gain, policy


def tile_generators(seed: int, num_tiles: int, device: torch.device) -> list[torch.Generator]:
    """One generator per tile, so a tile's noise does not depend on batching or on other tiles."""
    return [torch.Generator(device=device).manual_seed(seed * 1_000_003 + i) for i in range(num_tiles)]


def sample_tiles(
    backbone: Backbone,
    x_T: Tensor,
    cond: Tensor,
    policy: Policy,
    settings: SamplerSettings,
    generators: list[torch.Generator],
    performance: PerformanceFn | None = None,
    progress: ProgressFn | None = None,
    inject: InjectFn | None = None,
    start: Tensor | None = None,
) -> TileRun:
    """Run every tile of ``x_T (N, C, h, w)`` down to the clean sample; see the module docstring.
    ``start (N,)`` caps each tile's first timestep (patch-adaptive groups): it starts there from the
    backbone's estimate noised, and with -1 it takes no step (the estimate is its result)."""
    spec = backbone.spec
    device = x_T.device
    codebook = SkipCodebook.build(spec.schedule, policy.intervals).to(device)
    n, total_t = x_T.shape[0], codebook.num_train_timesteps
    stochastic = settings.rule == "ddpm" or settings.eta > 0

    x = x_T.float().clone()  # current x_t of active tiles; the final state of finished ones
    x0_prev = torch.zeros_like(x)
    t = start_timesteps(codebook, policy.initial(torch.full((n,), total_t - 1, device=device)), settings.spacing)
    active = torch.ones(n, dtype=torch.bool, device=device)
    if settings.strength < 1 or start is not None:
        base = backbone.estimate(cond)
        if base is None:
            raise ConfigError(f"strength < 1 and per-tile starts need a backbone that starts from an estimate; "
                              f"{type(backbone).__name__} starts from pure noise only")
        t = t.clamp(max=strength_timestep(settings.strength, total_t))
        if start is not None:
            t = torch.minimum(t, start.to(device=device, dtype=t.dtype))
        x = torch.where((t >= 0).view(-1, 1, 1, 1), add_noise(spec.schedule, base.float(), t.clamp(min=0), x), base.float())
        active &= t >= 0
    k_idx = torch.zeros(n, dtype=torch.long, device=device)  # tiles that take no step need none
    k_idx[active] = policy.initial(t[active]).to(device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    exit_t = torch.full((n,), -1, dtype=torch.long, device=device)
    best: Tensor | None = None  # allocated when a policy first keeps a state
    has_best = torch.zeros(n, dtype=torch.bool, device=device)
    gain_sum = torch.zeros(n, 2, device=device) if performance is not None else None  # gains summed per tile
    r_prev = torch.zeros(n, 2, device=device)  # each tile's last performance R
    last_gain = torch.zeros(n, 2, device=device)  # each tile's latest gain: what PFJ modulates with
    best_sum = torch.zeros(n, device=device)
    category = torch.full((n,), -1, dtype=torch.long, device=device)
    seconds = {"backbone": 0.0, "gain": 0.0, "policy": 0.0, "pfj": 0.0}
    nfe = 0

    while bool(active.any()):
        for chunk in active.nonzero().flatten().split(settings.batch_tiles):
            x_t, t_now, k_now, c = x[chunk], t[chunk], k_idx[chunk], cond[chunk]
            if inject is not None:
                with _timed(seconds, "pfj", device):
                    c_in = inject(c, last_gain[chunk])
            else:
                c_in = c
            with _timed(seconds, "backbone", device), autocast(device, settings.dtype):
                out = backbone.predict(x_t, t_now, c_in).float()
            nfe += len(chunk)
            if not bool(torch.isfinite(out).all()):
                raise NumericalError(
                    f"the backbone produced NaN or Inf at timestep {int(t_now.max())}; "
                    "try --dtype fp32 or check the weights"
                )
            t_next = codebook.next_timestep(t_now, k_now)
            noise = _noise(x_t, chunk, t_next, generators) if stochastic else None
            x0, x_new = denoise_step(codebook, spec, out, x_t, t_now, k_now, settings.rule, noise, settings.eta)
            steps[chunk] += 1
            first = steps[chunk] == 1

            gain = None
            if performance is not None:
                with _timed(seconds, "gain", device):
                    r = performance(x0, c, t_now).float().to(device)
                    gain = information_gain(r, r_prev[chunk], t_now, performance.nr_start)
                    gain[first] = 0  # a tile's first estimate has nothing to gain against
                    r_prev[chunk] = r
                gain_sum[chunk] += gain  # type: ignore[index]
                last_gain[chunk] = gain
            obs = StepObservation(
                tile=chunk,
                t=t_now,
                t_next=t_next,
                steps=steps[chunk],
                x0=x0,
                x0_prev=None if bool(first.all()) else x0_prev[chunk],
                cond=c,
                gain=gain,
                gain_sum=None if gain_sum is None else gain_sum[chunk],
                best_sum=None if gain_sum is None else best_sum[chunk],
            )
            with _timed(seconds, "policy", device):
                decision = policy(obs)

            if bool(decision.keep.any()):
                if best is None:
                    best = torch.zeros_like(x)
                best[chunk[decision.keep]] = x0[decision.keep]
                has_best[chunk[decision.keep]] = True
                if gain_sum is not None:
                    best_sum[chunk[decision.keep]] = gain_sum[chunk[decision.keep], -1]
            if decision.category is not None:
                category[chunk] = decision.category.to(device)
            finished = t_next < 0
            leaving = decision.exit & ~finished
            if bool(leaving.any()):
                keep_best = has_best[chunk] & leaving
                x_new[leaving] = x0[leaving]
                if best is not None and bool(keep_best.any()):
                    x_new[keep_best] = best[chunk[keep_best]]
                exit_t[chunk[leaving]] = t_next[leaving]
            x[chunk] = x_new
            x0_prev[chunk] = x0
            t[chunk] = t_next
            k_idx[chunk] = decision.interval.to(device)
            active[chunk[finished | leaving]] = False
        if progress is not None:
            walked = torch.where(active, (total_t - 1 - t).float() / total_t, torch.ones(()))
            progress(float(walked.mean()), nfe)
    return TileRun(x0=x, steps=steps, exit_t=exit_t, category=category, nfe=nfe, seconds=seconds)




def start_timesteps(codebook: SkipCodebook, k_idx: Tensor, spacing: str) -> Tensor:
    """Where each tile's walk starts: ``T - 1`` (trailing) or ``((T - 1) // k) * k`` (leading)."""
    total = codebook.num_train_timesteps
    if spacing == "trailing":
        return torch.full_like(k_idx, total - 1)
    if spacing == "leading":
        ks = torch.tensor(codebook.intervals, device=k_idx.device)[k_idx]
        return (total - 1) // ks * ks
    raise ConfigError(f"unknown timestep spacing {spacing!r}; use trailing or leading")


def uniform_nfe(num_tiles: int, interval: int, num_train_timesteps: int = 1000, start: int | None = None) -> int:
    """Tile evaluations of uniform sampling at ``interval`` from ``start`` (default ``T - 1``) to the clean sample."""
    first = num_train_timesteps - 1 if start is None else start
    return num_tiles * math.ceil((first + 1) / interval) if first >= 0 else 0


def _noise(like: Tensor, chunk: Tensor, t_next: Tensor, generators: list[torch.Generator]) -> Tensor:
    """Standard normal noise per tile from its own generator; none drawn for a final jump."""
    noise = torch.zeros_like(like)
    for j, (i, tn) in enumerate(zip(chunk.tolist(), t_next.tolist(), strict=True)):
        if tn >= 0:
            noise[j] = torch.randn(like.shape[1:], generator=generators[i], device=like.device)
    return noise


@contextlib.contextmanager
def _timed(seconds: dict[str, float], key: str, device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[key] += time.perf_counter() - start
