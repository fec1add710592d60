"""Metrics against reference values (BasicSR 1.4.2, which matches MATLAB) and their basic laws.

Reference values were computed once on the fixture crops of scikit-image's CC0 ``chelsea`` and
``coffee`` photos: NIQE, PSNR-Y and SSIM-Y with BasicSR 1.4.2 (``calculate_*``, Y channel);
BRISQUE with the PyPI ``brisque`` 0.2.0 package (its numpy-2 fix applied); PIQE with the PyPI
``pypiqe`` 1.2 package (MATLAB's ``piqe`` ported, given BGR). The distorted image is
``clip(round(0.9 x + 12 + 8 sin(col / 3)))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr.errors import ConfigError
from adadiffsr.metrics.brisque import brisque
from adadiffsr.metrics.gmsd import gmsd
from adadiffsr.metrics.niqe import niqe
from adadiffsr.metrics.nlpd import laplacian_pyramid, nlpd, reconstruct
from adadiffsr.metrics.piqe import piqe
from adadiffsr.metrics.psnr import psnr_y
from adadiffsr.metrics.registry import METRICS, available, create_metric
from adadiffsr.metrics.resize import imresize
from adadiffsr.metrics.ssim import ms_ssim_y, ssim_y

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = {  # name: (niqe, psnr_y, ssim_y) from BasicSR 1.4.2
    "chelsea-288.png": (2.7099122081666827, 33.1459107980921, 0.9626501861353549),
    "coffee-288x192.png": (6.995544038779316, 31.056761735335737, 0.9451120738864237),
}
MS_SSIM_REFERENCE = {  # name: ms_ssim of pytorch-msssim 1.0.0 on the same border-cropped 8-bit luma (data_range 255)
    "chelsea-288.png": 0.9501916291580624,
    "coffee-288x192.png": 0.9403375622806485,
}
BRISQUE_REFERENCE = {  # name: brisque from brisque 0.2.0 (it gives no score for the 24 px image)
    "chelsea-288.png": 2.481257658826138,
    "coffee-288x192.png": 7.785628804129232,
}
PIQE_REFERENCE = {  # name: piqe from pypiqe 1.2
    "chelsea-288.png": 32.099401020173715,
    "coffee-288x192.png": 28.140546914704778,
    "chelsea-24.png": 51.65343465259144,
}


def load(name):
    array = np.asarray(Image.open(FIXTURES / name).convert("RGB"), dtype=np.float64)
    distorted = np.clip(array * 0.9 + 12 + 8 * np.sin(np.arange(array.shape[1]) / 3)[None, :, None], 0, 255).round()
    to_t = lambda a: torch.from_numpy(a / 255).permute(2, 0, 1)[None]
    return to_t(array), to_t(distorted)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_calibrated_against_basicsr(name):
    ref, distorted = load(name)
    want_niqe, want_psnr, want_ssim = REFERENCE[name]
    assert abs(niqe(ref).item() - want_niqe) < 2e-3  # the reference runs partly in float32
    assert abs(psnr_y(distorted, ref).item() - want_psnr) < 1e-4
    assert abs(ssim_y(distorted, ref).item() - want_ssim) < 1e-5


@pytest.mark.parametrize("name", sorted(MS_SSIM_REFERENCE))
def test_ms_ssim_against_pytorch_msssim(name):
    """Within 2e-4: pytorch-msssim pads odd sides before each 2x average pooling, we crop them."""
    ref, distorted = load(name)
    assert abs(ms_ssim_y(distorted, ref).item() - MS_SSIM_REFERENCE[name]) < 2e-4


def load_unit(name):
    image = torch.from_numpy(np.asarray(Image.open(FIXTURES / name).convert("RGB"), dtype=np.float64) / 255)
    return image.permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", sorted(BRISQUE_REFERENCE))
def test_brisque_calibrated(name):
    assert abs(brisque(load_unit(name)).item() - BRISQUE_REFERENCE[name]) < 1e-6


@pytest.mark.parametrize("name", sorted(PIQE_REFERENCE))
def test_piqe_calibrated(name):
    assert abs(piqe(load_unit(name)).item() - PIQE_REFERENCE[name]) < 1e-3  # OpenCV's blur rounds slightly differently


def test_nlpd_pyramid_inverts_and_distance_grows():
    y = torch.rand(2, 1, 77, 93, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    levels = laplacian_pyramid(y)
    assert [tuple(level.shape[-2:]) for level in levels] == [(77, 93), (39, 47), (20, 24), (10, 12), (5, 6), (3, 3)]
    assert torch.allclose(reconstruct(levels), y, atol=1e-12)
    ref, distorted = load("coffee-288x192.png")
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=ref.dtype)
    assert nlpd(ref, ref).item() == 0
    assert 0 < nlpd((ref + 0.02 * noise).clamp(0, 1), ref) < nlpd((ref + 0.1 * noise).clamp(0, 1), ref)


def test_full_reference_laws():
    ref, distorted = load("chelsea-288.png")
    assert torch.isinf(psnr_y(ref, ref)).item() or psnr_y(ref, ref).item() > 100
    assert ssim_y(ref, ref).item() == pytest.approx(1.0)
    assert ms_ssim_y(ref, ref).item() == pytest.approx(1.0)
    assert gmsd(ref, ref).item() == pytest.approx(0.0, abs=1e-9)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype)
    mild, strong = (ref + 0.02 * noise).clamp(0, 1), (ref + 0.1 * noise).clamp(0, 1)
    assert ms_ssim_y(mild, ref) > ms_ssim_y(strong, ref)
    assert gmsd(mild, ref) < gmsd(strong, ref)
    assert ssim_y(mild, ref) > ssim_y(strong, ref)


def test_niqe_prefers_sharp_to_blurred():
    ref, _ = load("chelsea-288.png")
    blurred = torch.nn.functional.avg_pool2d(ref, 5, stride=1, padding=2, count_include_pad=False)
    assert niqe(blurred).item() > niqe(ref).item() + 1
    with pytest.raises(ValueError):
        niqe(ref[..., :90, :90])


def test_imresize_halves_like_matlab():
    x = torch.arange(64.0, dtype=torch.float64).reshape(8, 8)
    half = imresize(x, 0.5)
    assert half.shape == (4, 4)
    assert torch.allclose(half.mean(), x.mean(), atol=0.3)
    const = torch.full((10, 14), 3.0, dtype=torch.float64)
    assert torch.allclose(imresize(const, 0.5), torch.full((5, 7), 3.0, dtype=torch.float64))


def test_registry_metadata_and_errors():
    assert METRICS["niqe"].lower_is_better and not METRICS["niqe"].full_reference
    assert not METRICS["psnr"].lower_is_better and METRICS["psnr"].full_reference
    assert {"psnr", "ssim", "ms_ssim", "gmsd", "nlpd", "niqe", "brisque", "piqe"} <= set(available())
    with pytest.raises(ConfigError, match="did you mean 'niqe'"):
        create_metric("nique")
    with pytest.raises(ConfigError, match="weights"):
        create_metric("lpips")
    ref, distorted = load("coffee-288x192.png")
    assert create_metric("PSNR").fn(distorted, ref).shape == (1,)


def test_detail_ratio_laws():
    """1 for the truth itself; contrast halved is a quarter of the energy at every scale; a blur
    removes more detail at 1 px than at 4 px; noise on the truth adds detail; too small: ValueError."""
    from adadiffsr.metrics.detail import detail_ratio, gaussian_blur

    ref, _ = load("chelsea-288.png")
    for s in (1, 2, 4):
        assert detail_ratio(ref, ref, s).item() == pytest.approx(1.0)
        assert detail_ratio(0.5 * ref + 0.25, ref, s).item() == pytest.approx(0.25, rel=1e-6)
    blurred = torch.cat([gaussian_blur(ref[:, c : c + 1], 1.5) for c in range(3)], 1)
    d1, d2, d4 = (detail_ratio(blurred, ref, s).item() for s in (1, 2, 4))
    assert d1 < d2 < d4 < 1
    noisy = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype)).clamp(0, 1)
    assert detail_ratio(noisy, ref, 1).item() > 1.5
    with pytest.raises(ValueError, match="at least 64 px"):
        detail_ratio(ref[..., :60, :60], ref[..., :60, :60], 4)
    assert create_metric("detail_2").full_reference and not create_metric("detail_2").lower_is_better
