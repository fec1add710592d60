"""MUSIQ (Ke et al., ICCV 2021), the multi-scale image quality transformer, from a checkpoint the
user already has (``local_weights.py`` says where): pyiqa's KonIQ-10k model
``musiq_koniq_ckpt-e95806b9`` (``.pth`` as pyiqa downloads it, or ``.safetensors``).

The image (in ``[-1, 1]``) is seen at three scales: resized (bicubic, aspect kept) to a longer
side of 224 and 384, and at its own size. Each scale is cut into 32x32 patches (TensorFlow "SAME"
padding); the first two scales are padded or cut to a fixed number of patches, with a mask. Each
patch goes through a ResNet root (weight-standardised 7x7 conv, GroupNorm, max pool) and one
bottleneck block, is flattened channels-last and embedded; a hash-based spatial embedding (the
patch grid resampled onto a 10x10 grid) and a scale embedding are added; a class token and a
14-layer pre-norm transformer encoder follow, and a linear head reads the class token. KonIQ scores
run from about 0 to 100: higher is better.

The encoder is ``torch.nn.TransformerEncoder``; ``load_musiq`` maps pyiqa's separate
query/key/value layers onto its packed projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.pixels import normalize
from ..errors import WeightsError
from . import local_weights

MUSIQ_NAME = "musiq_koniq_ckpt-e95806b9"
FILES = {MUSIQ_NAME: "pyiqa's MUSIQ KonIQ-10k checkpoint, same file name"}


def missing() -> str:
    return local_weights.missing(FILES)


@dataclass(frozen=True)
class MusiqConfig:
    patch: int = 32
    hidden: int = 384
    mlp: int = 1152
    heads: int = 6
    layers: int = 14
    grid: int = 10  # hash-based spatial embedding: grid x grid positions
    longer_sides: tuple[int, ...] = (224, 384)  # resized scales; the original size comes last
    classes: int = 1  # 1: a score (KonIQ, SPAQ, PaQ-2-PiQ); 10: AVA's score distribution
    root: int = 64


# ---- multi-scale patches -------------------------------------------------------------------------


def same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero padding of TensorFlow's "SAME" (the extra pixel goes right and bottom)."""
    h, w = x.shape[-2:]
    rows = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    cols = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (cols // 2, cols - cols // 2, rows // 2, rows - rows // 2))


@dataclass
class Patches:
    pixels: Tensor  # (B, N, 3, p, p)
    spatial: Tensor  # (B, N) index into the grid x grid spatial embedding
    scale: Tensor  # (B, N) scale index
    mask: Tensor  # (B, N) True for real patches


def hashed_positions(grid: int, rows: int, cols: int) -> Tensor:
    """Each patch of a ``rows x cols`` grid mapped to the nearest cell of a ``grid x grid`` one."""
    base = torch.arange(grid, dtype=torch.float32).view(1, 1, grid)
    r = F.interpolate(base, size=rows, mode="nearest").view(rows, 1)
    c = F.interpolate(base, size=cols, mode="nearest").view(1, cols)
    return (r * grid + c).long().flatten()


def scale_patches(image: Tensor, cfg: MusiqConfig, scale: int, length: int | None) -> Patches:
    """Patches of one scale; ``length`` pads (mask False) or cuts to a fixed count."""
    b, c, h, w = image.shape
    p = cfg.patch
    cols = F.unfold(same_pad(image, p, p), p, stride=p)  # (B, c*p*p, n), row-major over the patch grid
    pixels = cols.transpose(1, 2).reshape(b, -1, c, p, p)
    n = pixels.shape[1]
    spatial = hashed_positions(cfg.grid, math.ceil(h / p), math.ceil(w / p)).expand(b, n)
    scales = torch.full((b, n), scale, dtype=torch.long)
    mask = torch.ones((b, n), dtype=torch.bool)
    if length is not None:
        keep = min(n, length)
        pad = length - keep

        def fit(t: Tensor) -> Tensor:
            t = t[:, :keep]
            return torch.cat([t, t.new_zeros((b, pad, *t.shape[2:]))], dim=1) if pad else t

        pixels, spatial, scales, mask = fit(pixels), fit(spatial), fit(scales), fit(mask)
    device = image.device
    return Patches(pixels, spatial.to(device), scales.to(device), mask.to(device))


def multiscale_patches(image: Tensor, cfg: MusiqConfig) -> Patches:
    """All scales of ``(B, 3, H, W)`` in ``[-1, 1]``, concatenated along the sequence."""
    h, w = image.shape[-2:]
    parts = []
    for i, side in enumerate(sorted(cfg.longer_sides)):
        ratio = side / max(h, w)
        size = (max(1, round(h * ratio)), max(1, round(w * ratio)))  # a sliver of an image keeps one row
        resized = F.interpolate(image, size, mode="bicubic", align_corners=False)
        parts.append(scale_patches(resized, cfg, i, math.ceil(side / cfg.patch) ** 2))
    parts.append(scale_patches(image, cfg, len(cfg.longer_sides), None))
    return Patches(*(torch.cat([getattr(q, f) for q in parts], dim=1) for f in ("pixels", "spatial", "scale", "mask")))


# ---- network -------------------------------------------------------------------------------------


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation (zero mean, unit std per output filter) and "SAME"
    padding, as in BiT ResNets."""

    def forward(self, x: Tensor) -> Tensor:
        wgt = self.weight
        wgt = (wgt - wgt.mean((1, 2, 3), keepdim=True)) / (wgt.std((1, 2, 3), keepdim=True) + 1e-5)
        k, s = self.kernel_size[0], self.stride[0]
        return F.conv2d(same_pad(x, k, s), wgt, self.bias, self.stride)


class Bottleneck(nn.Module):
    """Pre-activation-free BiT bottleneck with GroupNorm; the width is the input's channels."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.conv1, self.gn1 = StdConv2d(channels, channels, 1, bias=False), nn.GroupNorm(32, channels, eps=1e-4)
        self.conv2, self.gn2 = StdConv2d(channels, channels, 3, bias=False), nn.GroupNorm(32, channels, eps=1e-4)
        self.conv3, self.gn3 = StdConv2d(channels, out, 1, bias=False), nn.GroupNorm(32, out, eps=1e-4)
        self.conv_proj, self.gn_proj = StdConv2d(channels, out, 1, bias=False), nn.GroupNorm(32, out, eps=1e-4)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + skip)


