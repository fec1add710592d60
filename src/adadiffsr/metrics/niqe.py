"""NIQE (Mittal et al., "Making a completely blind image quality analyzer", 2013). Lower is better.

Follows the official MATLAB release (96x96 blocks, no overlap, two scales, the pristine model of
``niqe_pris_params.npz`` shipped by BasicSR 1.4.2), vectorised over blocks in float64.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .psnr import rgb_to_y
from .resize import imresize

BLOCK = 96


@lru_cache(maxsize=1)
def _params() -> tuple[Tensor, Tensor, Tensor]:
    with resources.files(__package__).joinpath("niqe_pris_params.npz").open("rb") as f:
        d = np.load(f)
        mu, cov, window = d["mu_pris_param"], d["cov_pris_param"], d["gaussian_window"]
    return torch.from_numpy(mu).double(), torch.from_numpy(cov).double(), torch.from_numpy(window).double()


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[Tensor, Tensor]:
    gam = torch.arange(0.2, 10.001, 0.001, dtype=torch.float64)
    r = torch.exp(2 * torch.lgamma(2 / gam) - torch.lgamma(1 / gam) - torch.lgamma(3 / gam))
    return gam, r


def _aggd(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric generalised Gaussian fit per row of ``x (n, pixels)``: alpha, beta_left, beta_right."""
    gam, r_gam = _gamma_table()
    neg, pos = x < 0, x > 0
    left = torch.sqrt((x**2 * neg).sum(1) / neg.sum(1))
    right = torch.sqrt((x**2 * pos).sum(1) / pos.sum(1))
    gammahat = left / right
    rhat = x.abs().mean(1) ** 2 / (x**2).mean(1)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    alpha = gam[((r_gam[None] - rhatnorm[:, None]) ** 2).argmin(1)]
    ratio = torch.exp(torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).sqrt()
    return alpha, left * ratio, right * ratio


def _features(blocks: Tensor) -> Tensor:
    """``(n, b, b)`` normalised blocks -> ``(n, 18)`` NIQE features."""
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, bl, br = _aggd(flat)
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        product = (blocks * torch.roll(blocks, shift, dims=(1, 2))).reshape(n, -1)
        a, l, r = _aggd(product)
        mean = (r - l) * torch.exp(torch.lgamma(2 / a) - torch.lgamma(1 / a))
        feats += [a, mean, l, r]
    return torch.stack(feats, 1)


def _normalise(image: Tensor, window: Tensor) -> Tensor:
    """Local mean/contrast normalisation with the 7x7 window, 'nearest' borders."""
    x = F.pad(image[None, None], (3, 3, 3, 3), mode="replicate")
    k = window[None, None]
    mu = F.conv2d(x, k)[0, 0]
    sigma = (F.conv2d(x**2, k)[0, 0] - mu**2).abs().sqrt()
    return (image - mu) / (sigma + 1)


def niqe_y(y: Tensor) -> float:
    """NIQE of one luma image ``(H, W)`` with values in ``[0, 255]`` (rounded, as the reference)."""
    mu_p, cov_p, window = _params()
    h, w = y.shape
    nh, nw = h // BLOCK, w // BLOCK
    if nh * nw < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks, got a {w}x{h} image")
    img = y.double()[: nh * BLOCK, : nw * BLOCK]
    feats = []
    for scale in (1, 2):
        norm = _normalise(img, window)
        b = BLOCK // scale
        # blocks in column-major order as the reference: (nw, nh, b, b)
        blocks = norm[: nh * b, : nw * b].reshape(nh, b, nw, b).permute(2, 0, 1, 3).reshape(-1, b, b)
        feats.append(_features(blocks))
        if scale == 1:
            img = imresize(img / 255.0, 0.5) * 255.0
    dist = torch.cat(feats, 1)
    mu_d = torch.nanmean(dist, 0)
    finite = dist[~torch.isnan(dist).any(1)]
    cov_d = torch.cov(finite.T)
    diff = (mu_p[0] - mu_d)[None]
    quality = diff @ torch.linalg.pinv((cov_p + cov_d) / 2) @ diff.T
    return float(quality.sqrt().squeeze())


def niqe(image: Tensor, border: int = 0) -> Tensor:
    """Per-image NIQE of ``(B, 3, H, W)`` RGB in ``[0, 1]`` (MATLAB's Y channel, 8-bit rounded).

    Needs at least two 96x96 blocks (e.g. 96x192)."""
    y = (rgb_to_y((image.clamp(0, 1) * 255).round() / 255) * 255).round()[:, 0]
    if border:
        y = y[:, border:-border, border:-border]
    return torch.tensor([niqe_y(im) for im in y.cpu()], dtype=torch.float64)
