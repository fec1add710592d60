"""diffusers' Stable Diffusion x4 upscaler (stabilityai/stable-diffusion-x4-upscaler) behind the
backbone contract.

Working space: the VAE latent (times the VAE's ``scaling_factor``), at the input's resolution:
the VAE decodes it 4x larger. Condition: the input image in ``[-1, 1]`` with the pipeline's
noise augmentation (``low_res_scheduler.add_noise`` at ``noise_level``), concatenated to the noisy
latent; ``noise_level`` also goes to the UNet as its class label, and the text embedding of a
prompt (empty by default) as its cross-attention context. With ``guidance_scale > 1`` each call
runs the UNet twice (negative prompt and prompt) and mixes them as the pipeline does, so a tile
evaluation then costs two UNet passes.

The augmentation noise is drawn once per image (``prepare``) and cropped with the tiles, so
overlapping tiles agree and nothing depends on batching; on one tile it is the pipeline's own draw
for ``generator = torch.Generator().manual_seed(noise_seed)``.

Text encoding needs ``transformers`` (``pip install "adadiffsr[sd]"``).
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

EXPECTED = (
    "model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
    "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json", "low_res_scheduler/scheduler_config.json",
)


class StableDiffusionUpscale(Backbone):
    architecture = "sd-x4-upscaler"
    costly_reference = True

    def __init__(
        self, unet: Any, vae: Any, low_res_scheduler: Any, scheduler_config: dict[str, Any],
        prompt_embeds: Tensor, negative_prompt_embeds: Tensor | None = None, guidance_scale: float = 1.0,
        noise_level: int = 20, noise_seed: int = 0, tile_size: int = 128,
    ) -> None:
        super().__init__()
        self.unet, self.vae, self.low_res_scheduler = unet, vae, low_res_scheduler
        if guidance_scale > 1 and negative_prompt_embeds is None:
            raise WeightsError("classifier-free guidance needs the negative prompt's embedding")
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative_prompt_embeds, persistent=False)
        self.guidance_scale, self.noise_level, self.noise_seed = guidance_scale, noise_level, noise_seed
        self.scaling_factor = float(vae.config.scaling_factor)
        self.spec = BackboneSpec(
            prediction_type=scheduler_config.get("prediction_type", "epsilon"),
            scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
            latent_scale=1,
            latent_channels=vae.config.latent_channels,
            tile_size=tile_size,
            size_multiple=2 ** (len(unet.config.block_out_channels) - 1),
            clip_sample=bool(scheduler_config.get("clip_sample", False)),
            schedule=schedule_from_config(scheduler_config),
        )

    def prepare(self, lr: Tensor) -> Tensor:
        """The pipeline's noise augmentation, drawn once for the whole image from ``noise_seed`` and
        cropped with it, so overlapping tiles see the same noise (on one tile: the pipeline's draw)."""
        noise = torch.randn(lr.shape, generator=torch.Generator(device=lr.device).manual_seed(self.noise_seed),
                            device=lr.device, dtype=lr.dtype)
        level = torch.full((lr.shape[0],), self.noise_level, dtype=torch.long, device=lr.device)
        return self.low_res_scheduler.add_noise(lr, noise, level)

    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        return lr  # tiles of the prepared (noise-augmented) input

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        n = x_t.shape[0]
        inputs = torch.cat([x_t, cond.to(x_t.dtype)], dim=1)
        labels = torch.full((n,), self.noise_level, dtype=torch.long, device=x_t.device)
        text = self.prompt_embeds.to(x_t.dtype).expand(n, -1, -1)
        if self.guidance_scale <= 1:
            return self.unet(inputs, t, encoder_hidden_states=text, class_labels=labels).sample
        negative = self.negative_prompt_embeds.to(x_t.dtype).expand(n, -1, -1)  # type: ignore[union-attr]
        out = self.unet(torch.cat([inputs, inputs]), torch.cat([t, t]), encoder_hidden_states=torch.cat([negative, text]),
                        class_labels=torch.cat([labels, labels])).sample
        uncond, cond_out = out.chunk(2)
        return uncond + self.guidance_scale * (cond_out - uncond)

    def reference_feature(self, cond: Tensor) -> Tensor:
        up = F.interpolate(cond, scale_factor=self.spec.scale_factor, mode="bicubic", align_corners=False)
        return self.encode(up.clamp(-1, 1))

    def encode(self, hr: Tensor) -> Tensor:
        return self.vae.encode(hr).latent_dist.mode() * self.scaling_factor

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z / self.scaling_factor).sample


def load_sd_upscale(
    weights: str | os.PathLike[str], device: torch.device | str = "cpu", prompt: str = "", negative_prompt: str = "",
    guidance_scale: float = 1.0, noise_level: int = 20, noise_seed: int = 0, tile_size: int = 128,
) -> StableDiffusionUpscale:
    """Load a ``StableDiffusionUpscalePipeline`` folder offline and embed the prompt once."""
    folder = resolve_folder(weights, EXPECTED)
    check_folder(folder, EXPECTED, ("unet", "vae"), "a Stable Diffusion x4 upscaler")
    try:
        import transformers
    except ImportError as e:
        raise WeightsError('the SD x4 upscaler needs transformers for its text encoder: pip install "adadiffsr[sd]"') from e
    transformers.logging.set_verbosity_error()  # no torchvision notice, no loading bars: one-line errors only
    transformers.logging.disable_progress_bar()
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        kwargs: dict[str, Any] = {"local_files_only": True}
        diffusers_kwargs: dict[str, Any] = {**kwargs, "low_cpu_mem_usage": False}
        pipe = StableDiffusionUpscalePipeline(
            vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", **diffusers_kwargs),
            text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **kwargs),
            tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kwargs),
            unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **diffusers_kwargs),
            low_res_scheduler=DDPMScheduler.from_pretrained(folder, subfolder="low_res_scheduler", **kwargs),
            scheduler=DDPMScheduler.from_pretrained(folder, subfolder="scheduler", **kwargs),  # unused: ours samples
        )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{folder}: cannot load the pipeline ({str(e).splitlines()[0]})") from e
    if not 0 <= noise_level <= pipe.config.max_noise_level:
        raise WeightsError(f"noise level must be in [0, {pipe.config.max_noise_level}], got {noise_level}")
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(prompt, torch.device("cpu"), 1, guidance_scale > 1, negative_prompt)
    backbone = StableDiffusionUpscale(pipe.unet, pipe.vae, pipe.low_res_scheduler, scheduler_config, embeds, negative,
                                      guidance_scale, noise_level, noise_seed, tile_size)
    return backbone.to(device).eval()
