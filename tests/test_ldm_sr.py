"""The LDM-SR x4 adapter: tiny random diffusers components, parity with the diffusers pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel, VQModel
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
    LDMSuperResolutionPipeline,
)
from PIL import Image

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.backbones.ldm_sr import LDMSuperResolution, load_ldm_sr
from adadiffsr.cli import main
from adadiffsr.errors import WeightsError


def tiny_pipeline() -> LDMSuperResolutionPipeline:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, add_attention=False,
    )
    vqvae = VQModel(
        in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4, num_vq_embeddings=32, vq_embed_dim=3,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195, clip_sample=False)
    return LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler).to("cpu")


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldm")
    tiny_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


def test_uniform_sampler_reproduces_the_diffusers_pipeline(pipeline_folder):
    pipe = LDMSuperResolutionPipeline.from_pretrained(pipeline_folder, local_files_only=True)
    image = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    reference = pipe(image, num_inference_steps=4, generator=torch.Generator().manual_seed(3), output_type="np").images[0]

    upscaler = Upscaler(load_ldm_sr(pipeline_folder, tile_size=32), "cpu")
    ours = upscaler(image, UpscaleConfig(policy="uniform", interval=250, spacing="leading", seed=3))
    assert ours.report["nfe"] == 4 and ours.report["num_tiles"] == 1
    assert ours.picture.rgb.shape == reference.shape == (128, 128, 3)
    # bit-exact on this machine (max difference 0.0 at 4 and 20 steps); 1e-4 leaves room for other BLAS
    assert np.abs(ours.picture.rgb - reference).max() < 1e-4


def test_adapter_declares_the_pipeline_geometry(pipeline_folder):
    backbone = load_ldm_sr(pipeline_folder, tile_size=32)
    assert isinstance(backbone, LDMSuperResolution)
    spec = backbone.spec
    assert (spec.scale_factor, spec.latent_scale, spec.latent_channels) == (4, 1, 3)
    assert spec.prediction_type == "epsilon" and not spec.clip_sample
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([10, 900])  # mixed timesteps in one batch
    assert backbone.predict(torch.randn(2, 3, 16, 16), t, backbone.condition(x)).shape == (2, 3, 16, 16)
    assert backbone.decode(backbone.encode(torch.rand(1, 3, 64, 64))).shape == (1, 3, 64, 64)


def test_tiled_upscale_through_the_cli(pipeline_folder, tmp_path, capsys):
    Image.fromarray((np.random.default_rng(1).random((40, 72, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--backbone", "ldm-sr-x4",
                 "--weights", str(pipeline_folder), "--steps", "2", "--tile", "16", "-q", "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out.png").size == (288, 160)


def test_missing_files_are_named(tmp_path, capsys):
    (tmp_path / "unet").mkdir()
    with pytest.raises(WeightsError, match="vqvae/config.json"):
        load_ldm_sr(tmp_path)
    code = main(["upscale", "x.png", "-o", str(tmp_path / "o.png"), "--backbone", "ldm-sr-x4"])
    assert code == 1 and "needs weights" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="local Hugging Face cache"):
        load_ldm_sr("nobody/no-such-model")


def test_traces_regressor_and_pfj_train_against_the_adapter(pipeline_folder, tmp_path, capsys):
    """The MMLE and PFJ training commands take --backbone; companions live beside the folder."""
    from adadiffsr.gain.regressor import load_regressor
    from adadiffsr.pfj import load_pfj

    fixture = Image.open(Path(__file__).parent / "fixtures" / "chelsea-288.png").convert("RGB")
    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        fixture.save(tmp_path / "photos" / split / "a.png")
    common = ["--backbone", "ldm-sr-x4", "--weights", str(pipeline_folder)]
    for split in ("train", "val"):
        code = main(["analyze", "traces", "--photos", str(tmp_path / "photos"), "--split", split, "--tiles", "2",
                     "--interval", "250", "--fr", "psnr", "--nr", "niqe", "--device", "cpu",
                     "--out", str(tmp_path / f"{split}.safetensors"), *common])
        assert code == 0, capsys.readouterr().err
    regressor = pipeline_folder.with_name(pipeline_folder.name + ".regressor.safetensors")
    code = main(["train", "regressor", "--traces", str(tmp_path / "train.safetensors"), "--val-traces",
                 str(tmp_path / "val.safetensors"), "--out", str(regressor), "--epochs", "2", *common])
    assert code == 0, capsys.readouterr().err
    assert load_regressor(regressor).config.in_channels == 3  # the VQ latent's channels
    pfj = pipeline_folder.with_name(pipeline_folder.name + ".pfj.safetensors")
    code = main(["train", "pfj", "--photos", str(tmp_path / "photos"), "--steps", "1", "--batch-size", "2",
                 "--crop", "64", "--device", "cpu", "--out", str(pfj), *common])
    assert code == 0, capsys.readouterr().err
    assert load_pfj(pfj).config.in_channels == 3  # the condition is the low-resolution image
    upscaler = Upscaler.from_pretrained(pipeline_folder, device="cpu", backbone="ldm-sr-x4")
    assert upscaler.regressor is not None and upscaler.pfj is not None
    regressor.unlink()
    pfj.unlink()
