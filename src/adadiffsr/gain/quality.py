"""The latent representation performance ``R_i`` of eq. 2 and the information gain of eq. 1.

Each measure ``M_c`` compares the current denoised estimate ``f_i`` of a tile with the input's
feature ``o`` (full-reference) or scores ``f_i`` alone (no-reference). Raw values are mapped to
``[0, 1]``, higher meaning better, by a fitted range; ``R`` is their weighted mean, kept as two
components, full-reference and no-reference, because the sampling policy needs both:

    R_i = sum_c w_c M_c(f_i, o) / sum_c w_c        (eq. 2, per component)
    I_i = tanh(R_i - R_{i-1})                      (eq. 1)

As in the paper, the no-reference gain counts only in the second half of the path (``t < T/2``):
before that the estimate is too noisy for no-reference measures to mean anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError
from ..metrics.registry import METRICS, create_metric

# Ranges (value at 0, value at 1) that map raw scores onto [0, 1]; for lower-is-better metrics
# the first value is the worse one. Fitted on traces of the default model (``adadiffsr analyze
# traces``) where available; these defaults span what tiles of natural images give.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "psnr": (15.0, 35.0),
    "ssim": (0.2, 1.0),
    "ms_ssim": (0.2, 1.0),
    "gmsd": (0.35, 0.0),
    "nlpd": (1.0, 0.0),
    "niqe": (20.0, 3.0),
    "brisque": (100.0, 0.0),
    "piqe": (100.0, 0.0),
    "lpips": (0.6, 0.0),
    "dists": (0.5, 0.0),
}


@dataclass(frozen=True)
class GainConfig:
    """Which measures make up ``R``, their weights and ranges, and where the NR part starts."""

    fr_metrics: tuple[str, ...] = ("psnr", "ssim", "nlpd")
    nr_metrics: tuple[str, ...] = ("niqe", "piqe")
    weights: dict[str, float] = field(default_factory=dict)  # default 1 each
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # default DEFAULT_RANGES
    nr_from: float = 0.5  # NR gain counts once t < nr_from * T

    def __post_init__(self) -> None:
        for name in self.fr_metrics + self.nr_metrics:
            spec = create_metric(name)
            if name in self.fr_metrics and not spec.full_reference:
                raise ConfigError(f"{name} is a no-reference metric; list it in nr_metrics")
            if name in self.nr_metrics and spec.full_reference:
                raise ConfigError(f"{name} is a full-reference metric; list it in fr_metrics")
            if name not in self.ranges and name not in DEFAULT_RANGES:
                raise ConfigError(f"no range to normalise {name}; give one in ranges")

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.fr_metrics + self.nr_metrics

    def range_of(self, name: str) -> tuple[float, float]:
        return self.ranges.get(name, DEFAULT_RANGES[name])


def measure(cfg: GainConfig, estimate: Tensor, reference: Tensor) -> Tensor:
    """Raw scores ``(n, M)`` of ``estimate`` against ``reference`` (``(n, 3, H, W)`` in [0, 1])."""
    columns = []
    for name in cfg.metrics:
        spec = METRICS[name]
        assert spec.fn is not None  # checked in GainConfig
        try:
            columns.append(spec.fn(estimate.double(), reference.double() if spec.full_reference else None).double())
        except ValueError:  # the tile is too small for this measure (NIQE needs two 96x96 blocks)
            columns.append(torch.full((estimate.shape[0],), float("nan"), dtype=torch.float64))
    return torch.stack(columns, 1)


def normalise(cfg: GainConfig, raw: Tensor) -> Tensor:
    """``(n, M)`` raw scores -> ``[0, 1]``, higher is better, through each metric's range."""
    lo = torch.tensor([cfg.range_of(m)[0] for m in cfg.metrics], dtype=raw.dtype)
    hi = torch.tensor([cfg.range_of(m)[1] for m in cfg.metrics], dtype=raw.dtype)
    return ((raw - lo) / (hi - lo)).clamp(0, 1)


def components(cfg: GainConfig, normalised: Tensor) -> Tensor:
    """``(n, M)`` normalised scores -> ``(n, 2)``: the FR and NR weighted means (eq. 2)."""
    w = torch.tensor([cfg.weights.get(m, 1.0) for m in cfg.metrics], dtype=normalised.dtype)
    w = w * torch.isfinite(normalised)  # measures that could not be computed (NaN) do not count
    values = torch.nan_to_num(normalised, nan=0.0)
    k = len(cfg.fr_metrics)

    def mean(part: slice) -> Tensor:
        return (values[:, part] * w[:, part]).sum(1) / w[:, part].sum(1).clamp(min=1e-12)

    return torch.stack([mean(slice(0, k)), mean(slice(k, None))], 1)



def digest(tensor: Tensor) -> str:
    """A short content hash of a tensor: the key under which per-tile results are remembered."""
    return hashlib.blake2b(tensor.detach().float().contiguous().cpu().numpy().tobytes(), digest_size=16).hexdigest()
