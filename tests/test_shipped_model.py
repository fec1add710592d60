"""Regression test of the shipped default model: a bundled photo with its ground truth, upscaled at
the default settings, must beat bicubic's PSNR-Y and stay within a stored tolerance of the score
measured when the weights were committed (so a change that degrades the default shows here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.data.degradations import DEGRADATIONS
from adadiffsr.metrics.psnr import psnr_y
from adadiffsr.weights import default_weights_path

# scikit-image's CC0 coffee photo, a 288x192 crop; the input is its mild-x4 degradation (seed 0)
GROUND_TRUTH = Path(__file__).parent / "fixtures" / "coffee-288x192.png"
STORED_PSNR_Y = 28.735  # measured with the committed weights at the default settings (2 and 1 threads alike):
# x4plus everywhere, then the student (the same here with --prior routed: this textured crop takes x4plus everywhere)
STORED_PSNR_Y_X4PLUS_TEACHER = 28.642  # the default until 2026-12-07: x4plus everywhere, the teacher's walk
STORED_PSNR_Y_COMPACT = 29.121  # the compact prior alone (--prior routed --prior-share 0), then the student (run C: 28.921)
TOLERANCE_DB = 0.15


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, Image.Image]:
    hr = torch.from_numpy(np.asarray(Image.open(GROUND_TRUTH).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    lr = DEGRADATIONS["mild-x4"](hr, 0)
    image = Image.fromarray((lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return hr[None], image


@pytest.mark.skipif(not default_weights_path().is_file(), reason="no shipped weights in this checkout")
def test_the_shipped_model_beats_bicubic_and_holds_its_score(pair):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    hr, image = pair
    result = Upscaler.from_pretrained(device="cpu")(image, UpscaleConfig(seed=0))
    out = torch.from_numpy(result.picture.rgb).permute(2, 0, 1)[None]
    lr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    ours, base = float(psnr_y(out, hr)), float(psnr_y(bicubic, hr))
    assert ours > base + 0.2, (ours, base)  # 28.74 against bicubic 28.20 and the prior alone 28.24
    assert abs(ours - STORED_PSNR_Y) <= TOLERANCE_DB, ours
    settings = result.report["settings"]
    assert settings["prior"] == "realesrgan-x4plus" and settings["student"] is True and result.report["prior_regions"] is None
    routed = Upscaler.from_pretrained(device="cpu")(image, UpscaleConfig(seed=0, prior="routed"))
    assert routed.report["prior_regions"]["full"] == routed.report["prior_regions"]["count"]  # textured: x4plus
    assert np.array_equal(routed.picture.rgb, result.picture.rgb)  # every region x4plus: the single prior exactly
    assert result.report["nfe_student"] == result.report["nfe"] == result.report["student_tiles"] > 0
    before = Upscaler.from_pretrained(device="cpu")(image, UpscaleConfig(seed=0, prior="realesrgan-x4plus", student=False))
    out = torch.from_numpy(before.picture.rgb).permute(2, 0, 1)[None]
    assert abs(float(psnr_y(out, hr)) - STORED_PSNR_Y_X4PLUS_TEACHER) <= TOLERANCE_DB  # the previous default
    assert before.report["nfe_student"] == 0 and before.report["prior_regions"] is None
    compact = Upscaler.from_pretrained(device="cpu")(image, UpscaleConfig(seed=0, prior="routed", prior_share=0))
    out = torch.from_numpy(compact.picture.rgb).permute(2, 0, 1)[None]
    assert abs(float(psnr_y(out, hr)) - STORED_PSNR_Y_COMPACT) <= TOLERANCE_DB  # the compact prior alone
    assert compact.report["prior_regions"]["full"] == 0 and compact.report["seconds"]["prior_full"] < 0.05
