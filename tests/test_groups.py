"""Patch-adaptive group sampling: the difficulty, the grouping, the start rule, and the sampler
through the public API (flat regions take no step, textured ones the whole walk)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adadiffsr.api import Upscaler
from adadiffsr.backbones import save_backbone
from adadiffsr.errors import ConfigError
from adadiffsr.policies.groups import (
    GroupSettings,
    group_steps,
    steps_by_thresholds,
    steps_for_budget,
    student_tiles,
    tile_texture,
    walk_starts,
)

from .conftest import tiny_refiner

pytestmark = pytest.mark.usefixtures("tiny_prior")


@pytest.fixture
def refiner_upscaler() -> Upscaler:
    return Upscaler(tiny_refiner(live=True), "cpu")


@pytest.fixture
def refiner_weights(tmp_path):
    path = tmp_path / "refiner.safetensors"
    save_backbone(tiny_refiner(live=True), path)
    return path


def test_texture_is_zero_on_flat_tiles_and_grows_with_detail():
    flat = torch.full((1, 3, 32, 32), 0.3)
    g = torch.Generator().manual_seed(0)
    noisy = (flat + 0.2 * torch.randn(1, 3, 32, 32, generator=g)).clamp(-1, 1)
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2] = 1.0  # a column of +1 beside one of 0: luma step 0.5 in [0, 1] units
    values = tile_texture(torch.cat([flat, noisy, stripes]))
    assert values[0] == 0
    assert 0 < values[1] < values[2]
    assert values[2] == pytest.approx(0.5, abs=1e-6)  # horizontal steps only


def test_thresholds_count_the_steps_and_cap_at_the_walk():
    d = torch.tensor([0.0, 0.019, 0.02, 0.031, 0.2])
    assert steps_by_thresholds(d, (0.02, 0.03, 0.045), 3).tolist() == [0, 0, 1, 2, 3]
    assert steps_by_thresholds(d, (0.02, 0.03, 0.045), 2).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("budget", [0.0, 0.4, 1.0, 1.5, 2.25, 3.0, 7.0])
def test_a_budget_is_met_and_harder_tiles_never_get_fewer_steps(budget):
    g = torch.Generator().manual_seed(1)
    d = torch.rand(20, generator=g) * 0.1
    steps = steps_for_budget(d, budget, 3)
    assert int(steps.sum()) == min(round(budget * 20), 60)
    assert steps.min() >= 0 and steps.max() <= 3
    order = torch.argsort(d)
    assert bool((steps[order][1:] >= steps[order][:-1]).all())  # monotone in difficulty


def test_a_budget_gives_the_hardest_tiles_the_whole_walk_first():
    d = torch.tensor([0.09, 0.10, 0.011, 0.001])
    assert steps_for_budget(d, 1.0, 3).tolist() == [1, 3, 0, 0]
    assert steps_for_budget(d, 2.0, 3).tolist() == [3, 3, 2, 0]
    assert group_steps(d, GroupSettings(budget=1.0), 3).tolist() == [1, 3, 0, 0]
    assert group_steps(d, GroupSettings(), 3).tolist() == [3, 3, 1, 0]  # the thresholds: 0.010, 0.012, 0.014


def test_a_floor_raises_the_thresholds_steps_on_the_hardest_tiles_only_where_they_give_too_few():
    smooth = torch.tensor([0.004, 0.009, 0.002, 0.006, 0.001, 0.008])  # below every threshold: no step at all
    assert group_steps(smooth, GroupSettings(min_budget=0.0), 3).sum() == 0
    floored = group_steps(smooth, GroupSettings(), 3)  # the default floor: 1 mean step per tile
    assert floored.tolist() == [0, 3, 0, 0, 0, 3]  # 6 steps, the whole walk to the two most textured tiles
    textured = torch.tensor([0.05, 0.02, 0.013, 0.011, 0.03, 0.04])  # the thresholds give 15 steps
    thresholds = group_steps(textured, GroupSettings(min_budget=0.0), 3)
    assert torch.equal(group_steps(textured, GroupSettings(min_budget=1.0), 3), thresholds)
    mixed = torch.tensor([0.05, 0.004, 0.003, 0.002, 0.011, 0.001])  # 3 + 1 steps, under the floor of 6
    steps = group_steps(mixed, GroupSettings(min_budget=1.0), 3)
    assert steps.tolist() == [3, 0, 0, 0, 3, 0]  # the second most textured tile gets the whole walk
    assert bool((steps >= group_steps(mixed, GroupSettings(min_budget=0.0), 3)).all()) and int(steps.sum()) >= 6
    flat = torch.tensor([0.0, 0.001, 0.0, 0.004])  # a flat graphic: only the tile above `flat` is raised
    assert group_steps(flat, GroupSettings(), 3).tolist() == [0, 0, 0, 3]
    assert group_steps(flat, GroupSettings(flat=0.0), 3).tolist() == [0, 1, 0, 3]  # without it: 4 steps, hardest first
    assert torch.equal(group_steps(mixed, GroupSettings(budget=0.5, min_budget=1.0), 3),
                       steps_for_budget(mixed, 0.5, 3))  # a budget is met exactly, the floor aside


def test_walk_starts_take_the_last_steps_of_the_walk():
    walk = (399, 149, 29)
    assert walk_starts(walk, torch.tensor([0, 1, 2, 3])).tolist() == [-1, 29, 149, 399]
    with pytest.raises(ConfigError):
        walk_starts(walk, torch.tensor([4]))


@pytest.mark.parametrize("bad", [dict(thresholds=()), dict(thresholds=(0.03, 0.02)), dict(budget=-1.0),
                                 dict(min_budget=-0.5), dict(flat=-0.1)])
def test_bad_group_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        GroupSettings(**bad)


def _half_flat_image() -> torch.Tensor:
    """(1, 3, 64, 128) in [0, 1]: a flat left half, a noisy right half."""
    g = torch.Generator().manual_seed(0)
    image = torch.full((1, 3, 64, 128), 0.5)
    image[..., 64:] = torch.rand(1, 3, 64, 64, generator=g)
    return image


def test_grouped_sampler_through_the_api_spends_steps_on_texture_only(refiner_upscaler):
    from adadiffsr import UpscaleConfig

    upscaler = refiner_upscaler
    image = _half_flat_image()
    walk = (399, 149, 29)
    base = dict(timesteps=walk, tile=32, overlap=0, rule="ddim")
    result = upscaler.run(image * 2 - 1, UpscaleConfig(policy="grouped", thresholds=(0.001, 0.002, 0.003), **base))
    steps = result.run.steps.view(2, 4)
    assert steps[:, :2].sum() == 0  # the flat half: the prior's estimate, no step
    assert bool((steps[:, 2:] == 3).all())  # the textured half: the whole walk
    assert result.run.nfe == 12
    # a flat tile is exactly the prior's estimate; a textured one is exactly the full walk's tile
    prior = upscaler.run(image * 2 - 1, UpscaleConfig(steps=0, tile=32, overlap=0))
    full = upscaler.run(image * 2 - 1, UpscaleConfig(policy="timesteps", **base))
    assert torch.equal(result.image[..., :, :128], prior.image[..., :, :128])
    assert torch.equal(result.image[..., :, 256:], full.image[..., :, 256:])
    # a budget of 1 step per tile: 8 evaluations, all on the textured half
    budget = upscaler.run(image * 2 - 1, UpscaleConfig(budget=1.0, **base))
    assert budget.run.nfe == 8 and budget.run.steps.view(2, 4)[:, :2].sum() == 0
    assert sorted(budget.run.steps.tolist()) == [0, 0, 0, 0, 0, 2, 3, 3]
    assert budget.difficulty is not None and budget.difficulty.shape == (8,)


def test_budget_through_the_cli_reports_the_groups(tmp_path, capsys, refiner_weights):
    import json

    from PIL import Image

    from adadiffsr.cli import main

    picture = (_half_flat_image()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "in.png")
    args = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--weights", str(refiner_weights),
            "--tile", "32", "--overlap", "0", "--timesteps", "399,149,29", "--report", str(tmp_path / "r.json"), "-q"]
    assert main([*args, "--budget", "0.5"]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["nfe"] == 4 and report["nfe_uniform"] == 24  # 8 tiles through the 3-step walk
    assert report["settings"]["policy"] == "grouped" and report["settings"]["budget"] == 0.5
    assert all("difficulty" in tile for tile in report["tiles"])
    assert Image.open(tmp_path / "out.png").size == (512, 256)
    # thresholds no tile reaches: the floor of 1 mean step per tile (the default) still spends 8, --min-budget 0 none
    assert main([*args, "--policy", "grouped", "--group-thresholds", "1,1,1"]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["nfe"] == 8 and report["settings"]["min_budget"] == 1.0
    assert sorted(t["steps"] for t in report["tiles"])[-3:] == [2, 3, 3]  # the whole walk to the hardest first
    floorless = [*args, "--policy", "grouped", "--group-thresholds", "1,1,1", "--min-budget", "0"]
    assert main(floorless) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["nfe"] == 0
    capsys.readouterr()
    assert main([*args, "--budget", "1", "--policy", "uniform"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "grouped" in err and len(err.strip().splitlines()) == 1


def test_student_tiles_are_the_tiles_of_the_student_groups():
    steps = torch.tensor([0, 1, 2, 3, 2, 0])
    assert student_tiles(steps, (1, 2)).tolist() == [False, True, True, False, True, False]
    assert not bool(student_tiles(steps, ()).any())
    with pytest.raises(ConfigError, match="student groups"):
        GroupSettings(student_groups=(-1,))


def test_the_student_takes_its_groups_tiles_in_one_step_sharing_batches_with_the_walk():
    """Tiles of a student group end exactly as the student alone would leave them (one step from the
    walk's first timestep), tiles of the other groups exactly as the teacher's walk would, flat tiles
    with the prior's estimate, all in one batch."""
    from adadiffsr import UpscaleConfig

    teacher = tiny_refiner(live=True)
    torch.manual_seed(1)
    student = tiny_refiner()
    with torch.no_grad():
        student.unet.conv_out.weight.normal_(0, 0.05)
    upscaler = Upscaler(teacher, "cpu", student=student)
    alone = Upscaler(student, "cpu")
    image = _half_flat_image() * 2 - 1
    walk = (399, 149, 29)
    base = {"timesteps": walk, "tile": 32, "overlap": 0, "rule": "ddim", "batch_tiles": 8}
    # a budget of 1 step per tile: steps [0, 0, 0, 0, 0, 2, 3, 3] (test above); the 2-step tile to the student
    mixed = upscaler.run(image, UpscaleConfig(budget=1.0, student=True, student_groups=(2,), **base))
    assert mixed.run.nfe == 7 and mixed.run.nfe_student == 1
    routed = mixed.by_student
    assert routed is not None and int(routed.sum()) == 1 and not bool(routed.view(2, 4)[:, :2].any())
    walked = upscaler.run(image, UpscaleConfig(policy="timesteps", **base))
    one_step = alone.run(image, UpscaleConfig(policy="timesteps", **{**base, "timesteps": walk[:1]}))
    distilled = upscaler.run(image, UpscaleConfig(policy="distilled", **base))
    assert distilled.run.nfe_student == 8 and torch.equal(distilled.image, one_step.image)
    prior = upscaler.run(image, UpscaleConfig(steps=0, tile=32, overlap=0))
    for tile, (by_student, steps) in enumerate(zip(routed.tolist(), mixed.run.steps.tolist(), strict=True)):
        row, col = divmod(tile, 4)
        box = (..., slice(128 * row, 128 * row + 128), slice(128 * col, 128 * col + 128))
        expected = one_step if by_student else (walked if steps == 3 else prior)
        assert steps in (0, 3) or by_student
        assert (mixed.image[box] - expected.image[box]).abs().max() < 1e-5, tile  # batch sizes differ
    # without a student, or turned off, nothing is routed and the plan is the walk's; a student beside the
    # weights runs by default (since 2026-12-07)
    plain = Upscaler(teacher, "cpu").run(image, UpscaleConfig(budget=1.0, **base))
    off = upscaler.run(image, UpscaleConfig(budget=1.0, student=False, **base))
    assert plain.run.nfe_student == off.run.nfe_student == 0 and torch.equal(plain.image, off.image)
    assert upscaler.run(image, UpscaleConfig(budget=1.0, **base)).run.nfe_student > 0
    with pytest.raises(ConfigError, match="grouped"):
        UpscaleConfig(policy="adaptive", student=True)
    # a student distilled at 399 joins only walks that start there
    pinned = Upscaler(teacher, "cpu", student=student, student_timestep=399)
    assert pinned.resolve(UpscaleConfig(policy="grouped", timesteps=walk)).student is True  # on by default
    assert pinned.resolve(UpscaleConfig(policy="grouped", timesteps=(239, 89, 17))).student is False  # quietly off
    assert pinned.resolve(UpscaleConfig(policy="grouped", timesteps=walk, student=True)).student is True
    with pytest.raises(ConfigError, match="distilled to start at timestep 399"):
        pinned.resolve(UpscaleConfig(policy="grouped", timesteps=(239, 89, 17), student=True))
    assert pinned.resolve(UpscaleConfig(policy="distilled", timesteps=(239, 89, 17))).sampling.timesteps == (399,)


def test_the_student_on_request_or_as_the_models_default_from_the_cli(tmp_path, capsys, refiner_weights):
    """A student beside the weights runs by default (since 2026-12-07) unless the weights file's sampling
    defaults or --no-student say otherwise; the report counts nfe_student and names each tile's network;
    --no-student overrides the model; --student without a student file is one line."""
    import json

    from PIL import Image

    from adadiffsr.backbones import student_path_for
    from adadiffsr.cli import main

    picture = (_half_flat_image()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "in.png")
    flags = ["--tile", "32", "--overlap", "0", "--timesteps", "399,149,29", "--policy", "grouped",
             "--group-thresholds", "0.001,0.002,0.003", "-q"]
    args = ["upscale", str(tmp_path / "in.png"), "--weights", str(refiner_weights), *flags]
    assert main([*args, "--student", "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "train distill" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
    torch.manual_seed(1)
    student = tiny_refiner()
    with torch.no_grad():
        student.unet.conv_out.weight.normal_(0, 0.05)
    save_backbone(student, student_path_for(refiner_weights))
    on_by_default = tmp_path / "on.safetensors"  # the same refiner, its file saying "student": true
    save_backbone(tiny_refiner(live=True, sampling={"student": True}), on_by_default)
    save_backbone(student, student_path_for(on_by_default))
    off_by_default = tmp_path / "off.safetensors"  # the same refiner, its file saying "student": false
    save_backbone(tiny_refiner(live=True, sampling={"student": False}), off_by_default)
    save_backbone(student, student_path_for(off_by_default))
    runs = {"plain": ["--weights", str(off_by_default)], "asked": ["--student"], "model": ["--weights", str(on_by_default)],
            "model-off": ["--weights", str(on_by_default), "--no-student"], "default": []}
    reports = {}
    for name, extra in runs.items():
        code = main([*args, *extra, "-o", str(tmp_path / f"{name}.png"), "--report", str(tmp_path / f"{name}.json")])
        assert code == 0, capsys.readouterr().err
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for name in ("asked", "model", "default"):
        report = reports[name]
        assert report["nfe_student"] == report["student_tiles"] == 4 and report["nfe"] == 4, name  # the textured half
        assert [t["network"] for t in report["tiles"]][:4] == ["prior", "prior", "student", "student"]
        assert report["settings"]["student"] is True and report["settings"]["student_groups"] == [1, 2, 3]
    for name in ("plain", "model-off"):
        assert reports[name]["nfe_student"] == 0 and reports[name]["nfe"] == 12, name
        assert reports[name]["settings"]["student"] is False
