"""The compact default backbone: a pixel-space conditional UNet that works at LR resolution.

Working space: the high-resolution image rearranged so each low-resolution pixel holds its
``s x s`` block of high-resolution pixels, ``'b c (h p1) (w p2) -> b (c p1 p2) h w'``. The cost of
a step then grows with low-resolution pixels. The network itself is diffusers' ``UNet2DModel``
(convolutions only, so any tile size works).

Two layouts share the class:

- without a prior (the first model), the condition is the bicubic upsample of the input in the
  same rearrangement; with ``residual`` the network predicts x0 as a correction of it;
- with a ``prior`` (a pretrained restoration network such as Real-ESRGAN, run once over the
  image by the pipeline), it is a *refiner*: the condition is the prior's estimate in working
  space plus the input itself (both at low-resolution size), x0 is predicted as a residual over
  the prior's estimate, and the UNet's output layer starts at zero, so an untrained refiner
  returns the prior exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..core.backbone import Backbone, BackboneSpec
from ..core.schedule import BetaSchedule, NoiseSchedule, PredictionType
from ..errors import ConfigError


@dataclass(frozen=True)
class CompactConfig:
    """Architecture of the compact backbone; stored inside every weights file."""

    scale_factor: int = 4
    tile_size: int = 64  # native tile side, low-resolution pixels
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    prediction_type: PredictionType = "sample"
    residual: bool = True  # x0 = bicubic (or the prior's estimate) + network output (prediction_type "sample")
    sampling: dict[str, Any] = field(default_factory=dict)  # UpscaleConfig defaults shipped with the model
    default_strength: float = 1.0  # sampling starts at round(strength * T) - 1 from the noised estimate
    prior: str | None = None  # a name of adadiffsr.prior.PRIORS: the stage-1 network this refiner sits on
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
    starts_from_estimate = True

    def __init__(self, config: CompactConfig | None = None) -> None:
        super().__init__()
        from diffusers import UNet2DModel  # heavy import, kept local

        self.config = config = config or CompactConfig()
        if config.residual and config.prediction_type != "sample":
            raise ConfigError("residual=True needs prediction_type='sample'")
        s = config.scale_factor
        channels = 3 * s * s
        if config.prior is not None and not config.residual:
            raise ConfigError("a refiner over a prior needs residual=True")
        if config.prior is not None:
            from ..prior import load_prior

            # held outside the module tree: its weights come from its own package, so they are
            # never saved into the refiner's file, averaged by EMA or handed to an optimizer
            object.__setattr__(self, "prior", load_prior(config.prior))
            if self.prior.scale != s:
                raise ConfigError(f"prior {config.prior!r} scales by {self.prior.scale}, the backbone by {s}")
        cond_channels = channels + 3 if config.prior is not None else channels
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
            default_strength=config.default_strength,
            bytes_per_element=400,  # fp32 on a CPU measured 45-80 (peak RSS of a warm call, 1-8 64x64x48 tiles); slack
            sampling=dict(config.sampling),
        )
        self.unet = UNet2DModel(
            sample_size=config.tile_size,
            in_channels=channels + cond_channels,
            out_channels=channels,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            add_attention=False,
            num_train_timesteps=config.num_train_timesteps,
        )
        if config.prior is not None:  # an untrained refiner returns the prior's estimate exactly
            torch.nn.init.zeros_(self.unet.conv_out.weight)
            torch.nn.init.zeros_(self.unet.conv_out.bias)

    def _apply(self, fn: Any, recurse: bool = True) -> CompactSR:  # .to(device) moves the prior too
        super()._apply(fn, recurse)
        if self.prior is not None:
            self.prior._apply(fn, recurse)
        return self

    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        """Without a prior: the bicubic upsample in working space. With one: the prior's estimate
        (computed here from ``lr`` unless the pipeline passes it) in working space, then ``lr``."""
        if self.prior is None:
            up = F.interpolate(lr, scale_factor=self.spec.scale_factor, mode="bicubic", align_corners=False)
            return self.encode(up.clamp(-1, 1))
        if estimate is None:
            estimate = self.prior(lr)
        return torch.cat([self.encode(estimate.to(lr.dtype)), lr], dim=1)

    def estimate(self, cond: Tensor) -> Tensor:
        """The starting estimate in working space: the prior's output (or the bicubic upsample)."""
        return cond[:, : self.spec.latent_channels]

    def reference_feature(self, cond: Tensor) -> Tensor:
        return self.estimate(cond)

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = self.unet(torch.cat([x_t, cond], dim=1), t).sample
        return self.estimate(cond) + out if self.config.residual else out

    def encode(self, hr: Tensor) -> Tensor:
        s = self.spec.scale_factor
        return rearrange(hr, "b c (h p1) (w p2) -> b (c p1 p2) h w", p1=s, p2=s)

    def decode(self, z: Tensor) -> Tensor:
        s = self.spec.scale_factor
        return rearrange(z, "b (c p1 p2) h w -> b c (h p1) (w p2)", p1=s, p2=s)