class MUSIQ(nn.Module):
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B,)`` quality scores (mean opinion score scale)."""

    def __init__(self, cfg: MusiqConfig = MusiqConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv_root = StdConv2d(3, cfg.root, 7, stride=2, bias=False)
        self.gn_root = nn.GroupNorm(32, cfg.root, eps=1e-6)
        self.block1 = Bottleneck(cfg.root, cfg.root * 4)
        tokens = (cfg.patch // 4) ** 2
        self.embedding = nn.Linear(cfg.root * 4 * tokens, cfg.hidden)
        self.position_emb = nn.Parameter(torch.zeros(cfg.grid * cfg.grid, cfg.hidden))
        self.scale_emb = nn.Parameter(torch.zeros(len(cfg.longer_sides) + 1, cfg.hidden))
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.hidden))
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, cfg.mlp, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.encoder_norm = nn.LayerNorm(cfg.hidden, eps=1e-6)
        self.head = nn.Linear(cfg.hidden, cfg.classes)

    def embed(self, pixels: Tensor) -> Tensor:
        """``(B, N, 3, p, p)`` -> ``(B, N, hidden)``."""
        b, n = pixels.shape[:2]
        x = F.relu(self.gn_root(self.conv_root(pixels.flatten(0, 1))))
        x = F.max_pool2d(same_pad(x, 3, 2), 3, 2)
        x = self.block1(x)
        return self.embedding(x.permute(0, 2, 3, 1).reshape(b, n, -1))  # channels-last, as in TensorFlow

    def forward(self, image: Tensor) -> Tensor:
        patches = multiscale_patches(image, self.cfg)
        x = self.embed(patches.pixels) + self.position_emb[patches.spatial] + self.scale_emb[patches.scale]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        keep = torch.cat([patches.mask.new_ones((x.shape[0], 1)), patches.mask], dim=1)
        x = self.encoder_norm(self.encoder(x, src_key_padding_mask=~keep))
        q = self.head(x[:, 0])
        if q.shape[-1] == 1:
            return q[:, 0]
        return (q.softmax(-1) * torch.arange(1, q.shape[-1] + 1, device=q.device)).sum(-1)  # mean of a distribution


# ---- pyiqa checkpoint ----------------------------------------------------------------------------


def from_pyiqa(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """pyiqa's MUSIQ state dict in this module's names (query/key/value packed into one projection)."""
    state = dict(state.get("params", state))  # type: ignore[arg-type]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    enc = "transformer_encoder."
    for key, value in state.items():
        if key.startswith("head.0."):  # AVA: Linear + Softmax
            key = "head." + key.removeprefix("head.0.")
        if not key.startswith(enc):
            out[key] = value
            continue
        rest = key.removeprefix(enc)
        if rest == "posembed_input.position_emb":
            out["position_emb"] = value.reshape(-1, value.shape[-1])
        elif rest == "scaleembed_input.scale_emb":
            out["scale_emb"] = value
        elif rest in ("cls",) or rest.startswith("encoder_norm."):
            out[rest] = value
        elif rest.startswith("transformer.encoderblock_"):
            index, _, name = rest.removeprefix("transformer.encoderblock_").partition(".")
            prefix = f"encoder.layers.{index}."
            renames = {"attention.out.": "self_attn.out_proj.", "mlp.fc1.": "linear1.", "mlp.fc2.": "linear2.",
                       "norm1.": "norm1.", "norm2.": "norm2."}
            for old, new in renames.items():
                if name.startswith(old):
                    out[prefix + new + name.removeprefix(old)] = value
                    break
            else:
                if not name.startswith(("attention.query.", "attention.key.", "attention.value.")):
                    out[key] = value  # unknown: strict loading names it
        else:
            out[key] = value
    for layer in sorted({k.split(".")[2] for k in out if k.startswith("encoder.layers.")}, key=int):
        base = f"{enc}transformer.encoderblock_{layer}.attention."
        for part in ("weight", "bias"):
            names = [f"{base}{qkv}.{part}" for qkv in ("query", "key", "value")]
            if all(n in state for n in names):
                out[f"encoder.layers.{layer}.self_attn.in_proj_{part}"] = torch.cat([state[n] for n in names])
    return out


def load_musiq() -> MUSIQ:
    if missing():
        raise WeightsError(f"MUSIQ {missing()}")
    path, stored = local_weights.read_named(MUSIQ_NAME)
    state = from_pyiqa(stored)
    head = state.get("head.weight")
    model = MUSIQ(MusiqConfig(classes=head.shape[0] if head is not None else 1))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit MUSIQ ({str(e).splitlines()[0]})") from e
    return model.eval().requires_grad_(False)



def musiq(output: Tensor) -> Tensor:
    """MUSIQ (KonIQ-10k) of ``(B, 3, H, W)`` batches in ``[0, 1]``: higher is better."""
    model = local_weights.loaded(load_musiq).to(output.device)
    with torch.no_grad():
        return model(normalize(output.float())).to(output.dtype)
