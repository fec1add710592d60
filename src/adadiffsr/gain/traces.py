"""Gain traces: every measure of eq. 2 at every step of fine uniform sampling, tile by tile.

The traces show how the measures evolve (the paper's Fig. 3), give the fitted normalisation ranges,
and are the training set of the learned regressor: tiles are made from seeds, so their features at
any step can be recomputed exactly by sampling again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..core.backbone import Backbone
from ..core.gain import information_gain
from ..core.pixels import denormalize
from ..engine.pipeline import pad_to_multiple
from ..engine.sampler import SamplerSettings, sample_tiles, tile_generators
from ..engine.tiling import Box, TileGrid
from ..io import atomic_write
from ..policies.uniform import UniformPolicy
from .quality import GainConfig, components, measure, normalise
from .regressor import regressor_inputs, tile_statistics


@dataclass
class Trace:
    """One tile's path: ``S`` steps of ``M`` measures."""

    t: Tensor  # (S,) timestep each estimate was made at
    raw: Tensor  # (S, M) raw scores
    performance: Tensor  # (S, 2) R: FR and NR components
    gain: Tensor  # (S, 2) I = tanh(R_i - R_{i-1}), NR zero in the first half
    inputs: Tensor | None = None  # (S, 4C, h', w') float16 regressor inputs per step, if asked for
    reference: Tensor | None = None  # (2C, h', w') float16 statistics of the input's feature, if asked


def trace_tile(
    backbone: Backbone, lr: Tensor, config: GainConfig, interval: int = 20, seed: int = 0, pool: int | None = None
) -> Trace:
    """Sample one tile ``lr (1, 3, h, w)`` in ``[-1, 1]`` uniformly and score every step's estimate
    (``pool``: also keep the regressor's inputs at that statistics cell, its training data)."""
    spec = backbone.spec
    device = lr.device
    with torch.no_grad():
        cond = backbone.condition(backbone.prepare(lr))
        feature = backbone.reference_feature(cond)
        reference = denormalize(backbone.decode(feature).float()).clamp(0, 1).cpu()
    side = (lr.shape[-2] * spec.latent_scale, lr.shape[-1] * spec.latent_scale)
    noise = torch.randn((1, spec.latent_channels, *side), generator=torch.Generator(device=device).manual_seed(seed),
                        device=device)
    recorder = _Recorder(backbone, config, reference, feature, pool)
    with torch.no_grad():
        strength = backbone.spec.default_strength if backbone.starts_from_estimate else 1.0
        sample_tiles(backbone, noise, cond, UniformPolicy(interval), SamplerSettings(strength=strength),
                     tile_generators(seed, 1, device), callback=recorder)
    rows, steps, kept = recorder.rows, recorder.steps, recorder.kept
    raw = torch.stack(rows)
    performance = components(config, normalise(config, raw))
    t = torch.tensor(steps)
    previous = torch.cat([performance[:1], performance[:-1]])
    gain = information_gain(performance, previous, t, config.nr_from * spec.schedule.num_train_timesteps)
    if pool is None:
        return Trace(t, raw, performance, gain)
    return Trace(t, raw, performance, gain, torch.stack(kept), tile_statistics(feature, pool)[0].half().cpu())


class _Recorder:
    """The sampler's step callback: scores each estimate exactly and keeps what it saw."""

    def __init__(self, backbone: Backbone, config: GainConfig, reference: Tensor, feature: Tensor,
                 pool: int | None) -> None:
        self.backbone, self.config, self.reference, self.feature, self.pool = backbone, config, reference, feature, pool
        self.steps: list[int] = []
        self.rows: list[Tensor] = []
        self.kept: list[Tensor] = []

    def __call__(self, step: dict[str, Tensor]) -> None:
        x0 = step["denoised"]
        estimate = denormalize(self.backbone.decode(x0).float()).clamp(0, 1).cpu()
        self.rows.append(measure(self.config, estimate, self.reference)[0])
        self.steps.append(int(step["t"][0]))
        if self.pool is not None:
            self.kept.append(regressor_inputs(x0, self.feature, self.pool)[0].half().cpu())


def flat_and_textured(backbone: Backbone, lr: Tensor) -> list[tuple[str, Box, Tensor]]:
    """The flattest and the most textured tile of ``lr (1, 3, H, W)`` in ``[-1, 1]`` at the backbone's
    tile size (by mean absolute pixel difference): ``(label, box, tile)`` each, as the paper's Fig. 3 shows."""
    lr = pad_to_multiple(lr, backbone.spec.size_multiple)
    tile = backbone.spec.tile_size
    grid = TileGrid.build(lr.shape[-2], lr.shape[-1], tile, tile // 4)
    tiles = grid.crop(lr)
    detail = (tiles[..., 1:, :] - tiles[..., :-1, :]).abs().mean((1, 2, 3)) + (
        tiles[..., 1:] - tiles[..., :-1]).abs().mean((1, 2, 3))
    return [(label, grid.boxes[k], tiles[k : k + 1]) for label, k in
            (("flat", int(detail.argmin())), ("textured", int(detail.argmax())))]


def fit_ranges(config: GainConfig, raw: Tensor, low: float = 0.01, high: float = 0.99) -> dict[str, tuple[float, float]]:
    """Ranges from traces: the 1st and 99th percentiles, ordered worse -> better per metric."""
    from ..metrics.registry import METRICS

    flat = raw.reshape(-1, raw.shape[-1]).double()
    out = {}
    for k, name in enumerate(config.metrics):
        lo, hi = float(torch.quantile(flat[:, k], low)), float(torch.quantile(flat[:, k], high))
        out[name] = (hi, lo) if METRICS[name].lower_is_better else (lo, hi)
    return out


def save_traces(path: Path, traces: list[Trace], config: GainConfig, meta: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Write traces (stacked: tiles x steps) and their fitted ranges to a safetensors file."""
    raw = torch.stack([tr.raw for tr in traces])
    ranges = fit_ranges(config, raw)
    tensors = {
        "t": torch.stack([tr.t for tr in traces]),
        "raw": raw,
        "performance": torch.stack([tr.performance for tr in traces]),
        "gain": torch.stack([tr.gain for tr in traces]),
    }
    if all(tr.inputs is not None and tr.reference is not None for tr in traces):
        tensors["inputs"] = torch.stack([tr.inputs for tr in traces])  # type: ignore[misc]
        tensors["reference"] = torch.stack([tr.reference for tr in traces])  # type: ignore[misc]
    metadata = {"metrics": json.dumps(list(config.metrics)), "config": json.dumps(asdict(config)),
                "fitted_ranges": json.dumps(ranges), **meta}
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata))
    return ranges
