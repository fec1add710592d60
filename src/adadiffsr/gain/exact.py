"""The exact information gain as a sampler ``GainFn``: metrics on the decoded estimates."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor

from ..backbones.base import Backbone
from .quality import GainConfig, components, digest, information_gain, measure, normalise


class ExactGain:
    """``(x0, x0_prev, cond, t) -> (n, 2)`` FR and NR gains, from the metrics of ``GainConfig``.

    The features compared are pixels: the decoded current and previous estimates, and the decoded
    condition as the input's feature (for the compact backbone: the bicubic upsample). The gain of
    a tile's first step, which has no previous estimate, is 0. Each estimate's performance is
    computed once: the previous step's is remembered by the bytes of the estimate.
    """

    def __init__(self, backbone: Backbone, config: GainConfig = GainConfig(), cache_size: int = 4096) -> None:
        self.backbone, self.config = backbone, config
        self.total = backbone.spec.schedule.num_train_timesteps
        self.cache: OrderedDict[tuple[str, str], Tensor] = OrderedDict()
        self.cache_size = cache_size

    def _compute(self, x0: Tensor, cond: Tensor) -> Tensor:
        with torch.no_grad():
            estimate = ((self.backbone.decode(x0).float() + 1) / 2).clamp(0, 1).cpu()
            reference = (self.backbone.decode(self.backbone.reference_feature(cond)).float() + 1) / 2
        raw = measure(self.config, estimate, reference.clamp(0, 1).cpu())
        return components(self.config, normalise(self.config, raw))

    def performance(self, x0: Tensor, cond: Tensor) -> Tensor:
        """``R`` components ``(n, 2)`` of working-space estimates against their conditions."""
        keys = [(digest(a), digest(b)) for a, b in zip(x0, cond, strict=True)]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            fresh = self._compute(x0[missing], cond[missing])
            for row, i in zip(fresh, missing, strict=True):
                self.cache[keys[i]] = row
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return torch.stack([self.cache[key] for key in keys])

    def __call__(self, x0: Tensor, x0_prev: Tensor | None, cond: Tensor, t: Tensor) -> Tensor:
        r_now = self.performance(x0, cond)
        if x0_prev is None:
            return torch.zeros_like(r_now).float().to(x0.device)
        r_prev = self.performance(x0_prev, cond)
        return information_gain(r_now, r_prev, t.cpu(), self.config.nr_from * self.total).float().to(x0.device)
