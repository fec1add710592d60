"""The Python API: load once, upscale many."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr import UpscaleConfig, Upscaler
from adadiffsr.backbones import save_backbone
from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.weights import DEFAULT_WEIGHTS_NAME

from .conftest import tiny_compact

SAMPLE = Path(__file__).parents[1] / "assets" / "coffee-lr.png"


def test_load_once_upscale_many(tmp_path, monkeypatch):
    save_backbone(tiny_compact(), tmp_path / DEFAULT_WEIGHTS_NAME)
    monkeypatch.setenv("ADADIFFSR_WEIGHTS_DIR", str(tmp_path))
    upscaler = Upscaler.from_pretrained(device="cpu")  # the default model, from the folder set above
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 30, 20))
    config = UpscaleConfig(policy="uniform", interval=250, tile=16, seed=4)
    first = upscaler(image, config)
    second = upscaler(image, config)
    assert first.image.size == (120, 80)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert first.report["nfe"] == 4 * first.report["num_tiles"]
    assert first.report["settings"]["device"] == "cpu"
    assert first.step_map().width >= 512
    other = upscaler(SAMPLE, UpscaleConfig(policy="uniform", interval=500, outscale=2.5, color_fix="wavelet"))
    assert other.image.size == (375, 250)


def test_missing_default_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="no default model at .*give a weights file"):
        Upscaler.from_pretrained(device="cpu")


def test_config_is_validated_when_made():
    """A bad setting fails where the config is made, in one line naming it, not at the first image."""
    bad = [(dict(policy="magic"), "unknown policy 'magic'"), (dict(batch_tiles=-1), "batch-tiles"),
           (dict(policy="uniform", interval=0), "interval must be"), (dict(outscale=-1.0), "scale must be"),
           (dict(rule="euler"), "update rule 'euler'"), (dict(gain="guess"), "gain 'guess'"),
           (dict(spacing="middle"), "spacing 'middle'"), (dict(fusion="blend"), "fusion 'blend'"),
           (dict(policy="adaptive", intervals=(20, 5)), "intervals"), (dict(policy="grouped", interval=20), "uniform")]
    for fields, message in bad:
        with pytest.raises(ConfigError, match=message):
            UpscaleConfig(**fields)  # type: ignore[arg-type]
    with pytest.warns(FutureWarning, match="gain='none' is the old spelling of gain='auto' and goes in adadiffsr 0.3"):
        assert UpscaleConfig(gain="none").gain == "auto"  # the old spelling of auto still works, until 0.3
    with pytest.raises(ConfigError):
        Upscaler(tiny_compact(), "cpu", dtype="fp8")


def test_config_is_composed_of_its_parts_and_takes_their_fields_by_name():
    """UpscaleConfig holds each part's own frozen settings; a part's field given by name lands in that
    part, the same config as one built from the parts, and the flat names round-trip."""
    from adadiffsr.config import SamplingOptions
    from adadiffsr.engine.pipeline import TilingSettings
    from adadiffsr.policies.dtss import SHIPPED, DTSSPolicy
    from adadiffsr.policies.groups import GroupSettings

    flat = UpscaleConfig(policy="grouped", budget=1.0, tile=32, rule="ddpm", seed=3, tau=0.1)
    parts = UpscaleConfig(policy="grouped", groups=GroupSettings(budget=1.0), tiling=TilingSettings(tile=32),
                          sampling=SamplingOptions(rule="ddpm"), dtss=replace(SHIPPED, tau=0.1), seed=3)
    assert flat == parts and flat.groups.budget == 1.0 and flat.tiling.tile == 32 and flat.dtss.tau == 0.1
    assert isinstance(flat.dtss, DTSSPolicy) and flat.dtss.intervals == SHIPPED.intervals  # the rest as shipped
    with pytest.warns(FutureWarning, match="'group_thresholds' is the old spelling of 'thresholds'"):
        assert UpscaleConfig(group_thresholds=[0.1, 0.2]).groups.thresholds == (0.1, 0.2)  # the old name; lists
    assert UpscaleConfig(**flat.options()) == flat  # the flat view is complete
    moved = flat.with_options(tile=64, seed=4)
    assert moved.tiling.tile == 64 and moved.seed == 4 and moved.groups == flat.groups and flat.tiling.tile == 32
    assert replace(flat, student=True).student is True and replace(flat, student=True).groups == flat.groups
    with pytest.raises(ConfigError, match="no option 'tiles'"):
        UpscaleConfig(tiles=3)
    with pytest.raises(ConfigError, match="budget"):  # a part checks its own fields
        UpscaleConfig(budget=-1.0)
    with pytest.raises(ConfigError, match="budget sets the steps"):  # the parts are checked together
        flat.with_options(policy="uniform")


@pytest.mark.parametrize("name", ["grouped", "grouped-dtss", "adaptive", "timesteps", "distilled", "uniform"])
def test_each_policy_refuses_only_what_another_policy_reads(name):
    """The registry entry checks the config: a pace (interval, steps) belongs to the paced policy, the
    student and a budget to the grouped ones; each refusal names the policy that reads it."""
    from adadiffsr.policies.registry import POLICIES

    kind = POLICIES[name]
    for option, value, reader in (("interval", 5, kind.paced), ("steps", 3, kind.paced),
                                  ("student", True, kind.grouped), ("budget", 1.0, kind.grouped)):
        if reader:
            assert UpscaleConfig(name, **{option: value}).options()[option] == value
        else:
            with pytest.raises(ConfigError, match="pass policy='(uniform|grouped)'"):
                UpscaleConfig(name, **{option: value})
    assert UpscaleConfig(name, steps=0).sampling.steps == 0  # no diffusion step: every policy takes it


def test_bf16_autocast_runs_close_to_fp32():
    """The dtype is not ignored: the backbone's convolutions run in bf16 (seen inside predict), the
    output moves from fp32's, and stays close to it."""
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 16, 16))
    config = UpscaleConfig(policy="uniform", interval=250, tile=16)
    full = np.asarray(Upscaler(tiny_compact(), "cpu")(image, config).picture.rgb, dtype=np.float64)
    model = tiny_compact()
    seen: list[torch.dtype] = []
    model.unet.conv_in.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    half = np.asarray(Upscaler(model, "cpu", dtype="bf16")(image, config).picture.rgb, dtype=np.float64)
    assert seen and set(seen) == {torch.bfloat16}
    assert not np.array_equal(full, half)
    assert np.abs(full - half).mean() < 3.0 / 255  # mean error under 3 of 255 levels


