"""LPIPS (Zhang et al., CVPR 2018), VGG variant, from weights the user already has (``vgg.py``):

- ``vgg16-397923af``: torchvision's ImageNet VGG16;
- ``lpips-vgg-v0.1``: the linear layers of the ``lpips`` package (``lpips/weights/v0.1/vgg.pth``,
  keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

The distance: VGG16 features after relu1_2 ... relu5_3 of both images (scaled by the package's
``ScalingLayer``), unit-normalised over channels, squared differences weighted per channel by the
linear layers, averaged over space and summed over the five layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.pixels import normalize
from ..errors import WeightsError
from . import local_weights, vgg

LIN_NAME = "lpips-vgg-v0.1"
FILES = {vgg.VGG_NAME: "torchvision vgg16-397923af.pth", LIN_NAME: "the lpips package's weights/v0.1/vgg.pth"}


def missing() -> str:
    return local_weights.missing(FILES)


class LPIPS(nn.Module):
    """``(x, y)`` in ``[-1, 1]`` -> ``(B,)`` distances."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg.vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in vgg.CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def taps(self, x: Tensor) -> list[Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in vgg.TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for lin, a, b in zip(self.lins, self.taps(x), self.taps(y), strict=True):
            total = total + lin((a - b) ** 2).mean((1, 2, 3))
        return total


def load_lpips() -> LPIPS:
    if missing():
        raise WeightsError(f"LPIPS {missing()}")
    model = LPIPS()
    vgg.load_vgg16(model.features, "LPIPS")
    path, stored = local_weights.read_named(LIN_NAME)
    try:
        model.lins.load_state_dict({f"{k}.weight": stored[f"lin{k}.model.1.weight"] for k in range(5)}, strict=True)
    except (KeyError, RuntimeError) as e:
        raise WeightsError(f"{path}: does not fit the LPIPS v0.1 linear layers ({str(e).splitlines()[0]})") from e
    return model.eval().requires_grad_(False)



def lpips(output: Tensor, target: Tensor) -> Tensor:
    """LPIPS-VGG of ``(B, 3, H, W)`` batches in ``[0, 1]``: lower is more similar."""
    model = local_weights.loaded(load_lpips).to(output.device)
    with torch.no_grad():
        return model(normalize(output.float()), normalize(target.float())).to(output.dtype)
