"""x4plus's faithful tail: --fidelity interpolates the prior's tail toward it (ESRGAN's network interpolation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.cli import main
from adadiffsr.errors import WeightsError
from adadiffsr.prior import PRIORS, Prior, PriorInfo, load_prior
from adadiffsr.prior.fidelity_tail import ARCHITECTURE, TAIL, FidelityTail, interpolated, load_fidelity_tail
from adadiffsr.weights import save_module

from .conftest import tiny_refiner, tiny_rrdbnet
from .test_prior_routing import WALK, half_flat_half_textured, x4plus_cache


def faithful_tail() -> FidelityTail:
    """The tiny prior's own tail with its weights moved: a stand-in for a fine-tuned one."""
    tail = FidelityTail.of(tiny_rrdbnet())
    torch.manual_seed(3)
    with torch.no_grad():
        for p in tail.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return tail


@pytest.fixture
def tail_file(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The prior ``tiny-test`` with a faithful tail in a file; returns the file's path."""
    path = tmp_path / "tail.safetensors"
    save_module(faithful_tail(), path, ARCHITECTURE, {"nf": 8})
    monkeypatch.setitem(PRIORS, "tiny-test", PriorInfo("tiny-test", 4, "tests", "test only", tiny_rrdbnet,
                                                       fidelity_tail=lambda: path))
    return path


def test_a_network_s_own_tail_reproduces_it_and_interpolation_moves_only_the_tail():
    net = tiny_rrdbnet()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        features = net.conv_first(x)
        assert torch.allclose(FidelityTail.of(net)(features, net.body(features)), net(x), atol=1e-6)
    tail = faithful_tail()
    params = interpolated(net, tail, 0.25)
    assert sorted({k.split(".")[0] for k in params}) == sorted(TAIL)
    own = dict(net.named_parameters())
    for name, value in tail.named_parameters():
        assert torch.allclose(params[name], own[name] + 0.25 * (value - own[name]), atol=1e-6)


def test_fidelity_moves_the_prior_from_its_own_output_to_its_faithful_tail_s_tiled_or_not(tail_file):
    prior = load_prior("tiny-test")
    assert prior.fidelity_tail is not None and load_fidelity_tail(tail_file).conv_body.in_channels == 8
    plain = PRIORS["tiny-test"].loader()
    x = torch.rand(1, 3, 20, 16) * 2 - 1
    with torch.no_grad():
        rgb = (x + 1) / 2
        features = plain.conv_first(rgb)
        faithful = faithful_tail()(features, plain.body(features)).clamp(0, 1) * 2 - 1
        own = plain(rgb).clamp(0, 1) * 2 - 1
    assert torch.allclose(prior(x), own, atol=1e-5) and torch.equal(prior(x, fidelity=0.0), prior(x))
    assert torch.allclose(prior(x, fidelity=1.0), faithful, atol=1e-5)
    assert torch.equal(prior(x, fidelity=3.0), prior(x, fidelity=1.0))  # no extrapolation past the faithful tail
    half = prior(x, fidelity=0.5)
    assert not torch.allclose(half, own, atol=1e-3) and not torch.allclose(half, faithful, atol=1e-3)
    swapped = PRIORS["tiny-test"].loader()  # x4plus with the faithful tail's weights in place of its own
    swapped.load_state_dict(faithful_tail().state_dict(), strict=False)
    prior.tile, prior.overlap = 12, 4  # the tiled path interpolates the same weights
    assert torch.allclose(prior(x, fidelity=1.0), Prior(prior.info, swapped, 12, 4)(x), atol=1e-5)
    assert not torch.allclose(prior(x, fidelity=1.0), prior(x), atol=1e-3)


def test_the_api_s_fidelity_reaches_the_prior_s_tail_and_the_report_says_how_far(tail_file):
    upscaler = Upscaler(tiny_refiner(live=True))
    image = half_flat_half_textured()
    rgb = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    zero = upscaler(image, UpscaleConfig(steps=0, fidelity=1.0))  # no step: the faithful prior's output exactly
    expected = (load_prior("tiny-test")(rgb, fidelity=1.0)[0].permute(1, 2, 0).numpy() + 1) / 2
    assert np.abs(zero.picture.rgb - expected).max() < 1e-5
    settings = zero.report["settings"]
    assert settings["prior_tail_fidelity"] == 1.0 and settings["files"]["prior_fidelity_tail"] == str(tail_file)
    own = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK, fidelity=0.0))
    moved = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK, fidelity=0.5))
    assert own.report["settings"]["prior_tail_fidelity"] == 0.0 and moved.report["settings"]["prior_tail_fidelity"] == 0.5
    assert not np.array_equal(own.picture.rgb, moved.picture.rgb)


