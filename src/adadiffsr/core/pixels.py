"""The one pixel-range convention: images are RGB in ``[0, 1]`` at the library's boundaries (files,
PIL, metrics, priors' own networks) and in ``[-1, 1]`` inside the diffusion engine and its backbones.
These two functions are the only place the conversion is written (diffusers' names)."""

from __future__ import annotations

from torch import Tensor


def normalize(rgb: Tensor) -> Tensor:
    """``[0, 1]`` -> ``[-1, 1]``."""
    return rgb * 2 - 1


def denormalize(x: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]``, not clamped (callers clamp where they quantise)."""
    return (x + 1) / 2
