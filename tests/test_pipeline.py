"""Image-level invariants: untiled equality, constant images, any size, determinism."""

from __future__ import annotations

import pytest
import torch

from adadiffsr.engine.pipeline import TilingSettings, pad_to_multiple, upscale_tensor
from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators
from adadiffsr.errors import ConfigError
from adadiffsr.policies.uniform import UniformPolicy

from .conftest import constant_preserving, tiny_compact


def lr_image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("rule", ["ddim", "ddpm"])
def test_one_tile_covering_the_image_equals_untiled_sampling(rule):
    backbone = tiny_compact()
    lr = lr_image(12, 20)
    settings = SamplerSettings(rule=rule)
    policy = UniformPolicy(100)
    tiled = upscale_tensor(backbone, lr, policy, settings, TilingSettings(tile=32), seed=5)
    assert len(tiled.grid) == 1

    # the same walk by hand, without any tiling code
    with torch.no_grad():
        noise = torch.randn((1, 48, 12, 20), generator=torch.Generator().manual_seed(5))
        run = sample_tiles(backbone, noise, backbone.condition(lr), policy, settings, tile_generators(5, 1, lr.device))
        untiled = backbone.decode(run.x0).clamp(-1, 1)
    assert torch.equal(tiled.image, untiled)


def test_constant_image_stays_constant_across_seams():
    backbone = constant_preserving(tile_size=8, size_multiple=4)
    lr = torch.full((1, 3, 23, 41), -0.25)
    out = upscale_tensor(backbone, lr, UniformPolicy(50), SamplerSettings(batch_tiles=3), TilingSettings(overlap=3))
    assert len(out.grid) > 6
    assert out.image.shape == (1, 3, 46, 82)
    assert torch.allclose(out.image, torch.full_like(out.image, -0.25), atol=1e-5)


@pytest.mark.parametrize("h,w", [(5, 7), (13, 9), (8, 80), (80, 8), (31, 17)])
def test_any_input_size(h, w):
    backbone = tiny_compact()
    out = upscale_tensor(backbone, lr_image(h, w), UniformPolicy(250), SamplerSettings(), TilingSettings(tile=8, overlap=2))
    assert out.image.shape == (1, 3, 4 * h, 4 * w)
    assert bool(torch.isfinite(out.image).all())
    assert out.run.nfe == len(out.grid) * 4


def test_same_seed_is_bit_identical_and_seed_matters():
    backbone = tiny_compact()
    lr = lr_image(20, 28)
    args = (backbone, lr, UniformPolicy(100), SamplerSettings(rule="ddpm", batch_tiles=3), TilingSettings(tile=16))
    a, b = upscale_tensor(*args, seed=1), upscale_tensor(*args, seed=1)
    c = upscale_tensor(*args, seed=2)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)


def test_tile_must_fit_the_backbone():
    backbone = tiny_compact()  # two UNet levels: sides must be even
    with pytest.raises(ConfigError):
        upscale_tensor(backbone, lr_image(8, 8), UniformPolicy(100), SamplerSettings(), TilingSettings(tile=7))
    with pytest.raises(ConfigError):
        upscale_tensor(backbone, lr_image(8, 8), UniformPolicy(100), SamplerSettings(), TilingSettings(tile=8, overlap=8))


def test_pad_to_multiple_reflects_and_handles_tiny_inputs():
    x = lr_image(5, 6)
    assert pad_to_multiple(x, 4).shape[-2:] == (8, 8)
    assert torch.equal(pad_to_multiple(x, 4)[..., :5, :6], x)
    assert pad_to_multiple(lr_image(1, 1), 8).shape[-2:] == (8, 8)
