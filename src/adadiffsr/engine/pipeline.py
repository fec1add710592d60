"""Image in, image out: pad, tile, condition, sample every tile, fuse in working space, decode.

The flow of one upscale (shapes for a ``1 x 3 x H x W`` input, ``s`` the scale, ``l`` the latent
scale):

1. pad the input to a multiple of the backbone's ``size_multiple`` (reflect),
2. stage 1: when the backbone sits on a prior, run the prior once over the input (then pad it),
3. cut it into overlapping tiles of the native size and compute each tile's condition once
   (from the input tile and the prior's output cropped to it),
4. draw one noise canvas ``(1, C, lH, lW)`` from the seed and crop it with the same grid,
5. ``sample_tiles``: each tile walks to the clean sample at the pace its policy sets, from pure
   noise, or with ``strength < 1`` from its starting estimate noised to a later timestep; tiles run in
   chunks of ``stream_tiles``, each chunk fused into the canvas as soon as it is done, so the
   memory of tile states stays bounded however large the image,
6. fuse the tiles' final states with Gaussian weights (region integration), decode, crop,
7. optionally correct colours against the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..color import apply_color_fix
from ..core.backbone import Backbone
from ..core.gain import PerformanceFn
from ..core.policy import PlanFn, Policy
from ..core.step import InjectFn, ProgressFn
from ..errors import ConfigError
from ..policies.groups import tile_texture
from .denoiser import COMPACT_STUDENT, Denoiser
from .prior_route import PriorEstimate, RegionRoute
from .sampler import SamplerSettings, sample_tiles, tile_generators
from .tiling import TileGrid, accumulate, dominant_tile, weight_total

FUSIONS: tuple[str, ...] = ("gaussian", "none")  # region integration: Gaussian-weighted, or hard seams (an ablation)


@dataclass(frozen=True)
class TilingSettings:
    tile: int | None = None  # tile side in input pixels; None = the backbone's native size
    overlap: int | None = None  # None = a quarter of the tile
    fusion_sigma: float = 0.25  # std of the Gaussian weight map, as a fraction of the tile side
    fusion: str = "gaussian"  # region integration; "none": each pixel from one tile (hard seams, an ablation)
    stream_tiles: int = 64  # tiles sampled to the end before the next chunk starts


@dataclass
class RunSummary:
    """Per-tile outcome of all chunks: what reports need, without the tile states."""

    steps: Tensor  # (N,) backbone evaluations per tile
    exit_t: Tensor  # (N,) timestep of an early exit, -1 where a tile ran to the end
    category: Tensor  # (N,) the policy's last category per tile, -1 for none
    nfe: int
    seconds: dict[str, float]
    nfe_student: int = 0  # of ``nfe``, the student's evaluations

    @classmethod
    def merge(cls, runs: list[RunSummary]) -> RunSummary:
        seconds: dict[str, float] = {}
        for run in runs:
            for k, v in run.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        return cls(torch.cat([r.steps for r in runs]), torch.cat([r.exit_t for r in runs]),
                   torch.cat([r.category for r in runs]), sum(r.nfe for r in runs), seconds,
                   sum(r.nfe_student for r in runs))


@dataclass
class PipelineOutput:
    image: Tensor  # (1, 3, sH, sW) in [-1, 1]
    run: RunSummary
    grid: TileGrid  # in input pixels, over the padded input
    input_size: tuple[int, int]  # (H, W) before padding
    seconds: dict[str, float]  # prior, condition, plan, sampling (backbone, gain, policy inside), fusion, decode, total
    difficulty: Tensor | None = None  # (N,) each tile's difficulty where a plan grouped the tiles
    by_student: Tensor | None = None  # (N,) bool: the tiles the plan gave to the student
    by_compact_student: Tensor | None = None  # (N,) bool: those of them the compact prior's student took
    prior_route: RegionRoute | None = None  # which prior ran where, when stage 1 was routed


PriorStage = Callable[[Tensor], PriorEstimate]
"""Stage 1 over an image: ``(1, 3, H, W)`` in ``[-1, 1]`` -> its ``PriorEstimate`` (``prior/routing.py``)."""


def resolve_tiling(backbone: Backbone, tiling: TilingSettings) -> tuple[int, int]:
    """Tile side and overlap in input pixels, checked against the backbone's constraints."""
    m = backbone.spec.size_multiple
    tile = backbone.spec.tile_size if tiling.tile is None else tiling.tile
    if tile < m or tile % m:
        raise ConfigError(f"tile must be a positive multiple of {m} for this backbone, got {tile}")
    overlap = tile // 4 if tiling.overlap is None else tiling.overlap
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    return tile, overlap


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Pad bottom/right to a multiple of ``multiple``: reflect where possible, else replicate."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(image, (0, pw, 0, ph), mode=mode)


