"""diffusers' latent diffusion x4 super-resolution (CompVis/ldm-super-resolution-4x-openimages)
behind the backbone contract.

Working space: the VQ-VAE latent, at the input's resolution (the VQ model downsamples by 4).
Condition: the input image in ``[-1, 1]``, concatenated to the noisy latent (``in_channels =
2 x latent channels``), as ``LDMSuperResolutionPipeline`` does. The noise schedule, prediction
type and clipping come from the scheduler config of the folder.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.backbone import Backbone, BackboneSpec
from ..errors import WeightsError
from .pipeline_folder import check_folder, resolve_folder, schedule_from_config

EXPECTED = ("model_index.json", "unet/config.json", "vqvae/config.json", "scheduler/scheduler_config.json")


class LDMSuperResolution(Backbone):
    architecture = "ldm-sr-x4"
    costly_reference = True

    def __init__(self, unet: Any, vqvae: Any, scheduler_config: dict[str, Any], tile_size: int = 128) -> None:
        super().__init__()
        self.unet, self.vqvae = unet, vqvae
        latent_channels = unet.config.in_channels // 2
        self.spec = BackboneSpec(
            prediction_type=scheduler_config.get("prediction_type", "epsilon"),
            scale_factor=2 ** (len(vqvae.config.block_out_channels) - 1),
            latent_scale=1,
            latent_channels=latent_channels,
            tile_size=tile_size,
            size_multiple=2 ** (len(unet.config.block_out_channels) - 1),
            clip_sample=bool(scheduler_config.get("clip_sample", False)),
            schedule=schedule_from_config(scheduler_config),
        )

    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        return lr

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(torch.cat([x_t, cond.to(x_t.dtype)], dim=1), t).sample

    def reference_feature(self, cond: Tensor) -> Tensor:
        up = F.interpolate(cond, scale_factor=self.spec.scale_factor, mode="bicubic", align_corners=False)
        return self.encode(up.clamp(-1, 1))

    def encode(self, hr: Tensor) -> Tensor:
        return self.vqvae.encode(hr).latents

    def decode(self, z: Tensor) -> Tensor:
        return self.vqvae.decode(z).sample


def load_ldm_sr(weights: str | os.PathLike[str], device: torch.device | str = "cpu", tile_size: int = 128) -> LDMSuperResolution:
    """Load the UNet, VQ-VAE and scheduler config of an ``LDMSuperResolutionPipeline`` folder, offline."""
    from diffusers import UNet2DModel, VQModel

    folder = resolve_folder(weights, EXPECTED)
    check_folder(folder, EXPECTED, ("unet", "vqvae"), "an LDM super-resolution pipeline")
    try:
        unet = UNet2DModel.from_pretrained(folder, subfolder="unet", local_files_only=True, low_cpu_mem_usage=False)
        vqvae = VQModel.from_pretrained(folder, subfolder="vqvae", local_files_only=True, low_cpu_mem_usage=False)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{folder}: cannot load the pipeline ({str(e).splitlines()[0]})") from e
    return LDMSuperResolution(unet, vqvae, scheduler_config, tile_size).to(device).eval()
