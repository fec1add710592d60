"""BRISQUE (Mittal et al., "No-reference image quality assessment in the spatial domain", 2012).
Lower is better.

Features and model are those of the PyPI ``brisque`` 0.2.0 package (Apache-2.0, by Ricardo
Ocampo): 36 natural-scene statistics (generalised Gaussian fits of the mean-subtracted
contrast-normalised image and of its four neighbour products, at full and half scale), scaled to
``[-1, 1]`` and scored by its epsilon-SVR (RBF kernel). Its model, converted from libsvm text and
pickle to ``brisque_model.npz``, ships with this package.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@lru_cache(maxsize=1)
def _model() -> dict[str, Tensor]:
    with resources.files(__package__).joinpath("brisque_model.npz").open("rb") as f:
        d = np.load(f)
        return {k: torch.from_numpy(d[k]).double() for k in d.files}


def _gaussian(size: int = 7, sigma: float = 7 / 6) -> Tensor:
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return (k / k.sum())[None, None]


def mscn(gray: Tensor) -> Tensor:
    """Mean-subtracted contrast-normalised coefficients of ``(H, W)`` gray in ``[0, 1]`` (zero borders)."""
    k = _gaussian().to(gray)
    x = gray[None, None]
    mu = F.conv2d(x, k, padding=3)
    sigma = (mu**2 - F.conv2d(x**2, k, padding=3)).abs().sqrt()
    return ((x - mu) / (sigma + 1 / 255))[0, 0]


def _phi(alpha: Tensor) -> Tensor:
    return torch.exp(2 * torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha))


def _solve_alpha(target: float) -> float:
    """The shape ``alpha`` with ``phi(alpha) = target`` (phi rises monotonically), by bisection."""
    lo, hi = torch.tensor(0.01, dtype=torch.float64), torch.tensor(50.0, dtype=torch.float64)
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _phi(mid) < target else (lo, mid)
    return float((lo + hi) / 2)


def aggd_features(x: Tensor) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit: ``alpha, mean, sigma_left, sigma_right``."""
    x = x.flatten()
    left = torch.sqrt((x[x < 0] ** 2).mean())
    right = torch.sqrt((x[x >= 0] ** 2).mean())
    gamma = left / right
    r_hat = x.abs().mean() ** 2 / (x**2).mean()
    r_norm = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = _solve_alpha(float(r_norm))
    a = torch.tensor(alpha, dtype=torch.float64)
    constant = torch.exp(0.5 * (torch.lgamma(1 / a) - torch.lgamma(3 / a)))
    mean = (right - left) * constant * torch.exp(torch.lgamma(2 / a) - torch.lgamma(1 / a))
    return alpha, float(mean), float(left), float(right)


def features(gray: Tensor) -> list[float]:
    """18 features of one scale."""
    m = mscn(gray)
    alpha, _, left, right = aggd_features(m)
    out = [alpha, (left**2 + right**2) / 2]
    products = (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:])
    for p in products:
        alpha, mean, left, right = aggd_features(p)
        out += [alpha, mean, left**2, right**2]
    return out


def brisque_gray(gray: Tensor) -> float:
    """BRISQUE of ``(H, W)`` gray values in ``[0, 1]``."""
    gray = gray.double()
    half = F.interpolate(gray[None, None], scale_factor=0.5, mode="bicubic", align_corners=False)[0, 0]
    f = torch.tensor(features(gray) + features(half), dtype=torch.float64)
    m = _model()
    scaled = -1 + 2.0 / (m["feature_max"] - m["feature_min"]) * (f - m["feature_min"])
    kernel = torch.exp(-m["gamma"] * ((m["support_vectors"] - scaled[None]) ** 2).sum(1))
    return float((m["dual_coef"] * kernel).sum() - m["rho"])


def brisque(image: Tensor) -> Tensor:
    """Per-image BRISQUE of ``(B, 3, H, W)`` RGB in ``[0, 1]`` (8-bit rounded, scikit-image gray)."""
    weights = torch.tensor([0.2125, 0.7154, 0.0721], dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    gray = (((image.clamp(0, 1) * 255).round().double() / 255) * weights).sum(1)
    return torch.tensor([brisque_gray(g) for g in gray.cpu()], dtype=torch.float64)
