"""The compact prior, its training, and stage 1 chosen per region (the compact prior everywhere, the
full one where a region needs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.backbones import save_backbone
from adadiffsr.cli import main
from adadiffsr.data.cache import CacheConfig, build_cache
from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.prior import PRIORS, PriorInfo, load_prior
from adadiffsr.prior.compact import CompactPrior, CompactPriorConfig, load_compact_prior
from adadiffsr.prior.routing import PriorRouting, choose_regions, routed_prior

from .conftest import tiny_refiner, tiny_rrdbnet
from .test_refiner import _photos

WALK = (399, 149, 29)


def tiny_compact_prior() -> CompactPrior:
    torch.manual_seed(3)
    return CompactPrior(CompactPriorConfig(num_feat=8, num_conv=1)).eval()


@pytest.fixture
def routable(monkeypatch: pytest.MonkeyPatch) -> str:
    """``tiny-test`` (a tiny RRDBNet) with ``tiny-compact`` as its stand-in; returns the full prior's name."""
    monkeypatch.setitem(PRIORS, "tiny-compact", PriorInfo("tiny-compact", 4, "tests", "test only", tiny_compact_prior))
    monkeypatch.setitem(PRIORS, "tiny-test", PriorInfo("tiny-test", 4, "tests", "test only", tiny_rrdbnet,
                                                       stand_in="tiny-compact"))
    return "tiny-test"


def half_flat_half_textured(h: int = 40, w: int = 96) -> Image.Image:
    a = np.full((h, w, 3), 120, np.uint8)
    a[:, w // 2 :] = np.random.default_rng(0).integers(0, 256, (h, w - w // 2, 3))
    return Image.fromarray(a)


def test_compact_prior_is_small_and_a_residual_over_the_nearest_upsample():
    model = CompactPrior()
    assert sum(p.numel() for p in model.parameters()) <= 1_500_000
    with torch.no_grad():
        model.body[-2].weight.zero_()
        model.body[-2].bias.zero_()
    x = torch.rand(1, 3, 10, 14)
    assert torch.equal(model(x), F.interpolate(x, scale_factor=4, mode="nearest"))


def test_compact_prior_starts_trainable_its_signal_survives_the_stack():
    """With PyTorch's default initialisation the 18 layers' output hardly depended on the input (std 7e-8 between
    two random inputs) and training stayed at the nearest upsample; He initialisation keeps the signal."""
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    model = CompactPrior()
    with torch.no_grad():  # how much the residual depends on the input (7e-8 with the default initialisation)
        dependence = float((model.body(x) - model.body(y)).std())
    assert 1e-3 < dependence < 1.0


def test_animevideov3_converts_from_the_wheel_and_matches_ncnn():
    from adadiffsr.prior.compact import ANIMEVIDEO_V3, animevideo_v3
    from adadiffsr.prior.ncnn_runtime import NcnnNetwork
    from adadiffsr.prior.rrdbnet import ncnn_model_files

    model = animevideo_v3()
    assert model.config == CompactPriorConfig(scale=4, num_feat=64, num_conv=16)  # the compact prior's shape
    param, _ = ncnn_model_files()
    ncnn_net = NcnnNetwork(param.with_name(f"{ANIMEVIDEO_V3}.param"), param.with_name(f"{ANIMEVIDEO_V3}.bin"))
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x).clamp(0, 1) - ncnn_net(x, 64, 8)).abs().max() < 1e-4  # the runtime clamps


def test_choose_regions_takes_the_hardest_above_the_threshold_up_to_the_share():
    d = torch.tensor([0.02, 0.001, 0.05, 0.03, 0.015, 0.002])
    assert choose_regions(d, 0.5, 0.01).tolist() == [True, False, True, True, False, False]
    assert choose_regions(d, 0.5, 0.025).tolist() == [False, False, True, True, False, False]  # threshold wins
    assert choose_regions(d, 1 / 3, 0.0).tolist() == [False, False, True, True, False, False]  # share wins
    assert not choose_regions(d, 0.0, 0.0).any()
    assert choose_regions(d, 1.0, 0.0).all()
    with pytest.raises(ConfigError):
        PriorRouting(prior_share=1.5)
    with pytest.raises(ConfigError):
        PriorRouting(prior_region=16, prior_overlap=16)


