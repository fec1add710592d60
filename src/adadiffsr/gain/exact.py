"""The exact performance ``R`` (eq. 2) as a sampler ``PerformanceFn``: metrics on decoded estimates."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.backbone import Backbone
from ..core.pixels import denormalize
from .quality import GainConfig, components, measure, normalise


class ExactPerformance:
    """``(x0, cond, t) -> (n, 2)`` FR and NR performance from the metrics of ``GainConfig``.

    The features compared are pixels: the decoded estimates, and the decoded input feature
    (for the compact backbone: the bicubic upsample). The sampler turns consecutive values into
    the gain (eq. 1), so each estimate is scored once.
    """

    def __init__(self, backbone: Backbone, config: GainConfig = GainConfig()) -> None:
        self.backbone, self.config = backbone, config
        self.nr_start = config.nr_from * backbone.spec.schedule.num_train_timesteps

    @torch.no_grad()
    def __call__(self, x0: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        estimate = denormalize(self.backbone.decode(x0).float()).clamp(0, 1).cpu()
        reference = denormalize(self.backbone.decode(self.backbone.reference_feature(cond)).float())
        raw = measure(self.config, estimate, reference.clamp(0, 1).cpu())
        return components(self.config, normalise(self.config, raw)).float().to(x0.device)