def test_gain_exact_and_learned_are_timed_in_the_report(tmp_path):
    from adadiffsr.gain.regressor import QualityRegressor, RegressorConfig

    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 48, 48))
    config = dict(policy="uniform", interval=250, tile=48)
    plain = Upscaler(tiny_compact(tile_size=48), "cpu")
    with pytest.raises(WeightsError, match="regressor"):
        plain(image, UpscaleConfig(gain="learned", **config))
    exact = plain(image, UpscaleConfig(gain="exact", **config))
    assert exact.report["seconds"]["gain"] > 0
    none = plain(image, UpscaleConfig(**config))
    assert none.report["seconds"]["gain"] == 0
    assert np.array_equal(np.asarray(exact.image), np.asarray(none.image))  # uniform sampling ignores gains
    learned = Upscaler(tiny_compact(tile_size=48), "cpu", regressor=QualityRegressor(RegressorConfig()))
    assert learned(image, UpscaleConfig(gain="learned", **config)).report["seconds"]["gain"] > 0
    with pytest.raises(ConfigError):
        plain(image, UpscaleConfig(gain="psychic"))


def test_the_report_says_which_files_ran_and_the_tiling_as_resolved(tmp_path):
    from adadiffsr.gain.regressor import QualityRegressor, RegressorConfig, regressor_path_for, save_regressor

    weights = tmp_path / "model.safetensors"
    save_backbone(tiny_compact(), weights)
    save_regressor(QualityRegressor(RegressorConfig()), regressor_path_for(weights))
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 30, 20))
    report = Upscaler.from_pretrained(weights, device="cpu")(image, UpscaleConfig(policy="adaptive")).report
    settings = report["settings"]
    assert settings["files"] == {"weights": str(weights), "regressor": str(regressor_path_for(weights)), "pfj": None,
                                 "student": None, "compact_student": None}
    assert settings["gain"] == "learned"  # asked for "none": the adaptive sampler took the regressor
    assert (settings["tile"], settings["overlap"]) == (16, 4)  # the tiny model's native tile, a quarter of it
    bare = Upscaler.from_pretrained(weights, device="cpu", regressor=False)
    assert bare(image, UpscaleConfig(policy="adaptive")).report["settings"]["gain"] == "exact"
    assert bare.files["regressor"] is None


def test_an_interval_means_uniform_sampling_at_it_and_is_never_dropped():
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 16, 16))
    upscaler = Upscaler(tiny_compact(), "cpu")  # its default sampler is the adaptive one
    at_20 = upscaler(image, UpscaleConfig(interval=20)).report
    assert at_20["settings"]["policy"] == "uniform" and at_20["nfe"] == 50  # one tile, 1000 / 20 steps
    assert upscaler(image, UpscaleConfig(interval=250)).report["nfe"] == 4
    assert upscaler(image, UpscaleConfig(policy="uniform")).report["nfe"] == 50  # the uniform default, 20
    with pytest.raises(ConfigError, match="interval"):
        upscaler(image, UpscaleConfig(policy="adaptive", interval=20))


@pytest.mark.parametrize("amx", [True, False])
def test_dtype_auto_is_bf16_on_a_cpu_with_amx_only_and_the_report_says_so(tmp_path, monkeypatch, capsys, amx):
    """The CLI's default --dtype auto: bf16 for the compact model on a CPU with AMX-BF16, fp32 on others,
    fp32 under --runtime onnx (its exports are fp32); the report records what ran."""
    import json

    from adadiffsr.api import auto_dtype
    from adadiffsr.backbones import save_backbone
    from adadiffsr.cli import main

    monkeypatch.setattr("adadiffsr.devices.cpu_runs_bf16", lambda: amx)
    weights = tmp_path / "tiny.safetensors"
    save_backbone(tiny_compact(), weights)
    Image.new("RGB", (16, 12), (90, 140, 60)).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--weights", str(weights),
                 "--steps", "1", "--report", str(tmp_path / "r.json"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["dtype"] == ("bf16" if amx else "fp32")
    assert auto_dtype(torch.device("cpu"), "onnx", "compact") == "fp32"
    assert auto_dtype(torch.device("cpu"), "torch", "sd-x4-upscaler") == "fp32"
