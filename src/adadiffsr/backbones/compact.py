"""The compact default backbone: a pixel-space conditional UNet that works at LR resolution.

Working space: the high-resolution image rearranged so each low-resolution pixel holds its
``s x s`` block of high-resolution pixels, ``'b c (h p1) (w p2) -> b (c p1 p2) h w'``. The cost of
a step then grows with low-resolution pixels. The condition is the bicubic upsample of the input
in the same rearrangement; with ``residual`` the network predicts x0 as a correction of it.
The network itself is diffusers' ``UNet2DModel`` (convolutions only, so any tile size works).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..engine.schedule import BetaSchedule, NoiseSchedule, PredictionType
from ..errors import ConfigError
from .base import Backbone, BackboneSpec


@dataclass(frozen=True)
class CompactConfig:
    """Architecture of the compact backbone; stored inside every weights file."""

    scale_factor: int = 4
    tile_size: int = 64  # native tile side, low-resolution pixels
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    prediction_type: PredictionType = "sample"
    residual: bool = True  # x0 = bicubic + network output (only with prediction_type "sample")
    num_train_timesteps: int = 1000
    beta_schedule: BetaSchedule = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (training run, data)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompactConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "block_out_channels" in known:
            known["block_out_channels"] = tuple(known["block_out_channels"])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CompactSR(Backbone):
    """Conditional UNet over pixel-unshuffled HR tiles; see the module docstring."""

    architecture = "compact"

    def __init__(self, config: CompactConfig | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel  # heavy import, kept local

        self.config = config = config or CompactConfig()
        if config.residual and config.prediction_type != "sample":
            raise ConfigError("residual=True needs prediction_type='sample'")
        s = config.scale_factor
        channels = 3 * s * s
        levels = len(config.block_out_channels)
        self.spec = BackboneSpec(
            prediction_type=config.prediction_type,
            scale_factor=s,
            latent_scale=1,
            latent_channels=channels,
            tile_size=config.tile_size,
            size_multiple=2 ** (levels - 1),
            clip_sample=config.prediction_type == "sample" and not config.residual,
            schedule=NoiseSchedule.from_betas(
                config.num_train_timesteps, config.beta_start, config.beta_end, config.beta_schedule
            ),
        )
        self.unet = UNet2DModel(
            sample_size=config.tile_size,
            in_channels=2 * channels,
            out_channels=channels,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            add_attention=False,
            num_train_timesteps=config.num_train_timesteps,
        )

    def condition(self, lr: Tensor) -> Tensor:
        up = F.interpolate(lr, scale_factor=self.spec.scale_factor, mode="bicubic", align_corners=False)
        return self.encode(up.clamp(-1, 1))

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = self.unet(torch.cat([x_t, cond], dim=1), t).sample
        return cond + out if self.config.residual else out

    def encode(self, hr: Tensor) -> Tensor:
        s = self.spec.scale_factor
        return rearrange(hr, "b c (h p1) (w p2) -> b (c p1 p2) h w", p1=s, p2=s)

    def decode(self, z: Tensor) -> Tensor:
        s = self.spec.scale_factor
        return rearrange(z, "b (c p1 p2) h w -> b c (h p1) (w p2)", p1=s, p2=s)
