"""Colour correction and image files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr.color import adain, apply_color_fix, wavelet_fix
from adadiffsr.errors import ConfigError, InputImageError, OutputError
from adadiffsr.io import read_image, save_image, to_image, to_tensor


def test_adain_takes_the_reference_statistics():
    content = torch.randn(1, 3, 32, 32) * 0.2 + 0.5
    style = torch.randn(1, 3, 32, 32) * 0.4 - 0.1
    fixed = adain(content, style)
    assert torch.allclose(fixed.mean((2, 3)), style.mean((2, 3)), atol=1e-5)
    assert torch.allclose(fixed.std((2, 3)), style.std((2, 3)), atol=1e-4)


def test_wavelet_fix_removes_a_colour_cast_and_keeps_detail():
    detail = torch.zeros(1, 3, 64, 64)
    detail[..., ::2, :] = 0.2  # a fine stripe pattern
    cast = detail + 0.3  # the same detail with a colour cast
    fixed = wavelet_fix(cast, torch.full((1, 3, 64, 64), 0.15))
    assert abs(fixed.mean().item() - 0.15) < 0.01  # the cast is gone
    centre = fixed[..., 16:48, 16:48]
    assert torch.allclose(centre[..., ::2, :] - centre[..., 1::2, :], torch.full((1, 3, 16, 32), 0.2), atol=0.02)


def test_apply_color_fix_names():
    out, lr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 4, 4)
    assert torch.equal(apply_color_fix("none", out, lr), out)
    for kind in ("adain", "wavelet"):
        assert apply_color_fix(kind, out, lr).shape == out.shape
    with pytest.raises(ConfigError):
        apply_color_fix("sepia", out, lr)


def test_tensor_round_trip_is_lossless():
    image = Image.effect_noise((17, 9), 60).convert("RGB")
    assert np.array_equal(np.asarray(to_image(to_tensor(image))), np.asarray(image))


def test_read_image_modes_and_exif(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 3), 77).save(grey)
    assert read_image(grey).mode == "RGB"
    rotated = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.new("RGB", (8, 4), (200, 10, 10)).save(rotated, exif=exif)
    assert read_image(rotated).size == (4, 8)


def test_read_image_refuses_huge(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    with pytest.raises(InputImageError, match="pixel limit"):
        read_image(big, max_pixels=1000)


def test_save_is_atomic_and_checks_the_suffix(tmp_path):
    target = tmp_path / "x.png"
    save_image(Image.new("RGB", (4, 4)), target)
    assert Image.open(target).size == (4, 4)
    with pytest.raises(OutputError):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "x.unknown")
    with pytest.raises(OutputError):
        save_image(Image.new("RGBA", (4, 4)), tmp_path / "x.jpg")  # JPEG cannot hold alpha: nothing left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
