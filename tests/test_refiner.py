"""Stage 1 + stage 2: a refiner over a prior, zero steps, strength, the prior cache and its training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from adadiffsr.api import UpscaleConfig, Upscaler
from adadiffsr.backbones import load_backbone, load_student, save_backbone
from adadiffsr.cli import main
from adadiffsr.core.step import strength_timestep
from adadiffsr.data.cache import CacheConfig, CacheDataset, build_cache
from adadiffsr.data.degradations import DEGRADATIONS
from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.prior import load_prior
from adadiffsr.train.backbone import warm_start

from .conftest import tiny_compact, tiny_refiner

PHOTO = Path(__file__).parents[1] / "assets" / "coffee-lr.png"


pytestmark = pytest.mark.usefixtures("tiny_prior")


def _lr(size: tuple[int, int] = (37, 23)) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").crop((40, 30, 40 + size[0], 30 + size[1]))


def _prior_output(image: Image.Image) -> np.ndarray:
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255 * 2 - 1).permute(2, 0, 1)[None]
    return ((load_prior("tiny-test")(x)[0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)


def test_untrained_refiner_returns_the_prior_exactly():
    upscaler = Upscaler(tiny_refiner(), "cpu")
    image = _lr()
    prior = _prior_output(image)
    for config in (UpscaleConfig(steps=0), UpscaleConfig(steps=3, strength=0.5, policy="uniform"), UpscaleConfig(policy="uniform"),
                   UpscaleConfig(gain="exact", intervals=(200, 500))):
        result = upscaler(image, config)
        assert result.picture.rgb.shape == (92, 148, 3)
        assert np.abs(result.picture.rgb - prior).max() < 1e-5, config


def test_a_trained_refiner_moves_away_from_the_prior_and_steps_zero_costs_nothing():
    model = tiny_refiner()
    with torch.no_grad():
        model.unet.conv_out.weight.normal_(0, 0.05)
    upscaler = Upscaler(model, "cpu")
    image = _lr()
    zero = upscaler(image, UpscaleConfig(steps=0))
    assert zero.report["nfe"] == 0 and zero.report["nfe_uniform"] == 0
    assert all(t["steps"] == 0 for t in zero.report["tiles"])
    assert np.abs(zero.picture.rgb - _prior_output(image)).max() < 1e-5
    moved = upscaler(image, UpscaleConfig(steps=2, strength=0.4, policy="uniform"))
    assert np.abs(moved.picture.rgb - zero.picture.rgb).max() > 1e-3
    assert all(t["steps"] == 2 for t in moved.report["tiles"])
    assert moved.report["settings"]["prior"] == "tiny-test" and moved.report["seconds"]["prior"] > 0


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.25])
def test_steps_n_takes_exactly_n_steps_from_the_start(strength):
    upscaler = Upscaler(tiny_refiner(), "cpu")
    image = _lr((16, 16))
    start = strength_timestep(strength, 1000)
    for n in (1, 2, 3, 4, 7, 10, 13, 20):
        result = upscaler(image, UpscaleConfig(steps=n, strength=strength, policy="uniform"))
        steps = {t["steps"] for t in result.report["tiles"]}
        assert steps == {n}, (strength, n, steps)
        assert result.report["nfe_uniform"] == result.report["nfe"]
        assert result.report["settings"]["interval"] * (n - 1) <= start


def test_strength_below_one_needs_a_backbone_with_an_estimate():
    from .conftest import constant_preserving

    with pytest.raises(ConfigError, match="pure noise"):
        Upscaler(constant_preserving(), "cpu")(_lr((8, 8)), UpscaleConfig(steps=0))


def test_refiner_file_holds_the_refiner_only_and_reloads(tmp_path):
    model = tiny_refiner()
    path = tmp_path / "refiner.safetensors"
    save_backbone(model, path)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") for k in keys)
    loaded = load_backbone(path)
    assert loaded.prior is not None and loaded.prior.info.name == "tiny-test"
    assert loaded.unet.conv_in.in_channels == 48 + 48 + 3


def test_warm_start_copies_what_fits_and_keeps_the_output_layer_at_zero(tmp_path):
    source = tiny_compact(seed=3)
    path = tmp_path / "old.safetensors"
    save_backbone(source, path)
    model = tiny_refiner()
    copied = warm_start(model, str(path))
    assert copied > 10
    w_new, w_old = model.unet.conv_in.weight, source.unet.conv_in.weight
    assert torch.equal(w_new[:, : w_old.shape[1]], w_old) and not bool(w_new[:, w_old.shape[1]:].any())
    assert not bool(model.unet.conv_out.weight.any())
    assert torch.equal(model.unet.mid_block.resnets[0].conv1.weight, source.unet.mid_block.resnets[0].conv1.weight)


def _photos(tmp_path: Path) -> list[Path]:
    files = []
    for i, box in enumerate([(0, 0, 80, 80), (60, 10, 140, 90)]):
        path = tmp_path / f"p{i}.png"
        Image.open(PHOTO).convert("RGB").crop(box).save(path)
        files.append(path)
    return files


def test_cache_is_deterministic_resumable_and_refuses_other_settings(tmp_path):
    files = _photos(tmp_path)
    cfg = CacheConfig(prior="tiny-test", crop=32, shard_size=3, seed=5,
                      mix=(("realesrgan-x4", 0.5), ("mild-x4", 0.25), ("bicubic-x4", 0.25)))
    prior = load_prior("tiny-test")
    assert build_cache(files, tmp_path / "a", 6, cfg, prior) == 6
    assert build_cache(files, tmp_path / "b", 3, cfg, prior) == 3
    assert build_cache(files, tmp_path / "b", 6, cfg, prior) == 3  # resumed: only the missing shard
    assert build_cache(files, tmp_path / "b", 6, cfg, prior) == 0
    for name in ("shard-00000.safetensors", "shard-00001.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(ConfigError, match="other settings"):
        build_cache(files, tmp_path / "a", 6, CacheConfig(prior="tiny-test", crop=32, shard_size=3, seed=6), prior)
    data = CacheDataset(tmp_path / "a", crop=16, seed=1)
    lr, est, hr = data[4]
    assert lr.shape == (3, 4, 4) and est.shape == hr.shape == (3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(data[4], CacheDataset(tmp_path / "b", crop=16, seed=1)[4], strict=True))


def test_train_backbone_with_a_cache_trains_a_refiner_from_the_cli(tmp_path, capsys):
    files = _photos(tmp_path)
    build_cache(files, tmp_path / "cache", 4, CacheConfig(prior="tiny-test", crop=64, shard_size=4), load_prior("tiny-test"))
    photos = tmp_path / "photos"
    for split in ("train", "val"):
        (photos / split).mkdir(parents=True)
        Image.open(files[0]).save(photos / split / "a.png")
    model = json.dumps({k: v for k, v in tiny_compact().config.to_dict().items() if k in ("block_out_channels",
                        "layers_per_block", "norm_num_groups", "tile_size")})
    code = main(["train", "backbone", "--cache", str(tmp_path / "cache"), "--photos", str(photos),
                 "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "2", "--crop", "32",
                 "--workers", "0", "--max-timestep", "499", "--model", model, "--val-every", "3"])
    assert code == 0, capsys.readouterr().err
    refiner = load_backbone(tmp_path / "run" / "ema.safetensors")
    assert refiner.config.prior == "tiny-test"
    assert bool(refiner.unet.conv_out.weight.any())  # the output layer left zero and learned


def test_steps_zero_from_the_cli_writes_the_prior_output(tmp_path, capsys):
    weights = tmp_path / "refiner.safetensors"
    model = tiny_refiner()
    with torch.no_grad():
        model.unet.conv_out.weight.normal_(0, 0.05)
    save_backbone(model, weights)
    src = tmp_path / "in.png"
    _lr().save(src)
    out, report = tmp_path / "out.png", tmp_path / "out.json"
    code = main(["upscale", str(src), "-o", str(out), "--weights", str(weights), "--steps", "0",
                 "--report", str(report), "-q"])
    assert code == 0, capsys.readouterr().err
    written = np.asarray(Image.open(out), dtype=np.float32) / 255
    assert np.abs(written - _prior_output(_lr())).max() <= 1 / 255 + 1e-6
    data = json.loads(report.read_text())
    assert data["nfe"] == 0 and data["settings"]["strength"] == 0


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_every_degradation_is_seeded_and_quarter_size(name):
    hr = torch.rand(3, 48, 40, generator=torch.Generator().manual_seed(0))
    a, b = DEGRADATIONS[name](hr, 3), DEGRADATIONS[name](hr, 3)
    assert a.shape == (3, 12, 10) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_timesteps_policy_walks_the_listed_timesteps_then_the_clean_sample():
    from adadiffsr.policies.timesteps import TimestepsPolicy

    policy = TimestepsPolicy((399, 149, 29))
    assert policy.jumps == (250, 120, 30) and policy.intervals == (30, 120, 250)
    with pytest.raises(ConfigError):
        TimestepsPolicy((100, 200))
    model = tiny_refiner()
    with torch.no_grad():
        model.unet.conv_out.weight.normal_(0, 0.05)
    calls: list[list[int]] = []
    predict = model.predict
    model.predict = lambda x, t, c: (calls.append(t.tolist()), predict(x, t, c))[1]  # type: ignore[method-assign]
    result = Upscaler(model, "cpu")(_lr((16, 16)), UpscaleConfig(timesteps=(399, 149, 29)))
    assert [c[0] for c in calls] == [399, 149, 29]
    assert result.report["settings"]["policy"] == "timesteps" and result.report["settings"]["strength"] == 0.4


@pytest.mark.filterwarnings("ignore:the weights file's sampling defaults:FutureWarning")  # after the first, checked
def test_a_model_ships_its_sampling_defaults_and_flags_override_them(tmp_path, capsys):
    """A weights file written before the policy had its name (``sampler``) still runs, with a
    warning that names the release that stops reading it."""
    model = tiny_refiner(sampling={"sampler": "timesteps", "timesteps": [299, 49], "rule": "ddpm"}, default_strength=0.3)
    path = tmp_path / "m.safetensors"
    save_backbone(model, path)
    upscaler = Upscaler.from_pretrained(path, device="cpu")
    image = _lr((16, 16))
    with pytest.warns(FutureWarning, match="call 'policy' 'sampler', a spelling read until adadiffsr 0.3"):
        default = upscaler(image).report
    assert default["settings"]["policy"] == "timesteps" and list(default["settings"]["timesteps"]) == [299, 49]
    assert default["settings"]["rule"] == "ddpm" and default["nfe"] == 2 * default["num_tiles"]
    uniform = upscaler(image, UpscaleConfig(steps=3)).report  # a step count means uniform sampling at it
    assert uniform["settings"]["policy"] == "uniform" and uniform["nfe"] == 3 * uniform["num_tiles"]
    assert uniform["settings"]["strength"] == 0.3 and uniform["settings"]["rule"] == "ddpm"
    ddim = upscaler(image, UpscaleConfig(rule="ddim")).report
    assert ddim["settings"]["rule"] == "ddim" and ddim["settings"]["policy"] == "timesteps"
    out = tmp_path / "o.png"
    code = main(["upscale", str(tmp_path / "in.png") if (image.save(tmp_path / "in.png") or True) else "", "-o", str(out),
                 "--weights", str(path), "--timesteps", "199,19", "--report", str(tmp_path / "r.json"), "-q"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["timesteps"] == [199, 19] and report["settings"]["strength"] == 0.2



@pytest.mark.parametrize(("sampling", "message"), [({"eta": 5}, "sampling defaults: eta must be in"),
                                                   ({"policy": "fastest"}, "sampling defaults: unknown policy"),
                                                   ({"stepz": 3}, "name an option no config has: 'stepz'")])
def test_a_weights_file_with_sampling_defaults_no_config_takes_fails_in_one_line(tmp_path, capsys, sampling, message):
    """The model's defaults are a typed partial config, checked when read: a bad value is the file's error."""
    from adadiffsr.resolve import model_defaults

    model = tiny_refiner(sampling=sampling)
    with pytest.raises(WeightsError, match=message):
        model_defaults(model.spec)
    path = tmp_path / "m.safetensors"
    save_backbone(model, path)
    _lr((16, 16)).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--weights", str(path), "-q"])
    err = capsys.readouterr().err
    assert code != 0 and message.split(": ")[-1][:12] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()


def test_the_partial_defaults_keep_the_student_for_a_grouped_call_on_a_model_that_names_another_policy():
    """The fallback's student (on where it can run) is not checked against the model's own policy."""
    from adadiffsr.resolve import model_defaults, with_model_defaults

    defaults = model_defaults(tiny_refiner(sampling={"policy": "adaptive"}).spec)
    assert defaults.policy == "adaptive" and defaults.student is True and defaults.sampling.steps is None
    assert with_model_defaults(UpscaleConfig("grouped"), defaults).student is True
    assert with_model_defaults(UpscaleConfig(), defaults).student is None  # adaptive: no student

def test_the_default_prior_runs_in_ncnn_on_the_cpu_and_in_torch_when_asked():
    prior = load_prior("realesrgan-x4plus")
    assert prior.runtime == "ncnn"
    prior.use_dtype(torch.bfloat16)  # ncnn runs fp32 only: a bf16 prior is PyTorch's
    assert prior.runtime == "torch"
    assert load_prior("realesrgan-x4plus", runtime="torch").runtime == "torch"
    assert load_prior("tiny-test").runtime == "torch"  # no ncnn files for this one
    with pytest.raises(ConfigError, match="runtime"):
        load_prior("realesrgan-x4plus", runtime="onnx")
    with pytest.raises(ConfigError, match="unknown prior"):
        load_prior("nope")


def test_the_report_names_the_gain_that_ran():
    from adadiffsr.gain.regressor import QualityRegressor, RegressorConfig

    model = tiny_refiner()
    torch.manual_seed(0)
    regressor = QualityRegressor(RegressorConfig(in_channels=model.spec.latent_channels))
    image = _lr((16, 16))
    with_regressor = Upscaler(model, "cpu", regressor=regressor)(image, UpscaleConfig(policy="adaptive")).report
    without = Upscaler(tiny_refiner(), "cpu")(image, UpscaleConfig(policy="adaptive", intervals=(200, 400))).report
    uniform = Upscaler(tiny_refiner(), "cpu")(image, UpscaleConfig(steps=1)).report
    assert with_regressor["settings"]["gain"] == "learned"
    assert without["settings"]["gain"] == "exact" and uniform["settings"]["gain"] == "none"


def test_a_narrower_student_is_the_teacher_pruned_to_the_first_channels_of_each_level(tiny_prior):
    """``width`` < 1 (AdcSR's pruning): every level and its GroupNorm groups shrink by ``width``; each
    tensor is the teacher's first channels, and where an up block concatenates the stream with a skip
    connection the student keeps the first channels of each part; the output layer starts at zero."""
    from adadiffsr.train.distill import student_from

    teacher = tiny_refiner(live=True, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1)
    student = student_from(teacher, 0.5)
    assert student.config.block_out_channels == (4, 8) and student.config.norm_num_groups == 2
    t, s = teacher.unet.state_dict(), student.unet.state_dict()
    assert torch.equal(s["conv_in.weight"], t["conv_in.weight"][:4])  # the input (99 channels here too) whole
    assert torch.equal(s["down_blocks.1.resnets.0.conv1.weight"], t["down_blocks.1.resnets.0.conv1.weight"][:8, :4])
    # up block 0, its last resnet: the stream (16 -> 8 channels) then the skip from level 0 (8 -> 4)
    concat = t["up_blocks.0.resnets.1.conv1.weight"]
    assert concat.shape[1] == 16 + 8 and s["up_blocks.0.resnets.1.conv1.weight"].shape[1] == 8 + 4
    assert torch.equal(s["up_blocks.0.resnets.1.conv1.weight"], torch.cat([concat[:8, :8], concat[:8, 16:20]], 1))
    assert torch.equal(s["up_blocks.0.resnets.1.norm1.weight"],
                       torch.cat([t["up_blocks.0.resnets.1.norm1.weight"][:8], t["up_blocks.0.resnets.1.norm1.weight"][16:20]]))
    assert not student.unet.conv_out.weight.any() and not student.unet.conv_out.bias.any()
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    cond = student.condition(lr)
    x_t = torch.randn_like(student.estimate(cond))
    assert torch.equal(student.predict(x_t, torch.tensor([299]), cond), student.estimate(cond))  # returns the prior


def test_train_distill_then_upscale_with_the_student_from_the_cli(tmp_path, capsys):
    """`train distill` writes NAME.student.safetensors beside the teacher; `--policy distilled` then
    takes one student step per tile from the walk's first timestep; without a student: one line."""
    from adadiffsr.backbones import load_student, student_path_for

    files = _photos(tmp_path)
    build_cache(files, tmp_path / "cache", 4, CacheConfig(prior="tiny-test", crop=64, shard_size=4), load_prior("tiny-test"))
    teacher = tiny_refiner(live=True, sampling={"policy": "timesteps", "timesteps": [299, 49], "rule": "ddpm"},
                           default_strength=0.3)
    weights = tmp_path / "refiner.safetensors"
    save_backbone(teacher, weights)
    image = tmp_path / "in.png"
    _lr((16, 16)).save(image)
    code = main(["upscale", str(image), "-o", str(tmp_path / "none.png"), "--weights", str(weights), "--policy", "distilled"])
    err = capsys.readouterr().err
    assert code == 1 and "train distill" in err and len(err.strip().splitlines()) == 1
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--steps", "3",
                 "--batch-size", "2", "--crop", "32", "--weights", str(weights), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["walk"] == [299, 49]
    student = load_student(student_path_for(weights), load_backbone(weights))
    assert not torch.equal(student.unet.conv_out.weight, teacher.unet.conv_out.weight)  # it trained
    for policy in ("distilled", "timesteps"):
        code = main(["upscale", str(image), "-o", str(tmp_path / f"{policy}.png"), "--weights", str(weights),
                     "--policy", policy, "--report", str(tmp_path / f"{policy}.json"), "-q"])
        assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "distilled.json").read_text())
    assert report["nfe"] == report["num_tiles"] and report["settings"]["timesteps"] == [299]
    assert report["settings"]["files"]["student"] == str(student_path_for(weights))
    walk = json.loads((tmp_path / "timesteps.json").read_text())
    assert walk["nfe"] == 2 * walk["num_tiles"]
    narrow = tmp_path / "narrow.student.safetensors"  # a pruned half-width student, trained under bf16 autocast
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run-narrow"), "--steps", "2",
                 "--batch-size", "2", "--crop", "32", "--weights", str(weights), "--device", "cpu", "--width", "0.5",
                 "--dtype", "bf16", "--conditional", "--student-out", str(narrow)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["dtype"] == "torch.bfloat16"
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run-narrow"), "--steps", "3",
                 "--batch-size", "2", "--crop", "32", "--weights", str(weights), "--device", "cpu", "--width", "0.5",
                 "--unconditional", "--student-out", str(narrow)])  # resuming with the other discriminator: one line
    err = capsys.readouterr().err
    assert code == 2 and "conditional discriminator" in err and len(err.strip().splitlines()) == 1
    assert load_student(narrow, load_backbone(weights)).config.block_out_channels == (4, 8)
    marked = load_student(narrow, load_backbone(weights))  # a student nobody could mistake for the pruned teacher
    with torch.no_grad():
        marked.unet.conv_out.bias.fill_(0.25)
    save_backbone(marked, tmp_path / "marked.student.safetensors")
    tuned = tmp_path / "tuned.student.safetensors"  # a new run starting from it, with the texture loss
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run-tuned"),
                 "--steps", "2", "--batch-size", "2", "--crop", "32", "--weights", str(weights), "--device", "cpu",
                 "--width", "0.5",
                 "--init", str(tmp_path / "marked.student.safetensors"), "--texture-weight", "1",
                 "--texture-levels", "2", "--student-out", str(tuned)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    with safe_open(str(tuned), "pt") as f:  # the recipe as run, in the file
        assert json.loads(f.metadata()["adadiffsr.distill"])["texture_levels"] == 2
    bias = load_student(tuned, load_backbone(weights)).unet.conv_out.bias.detach()
    assert float((bias - 0.25).abs().max()) < 0.01  # it started there (two EMA steps later)
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run-mismatch"),
                 "--steps", "1", "--batch-size", "2", "--crop", "32", "--weights", str(weights), "--device", "cpu",
                 "--init", str(narrow), "--student-out", str(tmp_path / "x.safetensors")])  # width 1
    err = capsys.readouterr().err
    assert code == 2 and "--width" in err and len(err.strip().splitlines()) == 1
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--texture-levels", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "--texture-levels" in err
    narrow.replace(student_path_for(weights))  # the narrow student beside the teacher runs where it is asked
    code = main(["upscale", str(image), "-o", str(tmp_path / "narrow.png"), "--weights", str(weights), "--policy",
                 "distilled", "--report", str(tmp_path / "narrow.json"), "-q"])
    assert code == 0, capsys.readouterr().err
    routed = json.loads((tmp_path / "narrow.json").read_text())
    assert routed["nfe_student"] == routed["student_tiles"] == routed["num_tiles"]
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "distilled.png")), np.asarray(Image.open(tmp_path / "timesteps.png")))


