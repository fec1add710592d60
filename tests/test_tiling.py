"""The tile grid covers any image with equal tiles; fusion is exact for one tile and keeps constants."""

from __future__ import annotations

import pytest
import torch

from adadiffsr.engine.tiling import TileGrid, dominant_tile, fuse, gaussian_weights, tile_starts
from adadiffsr.errors import ConfigError


@pytest.mark.parametrize(
    "height,width,tile,overlap",
    [(5, 7, 16, 4), (16, 16, 16, 4), (17, 33, 16, 4), (20, 200, 16, 6), (200, 20, 16, 0), (64, 64, 32, 31)],
)
def test_grid_covers_image_with_equal_tiles(height, width, tile, overlap):
    grid = TileGrid.build(height, width, tile, overlap)
    covered = torch.zeros(height, width, dtype=torch.int)
    for box in grid.boxes:
        assert (box.height, box.width) == (min(tile, height), min(tile, width))
        assert box.top >= 0 and box.left >= 0
        assert box.top + box.height <= height and box.left + box.width <= width
        covered[box.slices()] += 1
    assert bool((covered > 0).all())


def test_tile_starts_overlap_at_least_requested():
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in zip(starts, starts[1:]))


def test_grid_rejects_bad_overlap():
    with pytest.raises(ConfigError):
        TileGrid.build(64, 64, 16, 16)
    with pytest.raises(ConfigError):
        TileGrid.build(64, 64, 0, 0)


def test_gaussian_weights_positive_and_peaked():
    w = gaussian_weights(9, 12)
    assert bool((w > 0).all())
    assert w.max() == w[4, 5:7].max()
    assert torch.allclose(w, w.flip(0)) and torch.allclose(w, w.flip(1))


def test_single_tile_fusion_is_exact():
    grid = TileGrid.build(12, 20, 32, 8)
    tile = torch.randn(1, 4, 12, 20)
    assert torch.equal(fuse(tile, grid), tile)


def test_fusion_keeps_a_constant_across_seams():
    grid = TileGrid.build(37, 53, 16, 5)
    tiles = torch.full((len(grid), 3, 16, 16), 0.3125)
    fused = fuse(tiles, grid)
    assert torch.allclose(fused, torch.full_like(fused, 0.3125), atol=1e-6)


def test_fusion_weights_favour_the_nearer_tile_centre():
    grid = TileGrid.build(8, 24, 16, 8)  # two tiles: [0,16) and [8,24)
    tiles = torch.stack([torch.zeros(1, 8, 16), torch.ones(1, 8, 16)])
    fused = fuse(tiles, grid)[0, 0, 4]
    assert fused[2] < 0.01 and fused[21] > 0.99
    assert bool((fused[8:16].diff() > 0).all())  # a smooth ramp across the overlap


def test_dominant_tile_is_nearest_centre():
    grid = TileGrid.build(8, 24, 16, 8)
    index = dominant_tile(grid)
    assert index[0, 0] == 0 and index[0, 23] == 1


def test_hard_stitching_takes_each_pixel_from_its_owner_tile():
    """fusion="none", the ablation of region integration: no blending, a step at the seam."""
    from adadiffsr.engine.tiling import accumulate, weight_total

    grid = TileGrid.build(8, 24, 16, 8)  # two tiles: [0,16) and [8,24)
    tiles = torch.stack([torch.zeros(1, 8, 16), torch.ones(1, 8, 16)])
    owner = dominant_tile(grid)
    out = torch.zeros(1, 1, 8, 24)
    accumulate(out, tiles, list(grid.boxes), weight_total(grid), owner=owner, indices=[0, 1])
    row = out[0, 0, 4]
    assert set(row.tolist()) == {0.0, 1.0}  # every pixel is one tile's value
    assert int(row.sum()) == int((owner[4] == 1).sum())
    assert bool((row.diff() >= 0).all()) and int((row.diff() != 0).sum()) == 1  # one hard seam


def test_fusion_none_through_the_api():
    """Hard seams against Gaussian fusion on the same tiles: equal where one tile covers a pixel,
    different in the overlap, where "none" takes each pixel from one tile only."""
    import numpy as np
    from PIL import Image

    from adadiffsr import UpscaleConfig, Upscaler

    from .conftest import tiny_compact

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (16, 28, 3), dtype=np.uint8))  # tiles at x = 0 and 12
    upscaler = Upscaler(tiny_compact(tile_size=16), "cpu")
    base = dict(policy="uniform", interval=500, tile=16, overlap=4)
    hard = upscaler(image, UpscaleConfig(fusion="none", **base))
    soft = upscaler(image, UpscaleConfig(**base))
    assert hard.image.size == soft.image.size == (112, 64)
    assert hard.report["settings"]["fusion"] == "none"
    a, b = hard.picture.rgb, soft.picture.rgb
    single = np.r_[0:48, 64:112]  # output columns one tile covers; 48..63 is the overlap
    assert np.array_equal(a[:, single], b[:, single])
    assert np.abs(a[:, 48:64] - b[:, 48:64]).max() > 1e-3
    with pytest.raises(ConfigError, match="fusion"):
        upscaler(image, UpscaleConfig(fusion="blend", **base))


def test_balanced_tiles_cover_with_the_overlap_and_fewer_pixels_and_fuse_exactly():
    """A whole-image network's tiles (``apply_tiled``) are cut to what they need: as many as ``build``'s,
    equal, no larger than the tile, each pair of neighbours overlapping, every pixel covered; a network
    that works pixel by pixel gives the same output tiled as in one call."""
    import torch.nn.functional as F

    from adadiffsr.engine.tiling import apply_tiled

    for height, width, tile, overlap in ((240, 320, 256, 16), (540, 960, 256, 16), (37, 53, 16, 5), (20, 90, 32, 0)):
        plain, grid = TileGrid.build(height, width, tile, overlap), TileGrid.balanced(height, width, tile, overlap)
        assert len(grid) == len(plain) and len({(b.height, b.width) for b in grid.boxes}) == 1
        th, tw = grid.tile_shape
        assert th <= tile and tw <= tile and th * tw <= plain.tile_shape[0] * plain.tile_shape[1]
        covered = torch.zeros(height, width)
        for box in grid.boxes:
            covered[box.slices()] += 1
        assert bool((covered >= 1).all())
        tops, lefts = sorted({b.top for b in grid.boxes}), sorted({b.left for b in grid.boxes})
        assert all(b - a <= th - overlap + 1 for a, b in zip(tops, tops[1:])) and tops[-1] + th == height
        assert all(b - a <= tw - overlap + 1 for a, b in zip(lefts, lefts[1:])) and lefts[-1] + tw == width
    assert TileGrid.balanced(240, 320, 256, 16).tile_shape == (240, 168)  # against (240, 256): 1.5x fewer pixels
    image = torch.rand(1, 3, 70, 150)
    network = lambda x: F.interpolate(x, scale_factor=2, mode="nearest") * 0.5  # noqa: E731
    assert torch.allclose(apply_tiled(network, image, 64, 8, 2), network(image), atol=1e-6)
