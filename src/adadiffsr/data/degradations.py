"""The Real-ESRGAN second-order degradation pipeline (Wang et al., ICCVW 2021), seeded.

``degrade(hr, rng, config)`` turns a ground-truth image into a realistic low-resolution input:
blur -> random resize -> noise -> JPEG, twice, then the final resize + sinc filter and JPEG in
random order. The defaults of ``RealESRGANDegradation`` are the published ones
(``options/train_realesrnet_x4plus.yml`` of Real-ESRGAN). Images are ``(3, H, W)`` in ``[0, 1]``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..core.pixels import LUMA
from ..errors import ConfigError

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class BlurConfig:
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNEL_TYPES
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)


@dataclass(frozen=True)
class StageConfig:
    """One order of degradation: blur, resize, noise, JPEG."""

    blur: BlurConfig = BlurConfig()
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)  # sigma in 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)


@dataclass(frozen=True)
class RealESRGANDegradation:
    """The whole pipeline; defaults are Real-ESRGAN x4plus's."""

    scale: int = 4
    first: StageConfig = StageConfig()
    second: StageConfig = StageConfig(
        blur=BlurConfig(sigma=(0.2, 1.5)),
        blur_prob=0.8,
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )
    final_sinc_prob: float = 0.8


# ---------------------------------------------------------------- kernels


def _grid(size: int) -> Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack([xx, yy], dim=-1)  # (size, size, 2)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> Tensor:
    """``d^T Sigma^-1 d`` over the grid, with ``Sigma = R diag(sx^2, sy^2) R^T``."""
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    sigma = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    g = _grid(size)
    return torch.einsum("hwi,ij,hwj->hw", g, torch.linalg.inv(sigma), g)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> Tensor:
    k = torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta))
    return (k / k.sum()).float()


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> Tensor:
    k = torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta)
    return (k / k.sum()).float()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> Tensor:
    k = 1 / (_quadratic_form(size, sigma_x, sigma_y, theta) ** beta + 1)
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """Circular low-pass (2D sinc): ``cutoff * J1(cutoff r) / (2 pi r)``, normalised."""
    r = _grid(size).norm(dim=-1)
    k = cutoff * torch.special.bessel_j1(cutoff * r) / (2 * math.pi * r)
    k[r == 0] = cutoff**2 / (4 * math.pi)
    return (k / k.sum()).float()


def random_blur_kernel(rng: np.random.Generator, cfg: BlurConfig) -> Tensor:
    """A random kernel of Real-ESRGAN's mixture, padded to 21x21."""
    size = int(rng.choice(cfg.kernel_sizes))
    if rng.uniform() < cfg.sinc_prob:
        cutoff = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return _pad21(sinc_kernel(size, cutoff))
    kind = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=np.array(cfg.kernel_prob) / sum(cfg.kernel_prob))]
    sx = rng.uniform(*cfg.sigma)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = rng.uniform(*cfg.sigma), rng.uniform(-math.pi, math.pi)
    if kind.startswith("generalized"):
        beta = rng.uniform(cfg.betag[0], 1) if rng.uniform() < 0.5 else rng.uniform(1, cfg.betag[1])
        return _pad21(generalized_gaussian_kernel(size, sx, sy, theta, beta))
    if kind.startswith("plateau"):
        beta = rng.uniform(cfg.betap[0], 1) if rng.uniform() < 0.5 else rng.uniform(1, cfg.betap[1])
        return _pad21(plateau_kernel(size, sx, sy, theta, beta))
    return _pad21(gaussian_kernel(size, sx, sy, theta))


def _pad21(k: Tensor) -> Tensor:
    p = (21 - k.shape[0]) // 2
    return F.pad(k, (p, p, p, p))


# ---------------------------------------------------------------- operations


def blur(image: Tensor, kernel: Tensor) -> Tensor:
    """Convolve each channel of ``(3, H, W)`` with ``kernel`` (reflect padding)."""
    p = kernel.shape[-1] // 2
    x = F.pad(image[None], (p, p, p, p), mode="reflect") if min(image.shape[-2:]) > p else \
        F.pad(image[None], (p, p, p, p), mode="replicate")
    return F.conv2d(x, kernel.expand(3, 1, *kernel.shape).to(image), groups=3)[0]