def test_distillation_logs_the_texture_loss_and_the_students_detail_against_the_teachers(tmp_path):
    """Every logged record has the texture loss and ``detail_ratio`` (the student's detail energy over
    the teacher's output's): a pruned student starts as the prior, which lacks the teacher's detail."""
    from adadiffsr.train.distill import DistillConfig, train_distill

    build_cache(_photos(tmp_path), tmp_path / "cache", 4, CacheConfig(prior="tiny-test", crop=64, shard_size=4),
                load_prior("tiny-test"))
    teacher = tiny_refiner(live=True, sampling={"policy": "timesteps", "timesteps": [299, 49], "rule": "ddpm"},
                           default_strength=0.3)
    cfg = DistillConfig(cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), steps=2, batch_size=2, crop=32,
                        width=0.5, texture_weight=1.0, texture_levels=3, log_every=1, device="cpu", dtype="fp32")
    train_distill(teacher, cfg, tmp_path / "s.safetensors", log=lambda line: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["texture"] > 0 and 0 < r["detail_ratio"] < 1 for r in records)
    assert all(0 < r["detail_ratio_2x"] < 1 and 0 < r["detail_ratio_4x"] < 1 for r in records)
    with pytest.raises(ConfigError, match="texture levels"):
        train_distill(teacher, replace(cfg, texture_levels=5), tmp_path / "s.safetensors", log=lambda line: None)


