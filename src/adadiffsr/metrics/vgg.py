"""What LPIPS and DISTS share: torchvision's VGG16 feature layout and its local weight file
(``local_weights.py`` says where such files lie)."""

from __future__ import annotations

from torch import nn

from ..errors import WeightsError
from .local_weights import find, missing, read

VGG_NAME = "vgg16-397923af"  # torchvision's ImageNet VGG16
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # torchvision indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)


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
