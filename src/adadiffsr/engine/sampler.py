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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.backbone import Backbone
from ..core.gain import PerformanceFn
from ..core.policy import Policy, StepObservation
from ..core.precision import autocast
from ..core.schedule import NoiseSchedule, SkipCodebook, UpdateRule, add_noise
from ..core.step import InjectFn, ProgressFn, denoise_step, strength_timestep
from ..errors import ConfigError, NumericalError
from .denoiser import BACKBONE, Denoiser
from .tile_state import BestStates, GainTracker, TileStates

SPACINGS: tuple[str, ...] = ("trailing", "leading")  # where a walk starts: T - 1, or diffusers' default
FIRST_GAINS: tuple[str, ...] = ("zero", "estimate")


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
    first_gain: str = "zero"  # a tile's first gain: 0 (the paper's: nothing to gain against), or "estimate":
    # against the estimate it started from, which is then its best state until a step beats it

    def __post_init__(self) -> None:
        if self.first_gain not in FIRST_GAINS:
            raise ConfigError(f"unknown first gain {self.first_gain!r}; choose one of {', '.join(FIRST_GAINS)}")


@dataclass
class TileRun:
    """Outcome of ``sample_tiles``."""

    x0: Tensor  # (N, C, h, w) each tile's final state, working space
    steps: Tensor  # (N,) steps taken (backbone evaluations) per tile
    exit_t: Tensor  # (N,) timestep where a tile stopped early; -1 where it ran to the end
    category: Tensor  # (N,) last category the policy gave each tile (-1: none)
    nfe: int
    seconds: dict[str, float] = field(default_factory=dict)  # backbone, gain, policy
    nfe_student: int = 0  # of ``nfe``, the evaluations of the student


def tile_generators(seed: int, num_tiles: int, device: torch.device) -> list[torch.Generator]:
    """One generator per tile, so a tile's noise does not depend on batching or on other tiles."""
    return [torch.Generator(device=device).manual_seed(seed * 1_000_003 + i) for i in range(num_tiles)]


StepCallback = Callable[[dict[str, Tensor]], None]
"""k-diffusion's ``callback``: called after every batch step with ``tile`` (indices), ``t``, ``t_next``,
``x`` (the states at ``t_next``), ``denoised`` (the estimates ``x0``), ``cond`` and, with a gain
function, ``gain``. It only watches; what it returns is ignored."""


def sample_tiles(
    model: Backbone | Denoiser,
    x_T: Tensor,
    cond: Tensor,
    policy: Policy,
    settings: SamplerSettings,
    generators: list[torch.Generator],
    performance: PerformanceFn | None = None,
    progress: ProgressFn | None = None,
    inject: InjectFn | None = None,
    start: Tensor | None = None,
    callback: StepCallback | None = None,
) -> TileRun:
    """Run every tile of ``x_T (N, C, h, w)`` down to the clean sample; see the module docstring.
    ``model`` is a backbone, or a ``Denoiser`` that also routes tiles to a distilled student (one step
    from their start straight to the clean sample instead of the walk). ``start (N,)`` caps each tile's
    first timestep (patch-adaptive groups): it starts there from the backbone's estimate noised, and with
    -1 it takes no step (the estimate is its result)."""
    denoiser = model if isinstance(model, Denoiser) else Denoiser(model)
    backbone, spec, device, n = denoiser.backbone, denoiser.spec, x_T.device, x_T.shape[0]
    codebook = SkipCodebook.build(spec.schedule, policy.intervals).to(device)
    stochastic = settings.rule == "ddpm" or settings.eta > 0
    tiles = initial_states(backbone, x_T, cond, policy, settings, codebook, start)
    from_estimate = settings.first_gain == "estimate" and performance is not None
    network = denoiser.networks(n, device)
    routed = (network != BACKBONE) & tiles.active  # one step of a student straight to the clean sample
    if bool(routed.any()):
        codebook = one_step_to_clean(spec.schedule, codebook.intervals, tiles, routed).to(device)
    total_t = codebook.num_train_timesteps
    gains = GainTracker.start(n, device) if performance is not None else None
    best = BestStates()
    if from_estimate and gains is not None and performance is not None:  # state 0: the estimate each tile starts from
        base = starting_estimate(backbone, cond)
        gains.r_prev[:] = performance(base, cond, tiles.t.clamp(min=0)).float().to(device)
        best.keep(torch.arange(n, device=device), base.float(), n)
    seconds = {"backbone": 0.0, "gain": 0.0, "policy": 0.0, "pfj": 0.0}
    nfe = nfe_student = 0

    while bool(tiles.active.any()):
        for chunk in tiles.active.nonzero().flatten().split(settings.batch_tiles):
            x_t, t_now, k_now, c = tiles.x[chunk], tiles.t[chunk], tiles.k_idx[chunk], cond[chunk]
            c_in = c
            if inject is not None:  # PFJ modulates with each tile's latest gain (0 before its first)
                with _timed(seconds, "pfj", device):
                    c_in = inject(c, gains.last[chunk] if gains is not None else torch.zeros(len(chunk), 2, device=device))
            with _timed(seconds, "backbone", device), autocast(device, settings.dtype):
                out = denoiser(x_t, t_now, c_in, network[chunk])
            nfe += len(chunk)
            nfe_student += int(routed[chunk].sum())
            if not bool(torch.isfinite(out).all()):
                raise NumericalError(f"the backbone produced NaN or Inf at timestep {int(t_now.max())}; "
                                     "try fp32 (`dtype`) or check the weights")
            t_next = codebook.next_timestep(t_now, k_now)
            noise = _noise(x_t, chunk, t_next, generators) if stochastic else None
            x0, x_new = denoise_step(codebook, spec, out, x_t, t_now, k_now, settings.rule, noise, settings.eta)
            tiles.steps[chunk] += 1

            gain = None
            if performance is not None and gains is not None:
                with _timed(seconds, "gain", device):
                    r = performance(x0, c, t_now).float().to(device)
                    first = (tiles.steps[chunk] == 1) & (not from_estimate)
                    gain = gains.observe(chunk, r, t_now, first, performance.nr_start)
            obs = StepObservation(
                tile=chunk, t=t_now, t_next=t_next, steps=tiles.steps[chunk], gain=gain,
                gain_sum=None if gains is None else gains.total[chunk],
                best_sum=None if gains is None else gains.best_nr[chunk],
                late=None if performance is None else t_now < performance.nr_start,
            )
            with _timed(seconds, "policy", device):
                decision = policy(obs)

            if bool(decision.keep.any()):
                best.keep(chunk[decision.keep], x0[decision.keep], n)
                if gains is not None:
                    gains.best_nr[chunk[decision.keep]] = gains.total[chunk[decision.keep], -1]
            if decision.category is not None:
                tiles.category[chunk] = decision.category.to(device)
            finished = t_next < 0
            leaving = decision.exit & ~finished
            if bool(leaving.any()):
                x_new[leaving] = best.exit_states(chunk[leaving], x0[leaving])
                tiles.exit_t[chunk[leaving]] = t_next[leaving]
            tiles.x[chunk] = x_new
            tiles.t[chunk] = t_next
            tiles.k_idx[chunk] = decision.interval_index.to(device)
            tiles.active[chunk[finished | leaving]] = False
            if callback is not None:
                callback({"tile": chunk, "t": t_now, "t_next": t_next, "x": x_new, "denoised": x0, "cond": c,
                          **({} if gain is None else {"gain": gain})})
        if progress is not None:
            walked = torch.where(tiles.active, (total_t - 1 - tiles.t).float() / total_t, torch.ones(()))
            progress(float(walked.mean()), nfe)
    return TileRun(x0=tiles.x, steps=tiles.steps, exit_t=tiles.exit_t, category=tiles.category, nfe=nfe,
                   seconds=seconds, nfe_student=nfe_student)


