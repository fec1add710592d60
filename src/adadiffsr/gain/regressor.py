"""The light MMLE regressor: estimates a tile's information gain without computing any metric.

It learns the *performance* ``R`` of eq. 2 (FR and NR components, in ``[0, 1]``) of one estimate,
and the gain is then eq. 1 over two of its outputs, ``I_i = tanh(R_i - R_{i-1})``: the same
function scores the current and the previous estimate, so its errors largely cancel in the
difference, and the gain keeps the structure of the exact one (the NR part only in the second
half of the path).

Input: local statistics of the tile (mean and standard deviation over ``pool x pool`` cells of the
working-space estimate, of its difference from the input's feature, and of that feature), a few
convolutions, global average and max pooling and a small head. Its cost grows with
``(h / pool) * (w / pool)``: about 2% of one backbone evaluation for the default model.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.backbone import Backbone
from ..weights import companion_path, load_module, save_module
from .quality import digest

ARCHITECTURE = "quality-regressor"


@dataclass(frozen=True)
class RegressorConfig:
    in_channels: int = 48  # working-space channels of the backbone
    width: int = 48
    pool: int = 4  # statistics cell: cost grows with (h / pool) * (w / pool)
    outputs: int = 2  # FR and NR performance
    nr_from: float = 0.5  # the NR gain counts once t < nr_from * num_train_timesteps
    num_train_timesteps: int = 1000  # of the backbone it was trained for (a record; the backbone's spec rules)


def tile_statistics(x: Tensor, pool: int) -> Tensor:
    """``(n, c, h, w) -> (n, 2c, h / pool, w / pool)``: mean and standard deviation per cell, the
    texture energy that no-reference measures respond to and plain average pooling would lose."""
    x = x.float()
    mean = F.avg_pool2d(x, pool, ceil_mode=True)
    square = F.avg_pool2d(x * x, pool, ceil_mode=True)
    return torch.cat([mean, (square - mean * mean).clamp(min=0).sqrt()], 1)


def regressor_inputs(x0: Tensor, reference: Tensor, pool: int) -> Tensor:
    """The per-estimate input ``(n, 4c, h', w')``: statistics of the estimate and of its difference
    from the input's feature (the statistics of the feature itself are added by the model)."""
    return torch.cat([tile_statistics(x0, pool), tile_statistics(x0 - reference, pool)], 1)


class QualityRegressor(nn.Module):
    """``(estimate statistics, reference statistics) -> (n, 2)`` estimated FR and NR performance."""

    def __init__(self, config: RegressorConfig = RegressorConfig()) -> None:
        super().__init__()
        self.config = config
        c, w = config.in_channels, config.width
        self.body = nn.Sequential(
            nn.Conv2d(6 * c, w, 1), nn.SiLU(),  # mix the statistics per cell first: cheap on many channels
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.SiLU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * w, w), nn.SiLU(), nn.Linear(w, config.outputs))

    def forward(self, estimate_stats: Tensor, reference_stats: Tensor) -> Tensor:
        h = self.body(torch.cat([estimate_stats, reference_stats], 1))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)  # global average (and max) pooling
        return torch.sigmoid(self.head(pooled))

    def performance(self, x0: Tensor, reference: Tensor) -> Tensor:
        """``R (n, 2)`` of working-space estimates against the input's feature."""
        p = self.config.pool
        return self(regressor_inputs(x0, reference, p), tile_statistics(reference, p))


class LearnedPerformance:
    """The regressor as a sampler ``PerformanceFn``: ``(x0, cond, t) -> (n, 2)`` estimated FR and
    NR performance; the sampler turns consecutive values into the gain (eq. 1). A tile's input
    feature is computed once (for latent backbones an encoder pass), remembered by the bytes of
    its condition."""

    def __init__(self, backbone: Backbone, model: QualityRegressor, cache_size: int = 256) -> None:
        self.backbone, self.model = backbone, model
        self.nr_start = model.config.nr_from * backbone.spec.schedule.num_train_timesteps  # T is the backbone's
        self.cache: OrderedDict[str, Tensor] = OrderedDict()
        self.cache_size = cache_size

    def reference(self, cond: Tensor) -> Tensor:
        if not self.backbone.costly_reference:  # the condition or a slice of it: free
            return self.backbone.reference_feature(cond)
        keys = [digest(c) for c in cond]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            fresh = self.backbone.reference_feature(cond[missing])
            for row, i in zip(fresh, missing, strict=True):
                self.cache[keys[i]] = row
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return torch.stack([self.cache[key] for key in keys])

    @torch.no_grad()
    def __call__(self, x0: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        return self.model.performance(x0, self.reference(cond))


def save_regressor(model: QualityRegressor, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    save_module(model, path, ARCHITECTURE, asdict(model.config), metadata)


def load_regressor(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> QualityRegressor:
    return load_module(path, ARCHITECTURE, lambda config: QualityRegressor(RegressorConfig(**config)), device,
                       " (retrain it with `adadiffsr train regressor`)")


def regressor_path_for(backbone_weights: str | os.PathLike[str]) -> Path:
    """``weights/compact-x4.safetensors`` -> ``weights/compact-x4.regressor.safetensors``."""
    return companion_path(backbone_weights, "regressor")
