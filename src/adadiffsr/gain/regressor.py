"""The light MMLE regressor: estimates a tile's information gain without computing any metric.

Input: the current and previous estimates and the input feature of a tile (working space,
``'n c h w'`` each), average-pooled ``pool`` times, plus the timestep. A few strided convolutions,
global average pooling and a small head give the FR and NR gains, in ``[-1, 1]`` like eq. 1.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import WeightsError
from ..io import atomic_write


@dataclass(frozen=True)
class RegressorConfig:
    in_channels: int = 48  # working-space channels of the backbone
    width: int = 32
    pool: int = 4  # input average-pooling factor: cost grows with (h / pool) * (w / pool)
    outputs: int = 2  # FR and NR gain


class GainRegressor(nn.Module):
    """``(x0, x0_prev, cond, t) -> (n, 2)`` estimated gains in ``[-1, 1]``; a sampler ``GainFn``."""

    def __init__(self, config: RegressorConfig = RegressorConfig()) -> None:
        super().__init__()
        self.config = config
        c, w = config.in_channels, config.width
        self.body = nn.Sequential(
            nn.Conv2d(3 * c + 1, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * w + 8, w), nn.SiLU(), nn.Linear(w, config.outputs))
        # gains are small numbers: the head predicts them in units of this scale (set from the data)
        self.register_buffer("scale", torch.ones(config.outputs))

    def forward(self, x0: Tensor, x0_prev: Tensor | None, cond: Tensor, t: Tensor) -> Tensor:
        x0_prev = x0 if x0_prev is None else x0_prev
        p = self.config.pool
        feats = [F.avg_pool2d(v.float(), p) if p > 1 else v.float() for v in (x0, x0_prev - x0, cond)]
        time = (t.float() / 1000).view(-1, 1, 1, 1).expand(-1, 1, *feats[0].shape[-2:])
        h = self.body(torch.cat([*feats, time], 1))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)  # global average (and max) pooling
        return (self.head(torch.cat([pooled, _time_features(t)], 1)) * self.scale).clamp(-1, 1)


def _time_features(t: Tensor) -> Tensor:
    """``(n,)`` timesteps -> ``(n, 8)`` sinusoidal features."""
    freqs = torch.tensor([1, 2, 4, 8], dtype=torch.float32, device=t.device) * math.pi
    x = t.float()[:, None] / 1000 * freqs
    return torch.cat([x.sin(), x.cos()], 1)


def save_regressor(model: GainRegressor, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"adadiffsr.architecture": "gain-regressor", "adadiffsr.config": json.dumps(asdict(model.config)),
            **(metadata or {})}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def load_regressor(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> GainRegressor:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"regressor weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({e})") from e
    if meta.get("adadiffsr.architecture") != "gain-regressor":
        raise WeightsError(f"{path}: not a gain regressor file")
    model = GainRegressor(RegressorConfig(**json.loads(meta["adadiffsr.config"])))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: weights do not fit the regressor ({str(e).splitlines()[0]})") from e
    return model.to(device).eval()


def regressor_path_for(backbone_weights: str | os.PathLike[str]) -> Path:
    """``weights/compact-x4.safetensors`` -> ``weights/compact-x4.regressor.safetensors``."""
    p = Path(backbone_weights)
    return p.with_name(p.name.removesuffix(".safetensors") + ".regressor.safetensors")