def test_a_student_can_learn_from_the_compact_priors_estimate_what_the_teacher_makes_from_the_caches(tmp_path, capsys):
    """``student_estimate``: the student starts from a compact prior's estimate of each crop (share 1: every
    crop; 0: none, the run is the plain one bit for bit), the teacher's target stays the cache's; a file
    that is not a compact prior is one line from the CLI."""
    from adadiffsr.prior.compact import ARCHITECTURE, CompactPrior, CompactPriorConfig
    from adadiffsr.train.distill import DistillConfig, train_distill
    from adadiffsr.weights import save_module

    build_cache(_photos(tmp_path), tmp_path / "cache", 4, CacheConfig(prior="tiny-test", crop=64, shard_size=4),
                load_prior("tiny-test"))
    torch.manual_seed(1)
    compact = CompactPrior(CompactPriorConfig(num_feat=8, num_conv=1))
    save_module(compact, tmp_path / "compact.safetensors", ARCHITECTURE, compact.config.to_dict())
    teacher = tiny_refiner(live=True, sampling={"policy": "timesteps", "timesteps": [299, 49], "rule": "ddpm"},
                           default_strength=0.3)
    base = DistillConfig(cache=str(tmp_path / "cache"), steps=2, batch_size=2, crop=32, width=0.5, device="cpu", dtype="fp32")
    students = {}
    for name, extra in (("plain", {}), ("none", {"student_estimate": str(tmp_path / "compact.safetensors"),
                                                   "student_estimate_share": 0.0}),
                        ("compact", {"student_estimate": str(tmp_path / "compact.safetensors")})):
        train_distill(teacher, replace(base, out=str(tmp_path / name), **extra), tmp_path / f"{name}.safetensors",
                      log=lambda line: None)
        students[name] = load_student(tmp_path / f"{name}.safetensors", teacher).state_dict()
    assert all(torch.equal(students["plain"][k], students["none"][k]) for k in students["plain"])
    assert any(not torch.equal(students["plain"][k], students["compact"][k]) for k in students["plain"])
    weights = tmp_path / "refiner.safetensors"
    save_backbone(teacher, weights)
    code = main(["train", "distill", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "bad"), "--steps", "1",
                 "--weights", str(weights), "--device", "cpu", "--student-estimate", str(weights)])
    err = capsys.readouterr().err
    assert code != 0 and "compact-prior" in err and len(err.strip().splitlines()) == 1