def resize(image: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    kwargs = {} if mode == "area" else {"align_corners": False, "antialias": size[0] < image.shape[-2]}
    return F.interpolate(image[None], size=size, mode=mode, **kwargs)[0]


def gaussian_noise(image: Tensor, sigma: float, gray: bool, gen: torch.Generator) -> Tensor:
    """Add N(0, sigma^2) noise (sigma in [0, 1] units); one draw for all channels when ``gray``."""
    shape = (1, *image.shape[1:]) if gray else image.shape
    return image + sigma * torch.randn(shape, generator=gen).expand_as(image)


def poisson_noise(image: Tensor, scale: float, gray: bool, gen: torch.Generator) -> Tensor:
    """Shot noise of an 8-bit image, ``scale`` times its natural strength (basicsr's definition)."""
    levels = 256.0
    if gray:
        luma = (LUMA[0] * image[0] + LUMA[1] * image[1] + LUMA[2] * image[2])[None].clamp(0, 1)
        quantised = (luma * 255).round() / 255
        noise = (torch.poisson(quantised * levels, generator=gen) / levels - quantised).expand_as(image)
    else:
        quantised = (image.clamp(0, 1) * 255).round() / 255
        noise = torch.poisson(quantised * levels, generator=gen) / levels - quantised
    return image + scale * noise


def jpeg(image: Tensor, quality: int) -> Tensor:
    """Encode and decode as JPEG at ``quality`` (4:2:0, as libjpeg's default)."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- the pipeline


def _stage(
    image: Tensor,
    cfg: StageConfig,
    rng: np.random.Generator,
    gen: torch.Generator,
    base: tuple[float, float],
    with_jpeg: bool = True,
) -> Tensor:
    """Blur, resize by a random factor of ``base`` (h, w), noise, and JPEG unless told not to."""
    if rng.uniform() < cfg.blur_prob:
        image = blur(image, random_blur_kernel(rng, cfg.blur))
    kind = rng.choice(3, p=np.array(cfg.resize_prob) / sum(cfg.resize_prob))
    low, high = cfg.resize_range
    factor = rng.uniform(1, high) if kind == 0 else rng.uniform(low, 1) if kind == 1 else 1.0
    image = resize(image, (int(base[0] * factor), int(base[1] * factor)), RESIZE_MODES[rng.choice(3)])
    if rng.uniform() < cfg.gaussian_noise_prob:
        sigma = rng.uniform(*cfg.noise_range) / 255
        gray = rng.uniform() < cfg.gray_noise_prob
        image = gaussian_noise(image, sigma, gray, gen)
    else:
        scale = rng.uniform(*cfg.poisson_scale_range)
        gray = rng.uniform() < cfg.gray_noise_prob
        image = poisson_noise(image, scale, gray, gen)
    if with_jpeg:
        image = jpeg(image.clamp(0, 1), int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)))
    return image


def degrade(hr: Tensor, seed: int, cfg: RealESRGANDegradation = RealESRGANDegradation()) -> Tensor:
    """``(3, H, W)`` ground truth in ``[0, 1]`` -> ``(3, H/s, W/s)`` degraded input, 8-bit values."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    h, w = hr.shape[-2:]
    target = (h // cfg.scale, w // cfg.scale)
    image = _stage(hr.float(), cfg.first, rng, gen, base=(h, w))
    # the second resize is relative to the final size, and its JPEG comes in the final step
    image = _stage(image, cfg.second, rng, gen, base=(h / cfg.scale, w / cfg.scale), with_jpeg=False)
    second = cfg.second
    final_kernel = (
        _pad21(sinc_kernel(int(rng.choice(second.blur.kernel_sizes)), rng.uniform(math.pi / 3, math.pi)))
        if rng.uniform() < cfg.final_sinc_prob
        else None
    )
    quality = int(rng.integers(second.jpeg_range[0], second.jpeg_range[1] + 1))
    mode = RESIZE_MODES[rng.choice(3)]

    def resize_and_sinc(x: Tensor) -> Tensor:
        x = resize(x, target, mode)
        return blur(x, final_kernel) if final_kernel is not None else x

    if rng.uniform() < 0.5:
        image = jpeg(resize_and_sinc(image).clamp(0, 1), quality)
    else:
        image = resize_and_sinc(jpeg(image.clamp(0, 1), quality))
    return ((image.clamp(0, 1) * 255).round() / 255).contiguous()


def bicubic_degrade(hr: Tensor, scale: int = 4) -> Tensor:
    """The classic ``bicubic-x4`` input: antialiased bicubic downscale, 8-bit values."""
    h, w = hr.shape[-2:]
    lr = resize(hr.float(), (h // scale, w // scale), "bicubic")
    return ((lr.clamp(0, 1) * 255).round() / 255).contiguous()


@dataclass(frozen=True)
class MildDegradation:
    """A camera-like input: Gaussian blur, bicubic downscale, Gaussian noise, one JPEG."""

    scale: int = 4
    blur_sigma: float = 1.2  # in ground-truth pixels
    noise_sigma: float = 4.0  # in 8-bit levels
    jpeg_quality: int = 70


def mild_degrade(hr: Tensor, seed: int, cfg: MildDegradation = MildDegradation()) -> Tensor:
    """``(3, H, W)`` in ``[0, 1]`` -> blur, bicubic ``1/scale``, noise and JPEG; 8-bit values."""
    gen = torch.Generator().manual_seed(seed)
    h, w = hr.shape[-2:]
    size = 2 * math.ceil(3 * cfg.blur_sigma) + 1
    image = blur(hr.float(), gaussian_kernel(size, cfg.blur_sigma, cfg.blur_sigma, 0.0))
    image = resize(image, (h // cfg.scale, w // cfg.scale), "bicubic")
    image = gaussian_noise(image, cfg.noise_sigma / 255, False, gen)
    return jpeg(image.clamp(0, 1), cfg.jpeg_quality)


DEGRADATIONS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "realesrgan-x4": lambda hr, seed: degrade(hr, seed),
    "mild-x4": mild_degrade,
    "bicubic-x4": lambda hr, seed: bicubic_degrade(hr),
}
"""Every named degradation, ``(hr (3, H, W) in [0, 1], seed) -> lr``: the one registry the data
pipeline, the training commands and the benchmark read their choices from."""


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``"realesrgan-x4:0.7,bicubic-x4:0.3"`` (or one name, weight 1) -> ``(name, weight)`` pairs of named
    degradations with positive weights."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            pairs.append((name.strip(), float(weight) if weight else 1.0))
        except ValueError as e:
            raise ConfigError(f"degradation mix {text!r}: expected NAME:WEIGHT,... ({e})") from e
    unknown = [name for name, _ in pairs if name not in DEGRADATIONS]
    if not pairs or unknown or any(not w > 0 for _, w in pairs):
        raise ConfigError(f"degradation mix {text!r}: names from {', '.join(DEGRADATIONS)}, with positive weights")
    return tuple(pairs)