def _bicubic(lr: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)


def test_routed_alike_equals_the_single_prior_and_a_boundary_blends_without_a_seam():
    lr = torch.from_numpy(np.asarray(half_flat_half_textured(), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    calls: list[tuple[int, int]] = []

    def full(x: torch.Tensor) -> torch.Tensor:  # another estimate: brighter by 0.2
        calls.append(tuple(x.shape[-2:]))
        return (_bicubic(x) + 0.2).clamp(-1, 1)

    routing = PriorRouting(prior_region=24, prior_overlap=8, prior_threshold=0.01, prior_margin=4)
    everywhere = routed_prior(lr, _bicubic, full, routing, share=1.0)
    region_calls = list(calls)
    assert everywhere.route is not None and everywhere.route.full.sum() < len(everywhere.route.grid)  # flat ones stay
    alike = routed_prior(lr, _bicubic, full, PriorRouting(prior_region=24, prior_overlap=8, prior_threshold=0.0), 1.0)
    assert torch.equal(alike.estimate, full(lr))  # every region full: the full prior alone, in one call
    nowhere = routed_prior(lr, _bicubic, full, routing, share=0.0)
    assert torch.equal(nowhere.estimate, _bicubic(lr)) and nowhere.seconds["prior_full"] < 0.05
    # the flat left half is the compact estimate far from the boundary, the full one on the textured side,
    # and the step of 0.2 between them is spread over the overlap: no seam
    out = everywhere.estimate[0, 0]
    route = everywhere.route
    assert route.full.tolist() == [d >= 0.01 for d in route.difficulty.tolist()]
    mix = route.full_map()  # what the report reads: the full prior's weight, with the blend's own weights
    assert float(mix[:, :10].max()) == 0 and float(mix[:, -10:].min()) > 0.999
    fractions = route.full_fraction(route.grid)
    assert all((f > 0.5) == chosen for f, chosen in zip(fractions.tolist(), route.full.tolist(), strict=True))
    left, right = out[:, :40], _bicubic(lr)[0, 0, :, 40:]
    assert torch.allclose(left, _bicubic(lr)[0, 0, :, :40])
    assert torch.allclose(out[:, -40:], (right[:, -40:] + 0.2).clamp(-1, 1), )  # the margin hides the regions' edges
    flat = out[:, 40:180]  # the flat side up to the texture (input column 48 -> output 192, less bicubic's reach)
    assert flat[:, -1].mean() - flat[:, 0].mean() > 0.1  # the full prior's estimate already weighs there
    assert (flat[:, 1:] - flat[:, :-1]).abs().max() < 0.2 / 8  # a hard switch would jump by 0.2 at once
    # one call per row's run of chosen regions (input columns 32..96), with a margin of 4 inside the 40 x 96 image
    assert route.full.sum() == 8 and region_calls == [(28, 68), (28, 68)]
    # all but the flattest region chosen: the runs with margins would cover more than the image, so the
    # full prior runs once over the whole image and its regions are cropped from that
    calls.clear()
    most = routed_prior(lr, _bicubic, full, PriorRouting(prior_region=24, prior_overlap=8, prior_threshold=0.0), 0.9)
    assert calls == [(40, 96)] and not bool(most.route.full.all())
    chosen = (most.route.full_map() > 0.999).repeat_interleave(4, 0).repeat_interleave(4, 1)  # input px -> output px
    assert bool(chosen.any())
    assert torch.allclose(most.estimate[0, :, chosen], full(lr)[0, :, chosen], atol=1e-3)


def test_the_input_signal_sees_what_a_smoothing_compact_prior_hides():
    lr = torch.from_numpy(np.asarray(half_flat_half_textured(), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

    def smoothing(x: torch.Tensor) -> torch.Tensor:  # a compact prior that blurs texture away
        return F.interpolate(F.avg_pool2d(x, 8, ceil_mode=True), size=(x.shape[-2] * 4, x.shape[-1] * 4), mode="nearest")

    by_estimate = routed_prior(lr, smoothing, _bicubic, PriorRouting(prior_region=24, prior_overlap=8), share=1.0)
    by_input = routed_prior(lr, smoothing, _bicubic, PriorRouting(prior_region=24, prior_overlap=8, prior_signal="input"),
                            share=1.0)
    assert not by_estimate.route.full.any()  # the blurred estimate reads flat everywhere
    assert by_input.route.full.tolist() == [box.left + box.width > 48 for box in by_input.route.grid.boxes]
    with pytest.raises(ConfigError, match="unknown prior signal"):
        PriorRouting(prior_signal="noise")


def test_the_public_api_routes_when_asked_and_reports_the_prior_per_tile(routable):
    upscaler = Upscaler(tiny_refiner(live=True))
    assert upscaler.priors == ("tiny-test", "routed", "tiny-compact")
    image = half_flat_half_textured()
    config = UpscaleConfig(policy="grouped", timesteps=WALK, prior="routed", prior_region=24, prior_overlap=8,
                           prior_share=0.5, prior_threshold=0.01)
    result = upscaler(image, config)
    settings, regions = result.report["settings"], result.report["prior_regions"]
    assert settings["prior"] == "routed" and settings["prior_share"] == 0.5
    assert settings["files"]["prior_stand_in"] == "tests"  # where the stand-in came from
    assert 0 < regions["full"] <= regions["count"] // 2
    kinds = [t["prior"] for t in result.report["tiles"]]
    assert kinds[0] == "compact" and kinds[-1] == "full"  # flat top-left, textured bottom-right
    assert result.report["seconds"]["prior_full"] > 0
    result.step_map()  # draws the full prior's regions
    default = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK, prior="routed"))
    assert default.report["settings"]["prior"] == "routed" and default.report["settings"]["prior_share"] == 1.0
    # the default, the full prior over the whole image: exactly what the model without a stand-in runs
    single = upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK))
    assert single.report["settings"]["prior"] == "tiny-test"
    assert single.report["prior_regions"] is None and "prior" not in single.report["tiles"][0]
    monkey_free = Upscaler(tiny_refiner(live=True))
    object.__setattr__(monkey_free.backbone.prior, "info", PriorInfo("tiny-test", 4, "t", "t", tiny_rrdbnet))
    assert monkey_free.priors == ("tiny-test",)
    plain = monkey_free(image, UpscaleConfig(policy="grouped", timesteps=WALK))
    assert np.array_equal(plain.picture.rgb, single.picture.rgb)
    zero = upscaler(image, UpscaleConfig(steps=0, prior="tiny-compact"))
    expected = load_prior("tiny-compact")(torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)[None])
    assert np.abs(zero.picture.rgb - ((expected[0].permute(1, 2, 0).numpy() + 1) / 2)).max() < 1e-5
    with pytest.raises(ConfigError, match="unknown prior"):
        upscaler(image, UpscaleConfig(policy="grouped", timesteps=WALK, prior="nope"))


