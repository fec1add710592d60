"""The lite prior: x4plus cut to its first blocks and fine-tuned, offered beside the compact prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.cli import main
from adadiffsr.errors import ConfigError
from adadiffsr.prior import PRIORS, PriorInfo, load_prior
from adadiffsr.prior.lite import ARCHITECTURE, lite_config, load_lite_prior, truncated_x4plus
from adadiffsr.prior.rrdbnet import RRDBNet, load_realesrgan
from adadiffsr.prior.runner import prior_from_file
from adadiffsr.weights import save_module

from .conftest import tiny_refiner, tiny_rrdbnet
from .test_prior_routing import WALK, half_flat_half_textured, tiny_compact_prior, x4plus_cache


def test_the_lite_prior_is_x4plus_cut_to_its_first_blocks_with_its_whole_tail():
    full = load_realesrgan().state_dict()
    whole = truncated_x4plus(23).state_dict()
    assert whole.keys() == full.keys() and all(torch.equal(whole[k], full[k]) for k in full)
    cut = truncated_x4plus(2)
    assert len(cut.body) == 2 and lite_config(cut) == {"num_blocks": 2, "nf": 64, "gc": 32}
    kept = cut.state_dict()
    assert all(torch.equal(kept[k], full[k]) for k in kept)  # body.0-1 and the tail, as x4plus has them
    assert not any(k.startswith("body.2.") for k in kept)
    with pytest.raises(ConfigError, match="keep 1 to 23"):
        truncated_x4plus(0)


def tiny_lite() -> RRDBNet:
    torch.manual_seed(11)
    return RRDBNet(nf=8, gc=4, num_blocks=2).eval()


@pytest.fixture
def with_lite(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """``tiny-test`` with the stand-in ``tiny-compact`` and the lite prior ``tiny-lite``, whose file may be absent."""
    here = {"lite": True}
    monkeypatch.setitem(PRIORS, "tiny-compact", PriorInfo("tiny-compact", 4, "tests", "test only", tiny_compact_prior))
    monkeypatch.setitem(PRIORS, "tiny-lite", PriorInfo("tiny-lite", 4, "tests-lite", "test only", tiny_lite,
                                                       available=lambda: here["lite"]))
    monkeypatch.setitem(PRIORS, "tiny-test", PriorInfo("tiny-test", 4, "tests", "test only", tiny_rrdbnet,
                                                       stand_in="tiny-compact", lite="tiny-lite"))
    return here


def test_a_model_offers_its_lite_prior_where_the_file_is_and_runs_it_over_the_whole_image(with_lite):
    upscaler = Upscaler(tiny_refiner(live=True))
    assert upscaler.priors == ("tiny-test", "routed", "tiny-compact", "tiny-lite")
    image = half_flat_half_textured()
    zero = upscaler(image, UpscaleConfig(steps=0, prior="tiny-lite"))  # the lite prior alone: its output exactly
    rgb = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    expected = (load_prior("tiny-lite")(rgb)[0].permute(1, 2, 0).numpy() + 1) / 2
    assert np.abs(zero.picture.rgb - expected).max() < 1e-5
    assert zero.report["settings"]["prior"] == "tiny-lite" and zero.report["settings"]["files"]["prior_lite"] == "tests-lite"
    refined = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK, prior="tiny-lite"))
    own = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK))
    assert refined.report["settings"]["prior"] == "tiny-lite" and not np.array_equal(refined.picture.rgb, own.picture.rgb)
    assert refined.report["compact_student_tiles"] == 0  # the compact student serves the compact prior's tiles only
    with_lite["lite"] = False
    alone = Upscaler(tiny_refiner(live=True))
    assert alone.priors == ("tiny-test", "routed", "tiny-compact")
    with pytest.raises(ConfigError, match="unknown prior 'tiny-lite'"):
        alone(image, UpscaleConfig(policy="grouped", timesteps=WALK, prior="tiny-lite"))


def test_train_prior_init_x4plus_n_trains_and_resumes_the_lite_prior_from_the_cli(tmp_path, tiny_prior, capsys):
    x4plus_cache(tmp_path, count=4, shard_size=2)
    args = ["train", "prior", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--crop", "32",
            "--batch-size", "1", "--workers", "0", "--init", "x4plus:1"]
    code = main([*args, "--steps", "1"])
    assert code == 0, capsys.readouterr().err
    path = tmp_path / "run" / "ema.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["adadiffsr.architecture"] == ARCHITECTURE
    lite = load_lite_prior(path)
    assert lite_config(lite) == {"num_blocks": 1, "nf": 64, "gc": 32}
    assert prior_from_file(path).info.name == "lite-prior-x4"  # a candidate file runs as the lite prior
    assert main([*args, "--steps", "2"]) == 0 and "resumed from" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "r2"), "--init", "x4plus:four", "--steps", "1"]) == 2
    assert "x4plus:4" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "r3"), "--model", '{"num_conv": 2}', "--steps", "1"]) == 2
    assert "lite prior's shape" in capsys.readouterr().err
    save_module(tiny_lite(), tmp_path / "lite.safetensors", ARCHITECTURE, lite_config(tiny_lite()))
    assert main([*args, "--out", str(tmp_path / "r4"), "--init", str(tmp_path / "lite.safetensors"), "--steps", "1"]) == 0
    assert lite_config(load_lite_prior(tmp_path / "r4" / "ema.safetensors"))["nf"] == 8
