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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine.schedule import NoiseSchedule
from ..errors import WeightsError
from .base import Backbone, BackboneSpec

EXPECTED = ("model_index.json", "unet/config.json", "vqvae/config.json", "scheduler/scheduler_config.json")


class LDMSuperResolution(Backbone):
    architecture = "ldm-sr-x4"

    def __init__(self, unet: Any, vqvae: Any, scheduler_config: dict[str, Any], tile_size: int = 128) -> None:
        super().__init__()
        self.unet, self.vqvae = unet, vqvae
        if scheduler_config.get("trained_betas") is not None:
            raise WeightsError("schedulers with trained_betas are not supported")
        latent_channels = unet.config.in_channels // 2
        self.spec = BackboneSpec(
            prediction_type=scheduler_config.get("prediction_type", "epsilon"),
            scale_factor=2 ** (len(vqvae.config.block_out_channels) - 1),
            latent_scale=1,
            latent_channels=latent_channels,
            tile_size=tile_size,
            size_multiple=2 ** (len(unet.config.block_out_channels) - 1),
            clip_sample=bool(scheduler_config.get("clip_sample", False)),
            schedule=NoiseSchedule.from_betas(
                scheduler_config.get("num_train_timesteps", 1000),
                scheduler_config.get("beta_start", 0.0001),
                scheduler_config.get("beta_end", 0.02),
                scheduler_config.get("beta_schedule", "linear"),
            ),
        )

    def condition(self, lr: Tensor) -> Tensor:
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


def resolve_folder(weights: str | os.PathLike[str], expected: tuple[str, ...] = EXPECTED) -> Path:
    """A local pipeline folder, a Hugging Face cache folder (``models--org--name``), or a repo id
    already in the local cache (``CompVis/ldm-super-resolution-4x-openimages``): never downloads."""
    path = Path(weights)
    if path.is_dir():
        snapshots = sorted((path / "snapshots").glob("*")) if (path / "snapshots").is_dir() else []
        return snapshots[-1] if snapshots else path
    text = str(weights)
    looks_like_repo_id = text.count("/") == 1 and not text.startswith(("/", ".", "~")) and not path.exists()
    if looks_like_repo_id:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(str(weights), local_files_only=True))
        except Exception as e:
            raise WeightsError(f"{weights} is not in the local Hugging Face cache and nothing is downloaded; "
                               f"give the folder of the pipeline ({', '.join(expected)})") from e
    raise WeightsError(f"pipeline folder not found: {weights} (it must hold {', '.join(expected)})")


def load_ldm_sr(weights: str | os.PathLike[str], device: torch.device | str = "cpu", tile_size: int = 128) -> LDMSuperResolution:
    """Load the UNet, VQ-VAE and scheduler config of an ``LDMSuperResolutionPipeline`` folder, offline."""
    from diffusers import UNet2DModel, VQModel

    folder = resolve_folder(weights)
    missing = [name for name in EXPECTED if not (folder / name).is_file()]
    for sub in ("unet", "vqvae"):
        if not any((folder / sub / f"diffusion_pytorch_model.{ext}").is_file() for ext in ("safetensors", "bin")):
            missing.append(f"{sub}/diffusion_pytorch_model.safetensors")
    if missing:
        raise WeightsError(f"{folder}: not an LDM super-resolution pipeline folder; missing {', '.join(missing)}")
    try:
        unet = UNet2DModel.from_pretrained(folder, subfolder="unet", local_files_only=True, low_cpu_mem_usage=False)
        vqvae = VQModel.from_pretrained(folder, subfolder="vqvae", local_files_only=True, low_cpu_mem_usage=False)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{folder}: cannot load the pipeline ({str(e).splitlines()[0]})") from e
    return LDMSuperResolution(unet, vqvae, scheduler_config, tile_size).to(device).eval()
