"""LPIPS (Zhang et al., CVPR 2018), VGG variant, from weights the user already has.

Nothing is downloaded: the two files must lie in ``$ADADIFFSR_METRIC_WEIGHTS`` (default
``~/.cache/adadiffsr/metrics``), each as ``.safetensors`` or as a PyTorch state dict ``.pth``
(read with ``torch.load(weights_only=True)``, which loads tensors only):

- ``vgg16-397923af``: torchvision's ImageNet VGG16 (``features.N.weight`` / ``.bias``);
- ``lpips-vgg-v0.1``: the linear layers of the ``lpips`` package (``lpips/weights/v0.1/vgg.pth``,
  keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

The distance: VGG16 features after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of both images
(scaled by the package's ``ScalingLayer``), unit-normalised over channels, squared differences
weighted per channel by the linear layers, averaged over space and summed over the five layers.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

VGG_NAME = "vgg16-397923af"
LIN_NAME = "lpips-vgg-v0.1"
_VGG_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # torchvision indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_CHANNELS = (64, 128, 256, 512, 512)


def weights_dir() -> Path:
    return Path(os.environ.get("ADADIFFSR_METRIC_WEIGHTS", Path.home() / ".cache" / "adadiffsr" / "metrics"))


def _find(name: str) -> Path | None:
    for ext in (".safetensors", ".pth"):
        path = weights_dir() / (name + ext)
        if path.is_file():
            return path
    return None


def missing() -> str:
    """Empty when both files are there; otherwise what is missing and where it comes from."""
    absent = [name for name in (VGG_NAME, LIN_NAME) if _find(name) is None]
    if not absent:
        return ""
    return (f"needs {' and '.join(n + '.safetensors (or .pth)' for n in absent)} in {weights_dir()} "
            "($ADADIFFSR_METRIC_WEIGHTS): torchvision's vgg16-397923af.pth and the lpips package's "
            "weights/v0.1/vgg.pth renamed lpips-vgg-v0.1.pth; nothing is downloaded")


def _read(path: Path) -> dict[str, Tensor]:
    from ..errors import WeightsError

    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, corrupt or truncated file
        raise WeightsError(f"{path}: not a readable state dict ({str(e).splitlines()[0] if str(e) else e})") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict")
    return state


class LPIPS(nn.Module):
    """``(x, y)`` in ``[-1, 1]`` -> ``(B,)`` distances."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def taps(self, x: Tensor) -> list[Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for lin, a, b in zip(self.lins, self.taps(x), self.taps(y), strict=True):
            total = total + lin((a - b) ** 2).mean((1, 2, 3))
        return total


def load_lpips() -> LPIPS:
    from ..errors import WeightsError

    vgg_path, lin_path = _find(VGG_NAME), _find(LIN_NAME)
    if vgg_path is None or lin_path is None:
        raise WeightsError(f"LPIPS {missing()}")
    model = LPIPS()
    vgg = {k.removeprefix("features."): v for k, v in _read(vgg_path).items() if k.startswith("features.")}
    lins = {f"{k}.weight": _read(lin_path).get(f"lin{k}.model.1.weight") for k in range(5)}
    try:
        model.features.load_state_dict(vgg, strict=True)
        model.lins.load_state_dict({k: v for k, v in lins.items() if v is not None}, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"LPIPS weights in {weights_dir()} do not fit VGG16 / LPIPS v0.1 "
                           f"({str(e).splitlines()[0]})") from e
    return model.eval().requires_grad_(False)


@cache
def _model(folder: str) -> LPIPS:
    return load_lpips()


def lpips(output: Tensor, target: Tensor) -> Tensor:
    """LPIPS-VGG of ``(B, 3, H, W)`` batches in ``[0, 1]``: lower is more similar."""
    model = _model(str(weights_dir())).to(output.device)
    with torch.no_grad():
        return model(output.float() * 2 - 1, target.float() * 2 - 1).to(output.dtype)