def test_cli_prior_flags(routable, tmp_path, capsys):
    weights = tmp_path / "refiner.safetensors"
    save_backbone(tiny_refiner(live=True), weights)
    half_flat_half_textured().save(tmp_path / "in.png")
    base = ["upscale", str(tmp_path / "in.png"), "--weights", str(weights), "--timesteps", "399,149,29", "-q"]
    code = main([*base, "-o", str(tmp_path / "out.png"), "--prior", "routed", "--prior-share", "1", "--prior-threshold", "0",
                 "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["prior"] == "routed" and report["settings"]["prior_threshold"] == 0
    assert report["prior_regions"]["full"] == report["prior_regions"]["count"]
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "o2.png"), "--prior", "nope"]) != 0
    err = capsys.readouterr().err
    assert "unknown prior" in err and "Traceback" not in err and not (tmp_path / "o2.png").exists()
    assert main([*base, "-o", str(tmp_path / "o3.png"), "--prior-share", "2"]) == 2


def x4plus_cache(tmp_path, count: int = 8, shard_size: int = 4) -> list:
    """A prior cache of the tiny prior, labelled as x4plus's (the command distils x4plus only); the photos."""
    files = _photos(tmp_path)
    build_cache(files, tmp_path / "cache", count, CacheConfig(prior="tiny-test", crop=64, shard_size=shard_size),
                load_prior("tiny-test"))
    meta = tmp_path / "cache" / "cache.json"
    data = json.loads(meta.read_text())
    data["config"]["prior"] = "realesrgan-x4plus"
    meta.write_text(json.dumps(data))
    return files