def test_train_fidelity_tail_from_the_cli_learns_resumes_and_writes_its_recipe(tmp_path, tiny_prior, capsys,
                                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("adadiffsr.train.fidelity_tail.load_realesrgan", tiny_rrdbnet)
    x4plus_cache(tmp_path, count=6, shard_size=3)
    run, out = tmp_path / "run", tmp_path / "tail.safetensors"
    args = ["train", "fidelity-tail", "--cache", str(tmp_path / "cache"), "--run", str(run), "--crop", "32",
            "--batch-size", "4", "--learning-rate", "3e-3"]
    assert main([*args, "--steps", "30", "--out", str(out)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (run / "features").iterdir()) == ["features-00000.safetensors",
                                                                      "features-00001.safetensors"]
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["adadiffsr.architecture"] == ARCHITECTURE and meta["adadiffsr.train_steps"] == "30"
    assert json.loads(meta["adadiffsr.recipe"])["crop"] == 32
    scores = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "psnr_y" in line]
    assert scores[0]["step"] == 0 and scores[-1]["step"] == 30
    assert scores[-1]["psnr_y"] > scores[0]["psnr_y"] + 0.5  # trained to the truth, not to the tiny prior's noise
    assert scores[0]["psnr_y"] == pytest.approx(scores[0]["psnr_y_x4plus"], abs=0.1)  # it starts as x4plus's own tail
    assert main([*args, "--steps", "32"]) == 0 and "resumed from" in capsys.readouterr().err
    assert main([*args, "--run", str(tmp_path / "r2"), "--crop", "30", "--steps", "1"]) == 2
    assert "multiple of 4" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        load_fidelity_tail(bad)


def test_a_cache_at_a_fidelity_stores_the_faithful_prior_s_output_and_says_so(tmp_path, tail_file):
    from adadiffsr.data.cache import CacheConfig, build_cache

    from .test_refiner import _photos

    files = _photos(tmp_path)
    plain, moved = CacheConfig(prior="tiny-test", crop=32, shard_size=2), CacheConfig(prior="tiny-test", crop=32,
                                                                                     shard_size=2, fidelity=1.0)
    assert "fidelity" not in plain.to_json() and moved.to_json()["fidelity"] == 1.0  # old caches keep their settings
    prior = load_prior("tiny-test")
    for name, cfg in (("plain", plain), ("moved", moved)):
        build_cache(files, tmp_path / name, 2, cfg, prior)
    own, faithful = (load_file(str(tmp_path / n / "shard-00000.safetensors")) for n in ("plain", "moved"))
    assert torch.equal(own["lr"], faithful["lr"]) and torch.equal(own["hr"], faithful["hr"])  # the same crops
    expected = ((prior(own["lr"][:1].float() / 127.5 - 1, fidelity=1.0) + 1) * 127.5).round().clamp(0, 255)
    assert (faithful["prior"][:1].float() - expected).abs().max() <= 1
    assert not torch.equal(own["prior"], faithful["prior"])
    assert json.loads((tmp_path / "moved" / "cache.json").read_text())["config"]["fidelity"] == 1.0


def test_routed_and_stand_in_priors_say_how_far_the_tail_moved(tail_file, monkeypatch: pytest.MonkeyPatch):
    from .test_prior_routing import tiny_compact_prior

    monkeypatch.setitem(PRIORS, "tiny-compact", PriorInfo("tiny-compact", 4, "tests", "test only", tiny_compact_prior))
    monkeypatch.setitem(PRIORS, "tiny-test", PriorInfo("tiny-test", 4, "tests", "test only", tiny_rrdbnet,
                                                       stand_in="tiny-compact", fidelity_tail=lambda: tail_file))
    upscaler = Upscaler(tiny_refiner(live=True))
    image = half_flat_half_textured()
    routed = {f: upscaler(image, UpscaleConfig(steps=0, prior="routed", prior_region=24, prior_overlap=8,
                                              prior_share=1.0, prior_threshold=0.0, fidelity=f)) for f in (0.0, 1.0)}
    assert routed[1.0].report["settings"]["prior_tail_fidelity"] == 1.0
    assert not np.array_equal(routed[0.0].picture.rgb, routed[1.0].picture.rgb)  # x4plus's regions moved
    compact = upscaler(image, UpscaleConfig(steps=0, prior="tiny-compact", fidelity=1.0))
    assert compact.report["settings"]["prior_tail_fidelity"] == 0.0  # the stand-in has no tail to move