def test_the_default_target_is_what_the_teachers_default_does_to_each_crop(tiny_prior):
    """``--target default``: a flat crop keeps the prior's estimate, a smooth (not flat) one takes the
    walk's last step, a textured one the whole walk, each from the estimate noised with the student's
    noise; the same as the teacher's walk run on that crop alone."""
    import itertools

    from adadiffsr.core.schedule import SkipCodebook, add_noise
    from adadiffsr.policies.groups import tile_texture
    from adadiffsr.train.distill import default_target, teacher_walk

    teacher = tiny_refiner(live=True)
    walk = (299, 49)
    jumps = tuple(sorted({a - b for a, b in itertools.pairwise(walk)} | {walk[-1] + 1, walk[0] + 1}))
    codebook = SkipCodebook.build(teacher.spec.schedule, jumps)
    size, s = 32, teacher.spec.scale_factor
    ramp = torch.linspace(-0.18, 0.19, size).expand(3, size, size)  # about 0.006 per pixel: smooth, not flat
    images = torch.stack([torch.full((3, size, size), 0.2), ramp, torch.rand(3, size, size, generator=torch.Generator()
                                                                            .manual_seed(1)) * 2 - 1])
    difficulty = tile_texture(images)
    assert difficulty[0] < 0.003 <= difficulty[1] < 0.010 <= difficulty[2]
    lr = torch.rand(3, 3, size // s, size // s) * 2 - 1
    estimate = teacher.encode(images)
    cond = torch.cat([estimate, lr], 1)
    noise = torch.randn(estimate.shape, generator=torch.Generator().manual_seed(2))
    target = default_target(teacher, codebook, walk, estimate, cond, noise, torch.Generator().manual_seed(3))
    assert torch.equal(target[0], estimate[0])
    one = teacher_walk(teacher, codebook, walk[-1:], add_noise(teacher.spec.schedule, estimate[1:2],
                                                               torch.tensor([49]), noise[1:2]), cond[1:2],
                       torch.Generator().manual_seed(3))
    whole = teacher_walk(teacher, codebook, walk, add_noise(teacher.spec.schedule, estimate[2:], torch.tensor([299]),
                                                            noise[2:]), cond[2:], torch.Generator().manual_seed(3))
    assert torch.allclose(target[1:2], one, atol=1e-6) and torch.allclose(target[2:], whole, atol=1e-6)
    assert not torch.allclose(target[1], estimate[1]) and not torch.allclose(target[2], estimate[2])
