"""The DDPM noise schedule and the skip-step codebook (AdaDiffSR 3.3).

The codebook stores, for every timestep ``t`` of the training schedule and every interval ``k`` of
an interval set, the coefficients of one jump ``t -> t - k``. A jump below 0 lands on the clean
sample (``alpha_cumprod = 1``), so any walk ends there. Coefficients are gathered per sample, so a
batch can hold tiles at different timesteps that jump by different intervals.

Two update rules share the codebook:

- ``ddim`` (DDIM, Song et al. eq. 12, eta = 0 unless given):
  ``x' = sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z``
- ``ddpm`` (the DDPM posterior q(x_t' | x_t, x0), Ho et al. eq. 7, over a skipped step):
  ``x' = c0 x0 + ct x_t + s z``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..errors import ConfigError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
UpdateRule = Literal["ddim", "ddpm"]
UPDATE_RULES: tuple[str, ...] = get_args(UpdateRule)
PredictionType = Literal["epsilon", "v_prediction", "sample"]


@dataclass(frozen=True)
class NoiseSchedule:
    """``alphas_cumprod`` of a discrete diffusion schedule (float32, as diffusers holds it)."""

    alphas_cumprod: Tensor  # (T,)

    @classmethod
    def from_betas(
        cls,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: BetaSchedule = "linear",
    ) -> NoiseSchedule:
        """Betas as diffusers' schedulers define them (same names, same formulas)."""
        n = num_train_timesteps
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":

            def alpha_bar(t: float) -> float:
                return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

            betas = torch.tensor(
                [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
                dtype=torch.float32,
            )
        else:
            raise ConfigError(f"unknown beta schedule {beta_schedule!r}")
        # diffusers accumulates in float32; we do the same so coefficients match its schedulers.
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


@dataclass(frozen=True)
class SkipCodebook:
    """Per-(interval, timestep) coefficients of one jump ``t -> t - k``. Tables are ``(K, T)``."""

    intervals: tuple[int, ...]
    sqrt_alpha: Tensor  # (T,)   sqrt(a_t)
    sqrt_one_minus_alpha: Tensor  # (T,)   sqrt(1 - a_t)
    alpha_prev: Tensor  # (K, T) a_{t-k}, 1 where t-k < 0
    ddim_sigma: Tensor  # (K, T) DDIM noise scale at eta = 1
    ddpm_x0: Tensor  # (K, T) posterior mean coefficient of x0
    ddpm_xt: Tensor  # (K, T) posterior mean coefficient of x_t
    ddpm_std: Tensor  # (K, T) posterior standard deviation

    @classmethod
    def build(cls, schedule: NoiseSchedule, intervals: tuple[int, ...]) -> SkipCodebook:
        intervals = tuple(int(k) for k in intervals)
        n = schedule.num_train_timesteps
        if not intervals or any(k < 1 or k > n for k in intervals):
            raise ConfigError(f"intervals must be integers in 1..{n}, got {intervals}")
        a = schedule.alphas_cumprod.float()  # (T,)
        t = torch.arange(n)
        prev = torch.stack([t - k for k in intervals])  # (K, T)
        a_t = a.expand(len(intervals), n)
        a_prev = torch.where(prev >= 0, a[prev.clamp(min=0)], torch.ones(()))
        beta_t = 1 - a_t / a_prev  # beta of the skipped step
        variance = ((1 - a_prev) / (1 - a_t) * beta_t).clamp(min=0)
        return cls(
            intervals=intervals,
            sqrt_alpha=a.sqrt(),
            sqrt_one_minus_alpha=(1 - a).sqrt(),
            alpha_prev=a_prev,
            ddim_sigma=variance.sqrt(),
            ddpm_x0=a_prev.sqrt() * beta_t / (1 - a_t),
            ddpm_xt=(a_t / a_prev).sqrt() * (1 - a_prev) / (1 - a_t),
            ddpm_std=torch.where(prev >= 0, variance.clamp(min=1e-20).sqrt(), torch.zeros(())),
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.sqrt_alpha.shape[0])

    def interval_index(self, k: int) -> int:
        if k not in self.intervals:
            raise ConfigError(f"interval {k} is not in the codebook's set {self.intervals}")
        return self.intervals.index(k)

    def to(self, device: torch.device | str) -> SkipCodebook:
        return SkipCodebook(
            self.intervals,
            *(getattr(self, f).to(device) for f in _TABLES),
        )

    def next_timestep(self, t: Tensor, k_idx: Tensor) -> Tensor:
        """``t - k`` per sample; -1 once the walk has reached the clean sample."""
        ks = torch.tensor(self.intervals, device=t.device)[k_idx]
        return (t - ks).clamp(min=-1)


_TABLES = ("sqrt_alpha", "sqrt_one_minus_alpha", "alpha_prev", "ddim_sigma", "ddpm_x0", "ddpm_xt", "ddpm_std")


def _per_sample(table: Tensor, *index: Tensor) -> Tensor:
    """Gather ``table[index]`` and shape it ``(B, 1, 1, 1)`` to broadcast over a batch of images."""
    return table[index].view(-1, 1, 1, 1)


def add_noise(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """The forward process ``q(x_t | x0)`` at per-sample timesteps (diffusers' ``add_noise``)."""
    a = schedule.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def prediction_target(
    schedule: NoiseSchedule, prediction_type: PredictionType, x0: Tensor, t: Tensor, noise: Tensor
) -> Tensor:
    """What a backbone of this prediction type should output for ``add_noise(x0, t, noise)``."""
    if prediction_type == "sample":
        return x0
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = schedule.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ConfigError(f"unknown prediction type {prediction_type!r}")


def split_prediction(
    codebook: SkipCodebook, model_output: Tensor, x_t: Tensor, t: Tensor, prediction_type: PredictionType
) -> tuple[Tensor, Tensor]:
    """Turn an eps-, v- or x0-prediction into the pair ``(x0, eps)`` at per-sample timesteps ``t``."""
    sa = _per_sample(codebook.sqrt_alpha, t)
    s1a = _per_sample(codebook.sqrt_one_minus_alpha, t)
    if prediction_type == "epsilon":
        return (x_t - s1a * model_output) / sa, model_output
    if prediction_type == "sample":
        return model_output, (x_t - sa * model_output) / s1a
    if prediction_type == "v_prediction":
        return sa * x_t - s1a * model_output, sa * model_output + s1a * x_t
    raise ConfigError(f"unknown prediction type {prediction_type!r}")


def skip_step(
    codebook: SkipCodebook,
    rule: UpdateRule,
    x_t: Tensor,
    x0: Tensor,
    eps: Tensor,
    t: Tensor,
    k_idx: Tensor,
    noise: Tensor | None = None,
    eta: float = 0.0,
) -> Tensor:
    """One jump ``t -> t - k`` per sample (k = ``intervals[k_idx]``), given the predicted ``x0``/``eps``.

    ``noise`` (standard normal, shaped like ``x_t``) is needed for ``ddpm`` and for ``ddim`` with
    ``eta > 0``; tiles whose jump reaches the clean sample get none.
    """
    if rule == "ddim":
        a_prev = _per_sample(codebook.alpha_prev, k_idx, t)
        sigma = eta * _per_sample(codebook.ddim_sigma, k_idx, t)
        x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x_prev = x_prev + sigma * _require(noise)
        return x_prev
    if rule == "ddpm":
        x_prev = _per_sample(codebook.ddpm_x0, k_idx, t) * x0 + _per_sample(codebook.ddpm_xt, k_idx, t) * x_t
        return x_prev + _per_sample(codebook.ddpm_std, k_idx, t) * _require(noise)
    raise ConfigError(f"unknown update rule {rule!r}; use 'ddim' or 'ddpm'")


def _require(noise: Tensor | None) -> Tensor:
    if noise is None:
        raise ValueError("this update rule is stochastic: pass noise")
    return noise
