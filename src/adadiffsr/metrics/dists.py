"""DISTS (Ding et al., TPAMI 2020) from weights the user already has (``vgg.py``):

- ``vgg16-397923af``: torchvision's ImageNet VGG16 (DISTS replaces its max pooling by L2 pooling);
- ``dists-v1``: the ``alpha`` and ``beta`` weights of the ``DISTS_pytorch`` package
  (``DISTS_pytorch/weights.pt``, renamed), each ``(1, 1475, 1, 1)``.

The distance compares, for the image itself and the five VGG stages, the spatial means (structure
of "texture") and the covariances (structure) of both images' features, weighted per channel:
``1 - sum_k alpha_k S1_k + beta_k S2_k`` with the weights normalised to sum to 1; 0 for identical
images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from . import local_weights, vgg

DISTS_NAME = "dists-v1"
FILES = {vgg.VGG_NAME: "torchvision vgg16-397923af.pth", DISTS_NAME: "the DISTS_pytorch package's weights.pt"}
STAGE_CHANNELS = (3, *vgg.CHANNELS)


def missing() -> str:
    return local_weights.missing(FILES)


class L2Pool(nn.Module):
    """Stride-2 L2 pooling with a 3x3 Hann window, per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.hann_window(5, periodic=False)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


class DISTS(nn.Module):
    """``(x, y)`` in ``[0, 1]`` -> ``(B,)`` distances."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg.vgg16_features(pool=L2Pool)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("alpha", torch.zeros(1, sum(STAGE_CHANNELS), 1, 1))
        self.register_buffer("beta", torch.zeros(1, sum(STAGE_CHANNELS), 1, 1))

    def stages(self, x: Tensor) -> list[Tensor]:
        out, h = [x], (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in vgg.TAPS:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor, c1: float = 1e-6, c2: float = 1e-6) -> Tensor:
        total = self.alpha.sum() + self.beta.sum()
        alphas = (self.alpha / total).split(STAGE_CHANNELS, dim=1)
        betas = (self.beta / total).split(STAGE_CHANNELS, dim=1)
        similarity = torch.zeros(x.shape[0], device=x.device)
        for a, b, fx, fy in zip(alphas, betas, self.stages(x), self.stages(y), strict=True):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            vx, vy = ((fx - mx) ** 2).mean((2, 3), keepdim=True), ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            similarity = similarity + (a * s1 + b * s2).sum((1, 2, 3))
        return 1 - similarity


def load_dists() -> DISTS:
    if missing():
        raise WeightsError(f"DISTS {missing()}")
    model = DISTS()
    vgg.load_vgg16(model.features, "DISTS")
    path, stored = local_weights.read_named(DISTS_NAME)
    try:
        for name in ("alpha", "beta"):
            getattr(model, name).copy_(stored[name].reshape(getattr(model, name).shape))
    except (KeyError, RuntimeError) as e:
        raise WeightsError(f"{path}: does not hold DISTS alpha/beta of 1475 channels ({e})") from e
    return model.eval().requires_grad_(False)



def dists(output: Tensor, target: Tensor) -> Tensor:
    """DISTS of ``(B, 3, H, W)`` batches in ``[0, 1]``: lower is more similar."""
    model = local_weights.loaded(load_dists).to(output.device)
    with torch.no_grad():
        return model(output.float(), target.float()).to(output.dtype)
