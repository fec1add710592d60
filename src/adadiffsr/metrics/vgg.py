"""What LPIPS and DISTS share: torchvision's VGG16 feature layout and local weight files.

Nothing is downloaded: files lie in ``$ADADIFFSR_METRIC_WEIGHTS`` (default
``~/.cache/adadiffsr/metrics``), each as ``NAME.safetensors`` or as a PyTorch state dict
``NAME.pth`` (read with ``torch.load(weights_only=True)``, which loads tensors only).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import WeightsError

VGG_NAME = "vgg16-397923af"  # torchvision's ImageNet VGG16
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # torchvision indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)


def weights_dir() -> Path:
    return Path(os.environ.get("ADADIFFSR_METRIC_WEIGHTS", Path.home() / ".cache" / "adadiffsr" / "metrics"))


def find(name: str) -> Path | None:
    for ext in (".safetensors", ".pth"):
        path = weights_dir() / (name + ext)
        if path.is_file():
            return path
    return None


def missing(names: dict[str, str]) -> str:
    """Empty when every file is there; otherwise which are missing (``name -> where it comes from``)."""
    absent = [f"{name}.safetensors or .pth ({origin})" for name, origin in names.items() if find(name) is None]
    if not absent:
        return ""
    return f"needs {'; '.join(absent)} in {weights_dir()} ($ADADIFFSR_METRIC_WEIGHTS); nothing is downloaded"


def read(path: Path) -> dict[str, Tensor]:
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(
            path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, corrupt or truncated file
        raise WeightsError(f"{path}: not a readable state dict ({str(e).splitlines()[0] if str(e) else e})") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict")
    return state


def vgg16_features(pool: type[nn.Module] | None = None) -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (same indices, so its state dict loads as is);
    ``pool(channels)`` replaces the max pooling (DISTS uses L2 pooling)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if pool is None else pool(channels))  # type: ignore[call-arg]
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


def load_vgg16(features: nn.Sequential, metric: str) -> None:
    """Load torchvision's VGG16 weights into ``features`` (parameter-free pooling layers may differ)."""
    path = find(VGG_NAME)
    if path is None:
        raise WeightsError(f"{metric} {missing({VGG_NAME: 'torchvision vgg16-397923af.pth'})}")
    state = {k.removeprefix("features."): v for k, v in read(path).items() if k.startswith("features.")}
    own = features.state_dict()
    state.update({k: v for k, v in own.items() if k not in state and "filter" in k})  # L2 pooling's fixed filters
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit VGG16 ({str(e).splitlines()[0]})") from e
