"""Real-ESRGAN x4plus: our ncnn converter reproduces the ncnn runtime's own output.

``fixtures/chelsea-24-realesrgan-ncnn.npy`` is the output of PyPI ``ncnn`` (fp32, CPU) for
``fixtures/chelsea-24.png``, computed once with the same model files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr.errors import WeightsError
from adadiffsr.prior import PRIORS, Prior
from adadiffsr.prior.rrdbnet import (
    RRDBNet,
    convert_ncnn,
    load_realesrgan,
    ncnn_model_files,
    parse_param,
    rrdbnet_names,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import os

    os.environ["ADADIFFSR_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        first = load_realesrgan()
        cached = Path(os.environ["ADADIFFSR_CACHE"]) / "realesrgan-x4plus.safetensors"
        assert cached.is_file()
        second = load_realesrgan()  # from the cache this time
        for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
            assert torch.equal(a, b), k
        return first
    finally:
        del os.environ["ADADIFFSR_CACHE"]


def test_matches_the_ncnn_runtime(model):
    image = np.asarray(Image.open(FIXTURES / "chelsea-24.png").convert("RGB"), dtype=np.float32) / 255
    with torch.no_grad():
        out = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].numpy()
    reference = np.load(FIXTURES / "chelsea-24-realesrgan-ncnn.npy")
    assert out.shape == reference.shape == (3, 96, 96)
    assert np.abs(out - reference).max() < 1e-5


def test_tiled_equals_whole_on_one_tile_and_is_close_across_tiles(model):
    image = np.asarray(Image.open(FIXTURES / "chelsea-24.png").convert("RGB"), dtype=np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = model(x).clamp(0, 1)
    info = PRIORS["realesrgan-x4plus"]
    one = (Prior(info, model, tile=32)(x * 2 - 1) + 1) / 2
    assert (one - whole).abs().max() < 1e-5  # float noise only: the tile pads to another shape, so another conv kernel
    tiled = (Prior(info, model, tile=16, overlap=8)(x * 2 - 1) + 1) / 2
    assert (tiled - whole)[..., 16:-16, 16:-16].abs().mean() < 0.01


def test_the_ncnn_runtime_gives_the_pytorch_output(model):
    from adadiffsr.prior.ncnn_runtime import NcnnNetwork

    image = np.asarray(Image.open(FIXTURES / "chelsea-24.png").convert("RGB"), dtype=np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = model(x).clamp(0, 1)
    net = NcnnNetwork(*ncnn_model_files())
    assert (net(x) - whole).abs().max() < 1e-4
    tiled = net(x, tile=16, overlap=8)
    assert tiled.shape == whole.shape and (tiled - whole)[..., 16:-16, 16:-16].abs().mean() < 0.01


def test_param_parsing_and_bad_files(tmp_path):
    param, _ = ncnn_model_files()
    convs = parse_param(param.read_text())
    assert len(convs) == len(rrdbnet_names()) == 351
    assert convs[0] == {"out": 64, "kernel": 3, "bias": 1, "count": 1728}
    bad = tmp_path / "x.param"
    bad.write_text("hello\n")
    with pytest.raises(WeightsError, match="magic"):
        parse_param(bad.read_text())
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0\0\0\0" + b"\0" * 16)
    with pytest.raises((WeightsError, ValueError)):
        convert_ncnn(param, short)
    assert sum(p.numel() for p in RRDBNet().parameters()) == 16_697_987