def one_step_to_clean(schedule: NoiseSchedule, intervals: tuple[int, ...], tiles: TileStates, routed: Tensor) -> SkipCodebook:
    """The codebook extended with each ``routed`` tile's jump from its start to the clean sample
    (``t + 1``), and those tiles set to take it: one step and done. The policy's own intervals keep
    their indices (the new jumps come after them)."""
    jumps = sorted({int(t) + 1 for t in tiles.t[routed].tolist()} - set(intervals))
    extended = SkipCodebook.build(schedule, intervals + tuple(jumps))
    table = torch.tensor(extended.intervals, device=tiles.t.device)
    tiles.k_idx[routed] = (table[None, :] == (tiles.t[routed] + 1)[:, None]).long().argmax(1)
    return extended


def initial_states(backbone: Backbone, x_T: Tensor, cond: Tensor, policy: Policy, settings: SamplerSettings,
                   codebook: SkipCodebook, start: Tensor | None) -> TileStates:
    """Every tile at its first timestep: ``T - 1`` (or the leading spacing's) from ``x_T``, or from the
    backbone's estimate noised at ``strength`` or at the tile's own ``start``; -1 takes no step."""
    n, device, total_t = x_T.shape[0], x_T.device, codebook.num_train_timesteps
    x = x_T.float().clone()
    t = start_timesteps(codebook, policy.initial(torch.full((n,), total_t - 1, device=device)), settings.spacing)
    active = torch.ones(n, dtype=torch.bool, device=device)
    if settings.strength < 1 or start is not None:
        base = starting_estimate(backbone, cond)
        t = t.clamp(max=strength_timestep(settings.strength, total_t))
        if start is not None:
            t = torch.minimum(t, start.to(device=device, dtype=t.dtype))
        x = torch.where((t >= 0).view(-1, 1, 1, 1), add_noise(backbone.spec.schedule, base.float(), t.clamp(min=0), x),
                        base.float())
        active &= t >= 0
    k_idx = torch.zeros(n, dtype=torch.long, device=device)  # tiles that take no step need none
    k_idx[active] = policy.initial(t[active]).to(device)
    none = torch.full((n,), -1, dtype=torch.long, device=device)
    return TileStates(x=x, t=t, k_idx=k_idx, active=active, steps=torch.zeros(n, dtype=torch.long, device=device),
                      exit_t=none, category=none.clone())


def starting_estimate(backbone: Backbone, cond: Tensor) -> Tensor:
    """The backbone's estimate of each tile before any step (the prior's output, for the refiner)."""
    base = backbone.estimate(cond)
    if base is None:
        raise ConfigError(f"strength < 1 and per-tile starts need a backbone that starts from an estimate; "
                          f"{type(backbone).__name__} starts from pure noise only")
    return base


def start_timesteps(codebook: SkipCodebook, k_idx: Tensor, spacing: str) -> Tensor:
    """Where each tile's walk starts: ``T - 1`` (trailing) or ``((T - 1) // k) * k`` (leading)."""
    total = codebook.num_train_timesteps
    if spacing == "trailing":
        return torch.full_like(k_idx, total - 1)
    if spacing == "leading":
        ks = torch.tensor(codebook.intervals, device=k_idx.device)[k_idx]
        return (total - 1) // ks * ks
    raise ConfigError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")


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
