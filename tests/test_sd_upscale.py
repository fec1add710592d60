"""The SD x4 upscaler adapter: tiny random diffusers/transformers components built in-process,
parity with diffusers' own StableDiffusionUpscalePipeline, with and without guidance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from adadiffsr import UpscaleConfig, Upscaler  # noqa: E402
from adadiffsr.backbones.sd_upscale import StableDiffusionUpscale, load_sd_upscale  # noqa: E402
from adadiffsr.cli import main  # noqa: E402
from adadiffsr.errors import WeightsError  # noqa: E402


def tiny_tokenizer(folder) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over printable ASCII characters, no merges: enough for short prompts."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(c, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)


def tiny_pipeline(folder) -> StableDiffusionUpscalePipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4, num_class_embeds=400,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4, scaling_factor=0.08333,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=200, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16,
    ))
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tiny_tokenizer(folder), unet=unet,
        low_res_scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02,
                                prediction_type="v_prediction", clip_sample=False),
        max_noise_level=350,
    )


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdx4")
    tiny_pipeline(tmp_path_factory.mktemp("tok")).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_uniform_sampler_reproduces_the_diffusers_pipeline(pipeline_folder, guidance):
    pipe = StableDiffusionUpscalePipeline.from_pretrained(pipeline_folder, local_files_only=True)
    image = Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(3))  # our sampler's x_T for seed 3
    reference = pipe("a cat", image=image, num_inference_steps=4, guidance_scale=guidance, noise_level=20,
                     negative_prompt="dog", generator=torch.Generator().manual_seed(0), latents=latents,
                     output_type="np").images[0]

    backbone = load_sd_upscale(pipeline_folder, prompt="a cat", negative_prompt="dog", guidance_scale=guidance,
                               noise_level=20, noise_seed=0, tile_size=16)
    ours = Upscaler(backbone, "cpu")(image, UpscaleConfig(policy="uniform", interval=250, spacing="leading", seed=3))
    assert ours.report["nfe"] == 4 and ours.report["num_tiles"] == 1
    assert ours.picture.rgb.shape == reference.shape == (64, 64, 3)
    assert np.abs(ours.picture.rgb - reference).max() < 1e-4


def test_adapter_geometry_and_batch_independent_condition(pipeline_folder):
    backbone = load_sd_upscale(pipeline_folder, tile_size=16)
    assert isinstance(backbone, StableDiffusionUpscale)
    spec = backbone.spec
    assert (spec.scale_factor, spec.latent_scale, spec.latent_channels) == (4, 1, 4)
    assert spec.prediction_type == "v_prediction"
    lr = torch.rand(3, 3, 16, 16) * 2 - 1
    together = backbone.condition(lr)
    assert torch.equal(together[1:2], backbone.condition(lr[1:2]))  # a tile's condition ignores its batch
    # the augmentation noise is drawn once per image: two overlapping tiles agree where they overlap
    image = torch.rand(1, 3, 16, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    prepared = backbone.prepare(image)
    assert torch.equal(prepared, backbone.prepare(image)) and (prepared - image).abs().mean() > 1e-3  # seeded, noised
    left, right = backbone.condition(prepared[..., :16]), backbone.condition(prepared[..., 12:])
    assert torch.equal(left[..., 12:], right[..., :4])
    t = torch.tensor([10, 500, 990])  # mixed timesteps in one batch
    with torch.no_grad():
        out = backbone.predict(torch.randn(3, 4, 16, 16), t, together)
    assert out.shape == (3, 4, 16, 16)
    assert backbone.decode(backbone.encode(torch.rand(1, 3, 32, 32) * 2 - 1)).shape == (1, 3, 32, 32)


def test_adaptive_sampler_and_cli_over_the_adapter(pipeline_folder, tmp_path, capsys):
    Image.fromarray((np.random.default_rng(1).random((24, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--backbone", "sd-x4-upscaler",
                 "--weights", str(pipeline_folder), "--policy", "adaptive", "--gain", "exact", "--intervals",
                 "250,500", "--tile", "16", "--guidance-scale", "2", "-q", "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out.png").size == (160, 96)
    assert json.loads((tmp_path / "r.json").read_text())["nfe"] > 0


def test_missing_files_are_named(tmp_path, capsys):
    (tmp_path / "unet").mkdir()
    with pytest.raises(WeightsError, match="low_res_scheduler/scheduler_config.json"):
        load_sd_upscale(tmp_path)
    code = main(["upscale", "x.png", "-o", str(tmp_path / "o.png"), "--backbone", "sd-x4-upscaler",
                 "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "text_encoder/config.json" in err and "Traceback" not in err