def test_train_prior_from_the_cli_distils_resumes_and_writes_its_recipe(tmp_path, tiny_prior, capsys):
    files = x4plus_cache(tmp_path)
    args = ["train", "prior", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--crop", "32",
            "--batch-size", "2", "--workers", "0", "--model", '{"num_feat": 8, "num_conv": 1}']
    assert main([*args, "--steps", "3"]) == 0, capsys.readouterr().err
    model = load_compact_prior(tmp_path / "run" / "ema.safetensors")
    assert model.config == CompactPriorConfig(num_feat=8, num_conv=1)
    with safe_open(str(tmp_path / "run" / "ema.safetensors"), framework="pt") as f:
        meta_data = f.metadata()
    recipe = json.loads(meta_data["adadiffsr.recipe"])
    assert recipe["steps"] == 3 and recipe["gt_weight"] == 0.5 and meta_data["adadiffsr.train_steps"] == "3"
    assert recipe["learning_rate"] == 5e-4  # the default
    capsys.readouterr()
    assert main([*args, "--steps", "5", "--lr", "3e-4"]) == 0  # the old spelling: read, with a warning
    err = capsys.readouterr().err
    assert "resumed from" in err and "--lr is the old spelling of --learning-rate" in err
    with safe_open(str(tmp_path / "run" / "ema.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["adadiffsr.recipe"])["learning_rate"] == 3e-4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("psnr_y_vs_teacher" in r for r in log)
    assert main([*args, "--model", "[1]"]) == 2
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "run2"), "--steps", "1", "--init", str(tmp_path / "run" / "ema.safetensors"),
                 "--model", '{"num_feat": 8, "num_conv": 1}', "--learning-rate", "1e-4"]) == 0, capsys.readouterr().err
    with safe_open(str(tmp_path / "run2" / "ema.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["adadiffsr.recipe"])["learning_rate"] == 1e-4
    assert main([*args, "--out", str(tmp_path / "run3"), "--steps", "1", "--init", str(tmp_path / "run" / "ema.safetensors"),
                 "--model", '{"num_conv": 2}']) != 0  # the --init network has 1
    (tmp_path / "broken.safetensors").write_bytes(b"nope")
    with pytest.raises(WeightsError):
        load_compact_prior(tmp_path / "broken.safetensors")
    (tmp_path / "photos" / "train").mkdir(parents=True)  # the truth alone, on crops degraded on the fly
    for f in files:
        f.rename(tmp_path / "photos" / "train" / f.name)
    on_photos = [*args, "--out", str(tmp_path / "run-photos"), "--steps", "2", "--photos", str(tmp_path / "photos"),
                 "--degradation", "bicubic-x4"]
    capsys.readouterr()
    assert main(on_photos) == 2 and "teacher weight must be 0" in capsys.readouterr().err  # no x4plus output there
    assert main([*on_photos, "--teacher-weight", "0", "--gt-weight", "1", "--degradation", "bicubic-x4:2,blur:1"]) == 2
    assert "degradation mix" in capsys.readouterr().err
    assert main([*on_photos, "--teacher-weight", "0", "--gt-weight", "1"]) == 0, capsys.readouterr().err
    with safe_open(str(tmp_path / "run-photos" / "ema.safetensors"), framework="pt") as f:
        recipe = json.loads(f.metadata()["adadiffsr.recipe"])
    assert recipe["photos"] == str(tmp_path / "photos") and recipe["degradation"] == "bicubic-x4"
    trained = load_compact_prior(tmp_path / "run-photos" / "ema.safetensors").state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in model.state_dict().items())  # it learned something else


def test_the_compact_prior_has_its_own_student_for_the_tiles_whose_estimate_it_made(routable, tmp_path):
    """``NAME.compact-student.safetensors`` beside the weights: with the compact prior over the image, the
    student's tiles take it (report: ``compact-student``); with the full prior nothing changes; without
    the file the compact route keeps the one student; a student from another timestep fails in one line."""
    weights = tmp_path / "refiner.safetensors"
    save_backbone(tiny_refiner(live=True, sampling={"policy": "grouped", "timesteps": list(WALK), "rule": "ddpm"}),
                  weights)
    for name, seed in (("student", 1), ("compact-student", 2)):
        net = tiny_refiner()
        torch.manual_seed(seed)
        with torch.no_grad():
            net.unet.conv_out.weight.normal_(0, 0.2)
        save_backbone(net, tmp_path / f"refiner.{name}.safetensors", metadata={"adadiffsr.student_timestep": "399"})
    image = half_flat_half_textured()
    student = {"policy": "grouped", "timesteps": WALK, "student": True, "flat": 0.0}
    both = Upscaler.from_pretrained(weights, device="cpu")
    assert both.files["compact_student"] == str(tmp_path / "refiner.compact-student.safetensors")
    own = both(image, UpscaleConfig(**student))
    compact = both(image, UpscaleConfig(**student, prior="tiny-compact"))
    assert own.report["student_tiles"] > 0 and own.report["compact_student_tiles"] == 0
    assert compact.report["compact_student_tiles"] == compact.report["student_tiles"] > 0
    assert {t["network"] for t in compact.report["tiles"]} <= {"compact-student", "prior"}
    (tmp_path / "refiner.compact-student.safetensors").rename(tmp_path / "elsewhere.safetensors")
    one = Upscaler.from_pretrained(weights, device="cpu")
    assert one.files["compact_student"] is None
    assert np.array_equal(one(image, UpscaleConfig(**student)).picture.rgb, own.picture.rgb)
    alone = one(image, UpscaleConfig(**student, prior="tiny-compact"))
    assert alone.report["compact_student_tiles"] == 0 and alone.report["student_tiles"] > 0
    assert not np.array_equal(alone.picture.rgb, compact.picture.rgb)  # the compact student made a difference
    save_backbone(tiny_refiner(), tmp_path / "refiner.compact-student.safetensors",
                  metadata={"adadiffsr.student_timestep": "149"})
    with pytest.raises(WeightsError, match="from timestep 149, not 399"):
        Upscaler.from_pretrained(weights, device="cpu")(image, UpscaleConfig(**student, prior="tiny-compact"))


def test_the_page_s_fast_preset_runs_the_compact_prior_where_the_model_has_one(routable):
    """The page's Fast speed: the compact prior over the whole image, then the model's own steps, where the
    model offers one; a model without a stand-in keeps its prior alone."""
    from adadiffsr.serve.presets import preset_config

    upscaler = Upscaler(tiny_refiner(live=True, sampling={"policy": "grouped", "timesteps": list(WALK)}))
    assert upscaler.prior_stages.stand_in == "tiny-compact"
    fast = upscaler(half_flat_half_textured(), preset_config(upscaler, "balanced", "fast"))
    assert fast.report["settings"]["prior"] == "tiny-compact" and fast.report["settings"]["policy"] == "grouped"
    assert fast.report["nfe"] > 0  # the textured half takes the refiner's steps
    plain = Upscaler(tiny_refiner(live=True))
    object.__setattr__(plain.backbone.prior, "info", PriorInfo("tiny-test", 4, "t", "t", tiny_rrdbnet))
    assert plain.prior_stages.stand_in is None
    alone = plain(half_flat_half_textured(), preset_config(plain, "balanced", "fast"))
    assert alone.report["nfe"] == 0 and alone.report["settings"]["prior"] == "tiny-test"
