"""One denoising step's arithmetic, where a walk starts, and the callables the sampler is handed.

The sampling loop (``engine/sampler.py``) and PFJ's training walk (``train/pfj.py``) both run
``denoise_step`` after a backbone call, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..errors import ConfigError
from .backbone import BackboneSpec
from .schedule import SkipCodebook, UpdateRule, skip_step, split_prediction

InjectFn = Callable[[Tensor, Tensor], Tensor]
"""``(cond, gain (n, 2)) -> cond_hat``: PFJ's modulation of the condition before each backbone call."""

ProgressFn = Callable[[float, int], None]
"""``(fraction of the walk done over all tiles, NFE so far)``."""


def denoise_step(
    codebook: SkipCodebook,
    spec: BackboneSpec,
    model_output: Tensor,
    x_t: Tensor,
    t: Tensor,
    k_idx: Tensor,
    rule: UpdateRule = "ddim",
    noise: Tensor | None = None,
    eta: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The arithmetic of one step after the backbone call: the estimate ``x0`` (clipped when the
    backbone asks for it) and the state at ``t - k``."""
    x0, eps = split_prediction(codebook, model_output, x_t, t, spec.prediction_type)
    if spec.clip_sample:
        x0 = x0.clamp(-1, 1)
    return x0, skip_step(codebook, rule, x_t, x0, eps, t, k_idx, noise, eta)


def strength_timestep(strength: float, num_train_timesteps: int) -> int:
    """The first timestep at ``strength`` (diffusers' img2img meaning): ``round(strength * T) - 1``;
    -1 (no step at all) at strength 0."""
    if not 0 <= strength <= 1:
        raise ConfigError(f"strength must be in [0, 1], got {strength}")
    return round(strength * num_train_timesteps) - 1
