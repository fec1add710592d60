"""Degradations do what they claim; pairs are deterministic; the manifest is complete."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adadiffsr.data.degradations import (
    BlurConfig,
    RealESRGANDegradation,
    bicubic_degrade,
    blur,
    degrade,
    gaussian_kernel,
    gaussian_noise,
    generalized_gaussian_kernel,
    jpeg,
    plateau_kernel,
    poisson_noise,
    random_blur_kernel,
    sinc_kernel,
)
from adadiffsr.data.pairs import PairDataset
from adadiffsr.data.photos import PACKAGES, ground_truth, manifest


def smooth_image(h=64, w=64):
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * x, 0.5 + 0.3 * torch.sin(6 * y), 0.4 * x * y + 0.3])


def test_kernels_sum_to_one_and_are_shaped():
    kernels = [
        gaussian_kernel(21, 2.0, 2.0, 0.0), gaussian_kernel(15, 1.0, 3.0, 0.7),
        generalized_gaussian_kernel(13, 1.5, 2.5, 0.3, 0.5), plateau_kernel(11, 2.0, 1.0, 1.0, 1.5),
        sinc_kernel(13, math.pi / 2),
    ]
    kernels += [random_blur_kernel(np.random.default_rng(s), BlurConfig()) for s in range(20)]
    for k in kernels:
        assert abs(float(k.sum()) - 1) < 1e-5
    iso = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert torch.allclose(iso, iso.T, atol=1e-7) and iso.argmax() == 21 * 10 + 10
    aniso = gaussian_kernel(21, 1.0, 4.0, 0.0)  # sigma 1 along x, 4 along y
    pos = torch.arange(21.0) - 10
    var_y, var_x = float((aniso.sum(1) * pos**2).sum()), float((aniso.sum(0) * pos**2).sum())
    assert abs(var_x - 1.0) < 0.05 and 10 < var_y < 16  # 16 minus the truncation at 21 taps


def test_blur_keeps_constants_and_smooths():
    flat = torch.full((3, 32, 32), 0.4)
    assert torch.allclose(blur(flat, gaussian_kernel(21, 3.0, 3.0, 0.0)), flat, atol=1e-6)
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert blur(noisy, gaussian_kernel(21, 2.0, 2.0, 0.0)).std() < 0.5 * noisy.std()


def test_gaussian_noise_variance_and_gray():
    gen = torch.Generator().manual_seed(0)
    base = torch.full((3, 256, 256), 0.5)
    noisy = gaussian_noise(base, 10 / 255, gray=False, gen=gen)
    assert abs(float((noisy - base).std()) - 10 / 255) < 0.002
    gray = gaussian_noise(base, 10 / 255, gray=True, gen=gen) - base
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_poisson_noise_grows_with_brightness():
    gen = torch.Generator().manual_seed(0)
    dark, bright = torch.full((3, 128, 128), 0.05), torch.full((3, 128, 128), 0.9)
    assert (poisson_noise(bright, 1.0, False, gen) - bright).std() > 2 * (poisson_noise(dark, 1.0, False, gen) - dark).std()


def test_jpeg_low_quality_is_blocky():
    image = smooth_image() + 0.05 * torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    low = jpeg(image, 10)

    def boundary_jump(x):
        d = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(0, 1))  # per column boundary
        return float(d[7::8].mean() / d.mean())

    assert boundary_jump(low) > 1.2 * boundary_jump(jpeg(image, 95))
    assert low.shape == image.shape and 0 <= float(low.min()) and float(low.max()) <= 1


@pytest.mark.parametrize("seed", range(6))
def test_degrade_output_size_range_and_determinism(seed):
    hr = smooth_image(96, 128)
    lr = degrade(hr, seed)
    assert lr.shape == (3, 24, 32)
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)  # 8-bit values
    assert torch.equal(lr, degrade(hr, seed))


def test_degrade_changes_with_seed_and_scale():
    hr = smooth_image(64, 64)
    assert not torch.equal(degrade(hr, 0), degrade(hr, 1))
    assert degrade(hr, 0, RealESRGANDegradation(scale=2)).shape == (3, 32, 32)
    assert bicubic_degrade(hr).shape == (3, 16, 16)


def test_pairs_are_deterministic(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray((smooth_image(80, 90).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    ds = PairDataset([path], crop=32, seed=3)
    lr, hr = ds[5]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32)
    lr2, hr2 = PairDataset([path], crop=32, seed=3)[5]
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(ds[6][1], hr)


def test_manifest_lists_real_photos_with_licences():
    photos = manifest()
    assert len(photos) == 50
    assert {p.package for p in photos} == set(PACKAGES)
    assert all(p.license and p.split in ("train", "val", "test") for p in photos)
    assert len({p.name for p in photos}) == 50
    assert 6 <= sum(p.split == "val" for p in photos) <= 12
    # the test split is one whole package, and no training or validation photo comes from it
    held_out = {p.package for p in photos if p.split == "test"}
    assert held_out == {"mate-backgrounds"}
    assert all(p.split == "test" for p in photos if p.package in held_out)
    reserved = ("enlightenment", "opencv")
    assert not any(r in p.package or r in p.path for p in photos for r in reserved)


def test_ground_truth_downscales_at_least_twice():
    from PIL import Image

    assert ground_truth(Image.new("RGB", (1280, 1024))).size == (640, 512)
    assert ground_truth(Image.new("RGB", (4000, 3000))).size == (1024, 768)


def test_a_pair_dataset_draws_a_mix_of_degradations_per_sample(tmp_path):
    """``realesrgan-x4:1,bicubic-x4:1``: some samples are bicubic exactly, some are not; one name alone
    gives the samples it always gave."""
    from PIL import Image

    from adadiffsr.errors import ConfigError

    path = tmp_path / "p.png"
    Image.fromarray((smooth_image(80, 90).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    mixed = PairDataset([path], crop=32, seed=3, degradation="realesrgan-x4:1,bicubic-x4:1")
    kinds = [torch.allclose(lr, bicubic_degrade(hr), atol=1e-6) for lr, hr in (mixed[i] for i in range(12))]
    assert any(kinds) and not all(kinds)
    one = PairDataset([path], crop=32, seed=3, degradation="realesrgan-x4")
    same = PairDataset([path], crop=32, seed=3)
    assert torch.equal(one[5][0], same[5][0])
    with pytest.raises(ConfigError, match="degradation mix"):
        PairDataset([path], crop=32, degradation="bicubic-x4:0")
