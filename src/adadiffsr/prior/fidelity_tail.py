"""A faithful tail for Real-ESRGAN x4plus, and ``--fidelity`` as ESRGAN's network interpolation toward it.

x4plus is a GAN: its last layers paint texture that is not in the input. Its trunk (the 23 RRDB
blocks, 92% of the cost) knows what the input holds; the tail that turns those features into pixels
(``conv_body`` and the upsampler: ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``) decides how much
to invent. ``FidelityTail`` is that tail fine-tuned with an L1 loss to the ground truth on cached trunk
features (``adadiffsr train fidelity-tail``), x4plus's trunk frozen.

At run time nothing extra runs: at fidelity ``f`` the prior's tail weights are
``w_gan + f * (w_faithful - w_gan)`` (Wang et al., ESRGAN 2018, section 3.4: interpolating a PSNR-oriented
network and its GAN fine-tune moves the output along the perception-distortion curve), and the prior
runs once, as always, with those weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rrdbnet import RRDBNet

ARCHITECTURE = "rrdbnet-tail"  # what the weights file's metadata names
DEFAULT_FILE = "realesrgan-x4plus.fidelity-tail.safetensors"  # the shipped one, in the repository's weights/
TAIL = ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")  # RRDBNet's layers after its trunk


class FidelityTail(nn.Module):
    """RRDBNet's tail: ``(features, trunk output)`` at the input's size -> RGB ``[0, 1]`` at x4."""

    def __init__(self, nf: int = 64) -> None:
        super().__init__()
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    @classmethod
    def of(cls, network: RRDBNet) -> FidelityTail:
        """A copy of ``network``'s own tail: where training starts."""
        tail = cls(network.conv_first.out_channels)
        tail.load_state_dict({k: v for k, v in network.state_dict().items() if k.split(".")[0] in TAIL})
        return tail

    def forward(self, features: Tensor, trunk: Tensor) -> Tensor:
        """As ``RRDBNet.forward`` after ``features = conv_first(x)`` and ``trunk = body(features)``."""
        feat = features + self.conv_body(trunk)
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def interpolated(network: nn.Module, tail: FidelityTail, fidelity: float) -> dict[str, Tensor]:
    """``network``'s tail parameters moved ``fidelity`` of the way to ``tail``'s (0: its own, 1: the tail's);
    the names are ``network``'s, for ``torch.func.functional_call``."""
    own = dict(network.named_parameters())
    return {name: torch.lerp(own[name], value.to(own[name]), fidelity) for name, value in tail.named_parameters()}


def default_file() -> Path:
    """The shipped tail: ``$ADADIFFSR_WEIGHTS_DIR`` or the repository's ``weights/``."""
    from ..weights import default_weights_path

    return default_weights_path().with_name(DEFAULT_FILE)


def load_fidelity_tail(path: str | os.PathLike[str] | None = None) -> FidelityTail:
    """A tail's weights file (the shipped one when ``path`` is None), on the CPU, in eval mode."""
    from ..weights import load_module

    return load_module(path or default_file(), ARCHITECTURE, lambda c: FidelityTail(int(c.get("nf", 64))),
                       retrain_hint=" (train one: adadiffsr train fidelity-tail)").eval()
