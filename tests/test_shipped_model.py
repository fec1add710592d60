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
STORED_PSNR_Y = 28.642  # measured with the committed weights at the default settings (2 and 1 threads alike)
STORED_PSNR_Y_STUDENT = 28.717  # the same with --student (the shipped one-step student on every textured tile)
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
    assert ours > base + 0.2, (ours, base)  # 28.64 against bicubic 28.20 and the prior alone 28.24
    assert abs(ours - STORED_PSNR_Y) <= TOLERANCE_DB, ours
    assert result.report["settings"]["prior"] == "realesrgan-x4plus"
    assert result.report["settings"]["files"]["student"] is not None  # loaded, but the default does not run it
    assert result.report["nfe_student"] == 0 and result.report["settings"]["student"] is False
    student = Upscaler.from_pretrained(device="cpu")(image, UpscaleConfig(seed=0, student=True))
    out = torch.from_numpy(student.picture.rgb).permute(2, 0, 1)[None]
    assert abs(float(psnr_y(out, hr)) - STORED_PSNR_Y_STUDENT) <= TOLERANCE_DB  # --student: the textured tiles, 1 step
    assert student.report["nfe_student"] == student.report["nfe"] == student.report["student_tiles"] > 0