def upscale_tensor(
    backbone: Backbone,
    lr: Tensor,
    policy: Policy,
    settings: SamplerSettings,
    tiling: TilingSettings = TilingSettings(),
    seed: int = 0,
    color_fix: str = "none",
    performance: PerformanceFn | None = None,
    progress: ProgressFn | None = None,
    inject: InjectFn | None = None,
    plan: PlanFn | None = None,
    student: Backbone | None = None,
    prior: PriorStage | None = None,
    compact_student: Backbone | None = None,
) -> PipelineOutput:
    """Super-resolve ``lr (1, 3, H, W)`` in ``[-1, 1]``; see the module docstring. ``student``: the
    distilled refiner that takes the tiles ``plan`` gives it, ``compact_student`` the one that takes
    those of them whose estimate is the compact prior's; ``prior``: stage 1 instead of the backbone's
    own prior over the whole image (the compact prior, or the prior chosen per region)."""
    if lr.dim() != 4 or lr.shape[0] != 1 or lr.shape[1] != 3:
        raise ValueError(f"expected a (1, 3, H, W) image, got {tuple(lr.shape)}")
    start = time.perf_counter()
    spec = backbone.spec
    tile, overlap = resolve_tiling(backbone, tiling)
    h, w = lr.shape[-2:]
    padded = backbone.prepare(pad_to_multiple(lr, spec.size_multiple))
    grid = TileGrid.build(padded.shape[-2], padded.shape[-1], tile, overlap)
    latent_grid = grid.scaled(spec.latent_scale)
    device = lr.device

    if tiling.stream_tiles < 1:
        raise ConfigError(f"stream_tiles must be at least 1, got {tiling.stream_tiles}")
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(
        (1, spec.latent_channels, latent_grid.height, latent_grid.width), generator=generator, device=device
    )
    generators = tile_generators(seed, len(grid), device)
    if tiling.fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {tiling.fusion!r}; choose one of {', '.join(FUSIONS)}")
    total = weight_total(latent_grid, tiling.fusion_sigma, device)
    owner = dominant_tile(latent_grid, tiling.fusion_sigma).to(device) if tiling.fusion == "none" else None
    canvas = torch.zeros_like(noise)
    seconds = {"prior": 0.0, "condition": 0.0, "sampling": 0.0, "fusion": 0.0}
    estimate = route = on_compact = None
    if backbone.prior is not None:
        t0 = time.perf_counter()
        # on the input as given (so that zero steps return exactly the prior's output), then padded
        stage1 = prior(lr) if prior is not None else PriorEstimate(backbone.prior(lr))
        estimate = pad_to_multiple(stage1.estimate, spec.size_multiple * spec.scale_factor)
        seconds["prior"] = time.perf_counter() - t0
        seconds.update(stage1.seconds)
        route = stage1.route
        if stage1.compact:
            on_compact = torch.ones(len(grid), dtype=torch.bool)
        elif route is not None:
            on_compact = route.on_compact(grid)
        del stage1  # the padded estimate is the one held
    hr_grid = grid.scaled(spec.scale_factor)
    runs: list[RunSummary] = []
    n = len(grid)
    difficulty = tile_plan = None
    if plan is not None:  # every tile's difficulty first, so that a budget holds over the whole image
        t0 = time.perf_counter()
        difficulty = tile_difficulty(padded, estimate, grid, spec.scale_factor, tiling.stream_tiles)
        tile_plan = plan(difficulty)
        seconds["plan"] = time.perf_counter() - t0
    for first in range(0, n, tiling.stream_tiles):
        chunk_tiles = range(first, min(n, first + tiling.stream_tiles))
        t0 = time.perf_counter()
        with torch.no_grad():
            lr_tiles = grid.crop(padded, chunk_tiles).split(settings.batch_tiles)
            hr_tiles = [None] * len(lr_tiles) if estimate is None else hr_grid.crop(estimate, chunk_tiles).split(settings.batch_tiles)
            cond = torch.cat([backbone.condition(b, e) for b, e in zip(lr_tiles, hr_tiles, strict=True)])
        seconds["condition"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            routed = None if tile_plan is None or tile_plan.by_student is None \
                else tile_plan.by_student[first : first + len(chunk_tiles)].to(device)
            run = sample_tiles(
                Denoiser(backbone, student, routed, compact_student,
                         None if on_compact is None else on_compact[first : first + len(chunk_tiles)].to(device)),
                latent_grid.crop(noise, chunk_tiles), cond, policy, settings,
                [generators[i] for i in chunk_tiles], performance=performance, inject=inject,
                progress=_chunk_progress(progress, first, len(chunk_tiles), n, sum(r.nfe for r in runs)),
                start=None if tile_plan is None else tile_plan.start[first : first + len(chunk_tiles)].to(device),
            )
        seconds["sampling"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        accumulate(canvas, run.x0, [latent_grid.boxes[i] for i in chunk_tiles], total, tiling.fusion_sigma, owner, list(chunk_tiles))
        seconds["fusion"] += time.perf_counter() - t0
        runs.append(RunSummary(run.steps.cpu(), run.exit_t.cpu(), run.category.cpu(), run.nfe, run.seconds,
                               run.nfe_student))
        del run, cond  # the chunk's states are in the canvas now
    del noise
    summary = RunSummary.merge(runs)

    t0 = time.perf_counter()
    with torch.no_grad():
        image = backbone.decode(canvas).float()[..., : h * spec.scale_factor, : w * spec.scale_factor]
        image = apply_color_fix(color_fix, image.clamp(-1, 1), lr)
    seconds["decode"] = time.perf_counter() - t0
    seconds.update(summary.seconds)
    seconds["total"] = time.perf_counter() - start
    return PipelineOutput(image=image, run=summary, grid=grid, input_size=(h, w), seconds=seconds,
                          difficulty=None if difficulty is None else difficulty.cpu(),
                          by_student=None if tile_plan is None or tile_plan.by_student is None
                          else tile_plan.by_student.cpu(),
                          by_compact_student=None if tile_plan is None or tile_plan.by_student is None
                          else Denoiser(backbone, student, tile_plan.by_student.cpu(), compact_student, on_compact)
                          .networks(n, torch.device("cpu")) == COMPACT_STUDENT,
                          prior_route=route)


def tile_difficulty(lr: Tensor, estimate: Tensor | None, grid: TileGrid, scale: int, chunk: int) -> Tensor:
    """Each tile's difficulty (``tile_texture``) on the prior's estimate, or on the bicubic upsample
    of the input for a backbone without a prior; ``chunk`` tiles at a time."""
    parts = []
    for first in range(0, len(grid), chunk):
        chunk_tiles = range(first, min(len(grid), first + chunk))
        if estimate is not None:
            tiles = grid.scaled(scale).crop(estimate, chunk_tiles)
        else:
            tiles = F.interpolate(grid.crop(lr, chunk_tiles), scale_factor=scale, mode="bicubic", align_corners=False)
        parts.append(tile_texture(tiles.clamp(-1, 1)))
    return torch.cat(parts)


def _chunk_progress(
    progress: ProgressFn | None, first: int, size: int, total: int, nfe_before: int
) -> ProgressFn | None:
    """Map one chunk's progress onto the whole image's."""
    if progress is None:
        return None
    return lambda done, nfe: progress((first + done * size) / total, nfe_before + nfe)
