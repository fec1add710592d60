"""MMLE: eq. 1-2 as pure functions, the exact gain on a tiny model, traces, and the analysis CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from adadiffsr.cli import main
from adadiffsr.errors import ConfigError
from adadiffsr.gain.exact import ExactGain
from adadiffsr.gain.quality import GainConfig, components, information_gain, normalise
from adadiffsr.gain.traces import fit_ranges, trace_tile
from adadiffsr.weights import DEFAULT_WEIGHTS_NAME, save_backbone

from .conftest import tiny_compact

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = GainConfig(fr_metrics=("psnr", "nlpd"), nr_metrics=("niqe",))


def test_normalise_orients_every_metric_higher_is_better():
    cfg = GainConfig(fr_metrics=("psnr", "nlpd"), nr_metrics=("niqe",), ranges={"psnr": (20, 30)})
    raw = torch.tensor([[25.0, 0.5, 11.5], [40.0, -1.0, 30.0]], dtype=torch.float64)
    norm = normalise(cfg, raw)
    assert torch.allclose(norm[0], torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
    assert norm[1].tolist() == [1.0, 1.0, 0.0]  # clipped: great PSNR, great NLPD, awful NIQE


def test_components_are_weighted_means_and_gain_is_tanh_of_the_difference():
    cfg = GainConfig(fr_metrics=("psnr", "ssim"), nr_metrics=("niqe",), weights={"psnr": 3.0})
    r = components(cfg, torch.tensor([[1.0, 0.0, 0.25]], dtype=torch.float64))
    assert torch.allclose(r, torch.tensor([[0.75, 0.25]], dtype=torch.float64))
    now, prev = torch.tensor([[0.8, 0.6], [0.8, 0.6]]), torch.tensor([[0.7, 0.9], [0.7, 0.9]])
    gain = information_gain(now, prev, torch.tensor([900, 100]), cfg.nr_from * 1000)
    assert torch.allclose(gain[:, 0], torch.tanh(torch.tensor(0.1)).expand(2))
    assert gain[0, 1] == 0  # first half of the path: the no-reference gain does not count yet
    assert torch.isclose(gain[1, 1], torch.tanh(torch.tensor(-0.3)))


def test_config_checks_metric_kinds():
    with pytest.raises(ConfigError, match="no-reference"):
        GainConfig(fr_metrics=("niqe",), nr_metrics=())
    with pytest.raises(ConfigError, match="full-reference"):
        GainConfig(fr_metrics=(), nr_metrics=("psnr",))
    with pytest.raises(ConfigError, match="unknown metric"):
        GainConfig(fr_metrics=("psnrr",))


def test_exact_gain_on_a_tiny_model():
    backbone = tiny_compact(tile_size=48)
    lr = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = backbone.condition(lr)
    x0 = cond + 0.05 * torch.randn_like(cond)
    gain_fn = ExactGain(backbone, CONFIG)
    first = gain_fn(x0, None, cond, torch.tensor([999, 999]))
    assert torch.equal(first, torch.zeros(2, 2))
    better = gain_fn(cond, x0, cond, torch.tensor([300, 300]))  # moving onto the input feature: FR rises
    assert better.shape == (2, 2) and bool((better[:, 0] > 0).all()) and bool((better.abs() <= 1).all())


def test_trace_tile_and_fitted_ranges():
    backbone = tiny_compact(tile_size=48)
    lr = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    trace = trace_tile(backbone, lr, CONFIG, interval=250, seed=0)
    assert trace.t.tolist() == [999, 749, 499, 249]
    assert trace.raw.shape == (4, 3) and trace.performance.shape == trace.gain.shape == (4, 2)
    assert trace.gain[0].abs().sum() == 0 and trace.gain[:2, 1].abs().sum() == 0
    ranges = fit_ranges(CONFIG, trace.raw[None])
    assert ranges["psnr"][0] <= ranges["psnr"][1] and ranges["niqe"][0] >= ranges["niqe"][1]


def test_analyze_gain_and_traces_cli(tmp_path, monkeypatch, capsys):
    save_backbone(tiny_compact(tile_size=48), tmp_path / DEFAULT_WEIGHTS_NAME)
    monkeypatch.setenv("ADADIFFSR_WEIGHTS_DIR", str(tmp_path))
    Image.open(FIXTURES / "chelsea-288.png").convert("RGB").resize((96, 48)).save(tmp_path / "in.png")
    code = main(["analyze", "gain", str(tmp_path / "in.png"), "-o", str(tmp_path / "plot.png"), "--interval", "250",
                 "--fr", "psnr,nlpd", "--nr", "niqe"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "flat tile" in err and "textured tile" in err
    assert Image.open(tmp_path / "plot.png").size[1] == 600
    photos = tmp_path / "photos" / "train"
    photos.mkdir(parents=True)
    Image.open(FIXTURES / "chelsea-288.png").convert("RGB").save(photos / "a.png")
    code = main(["analyze", "traces", "--photos", str(tmp_path / "photos"), "--tiles", "2", "--interval", "500",
                 "--fr", "psnr", "--nr", "niqe", "--out", str(tmp_path / "traces.safetensors")])
    assert code == 0, capsys.readouterr().err
    with safe_open(str(tmp_path / "traces.safetensors"), "pt") as f:
        assert f.get_tensor("raw").shape == (2, 2, 2)
        assert json.loads(f.metadata()["metrics"]) == ["psnr", "niqe"]
        assert set(json.loads(f.metadata()["fitted_ranges"])) == {"psnr", "niqe"}


def test_train_regressor_from_traces_reports_agreement_and_overhead(tmp_path, monkeypatch, capsys):
    from adadiffsr.gain.regressor import load_regressor, regressor_path_for

    save_backbone(tiny_compact(tile_size=48), tmp_path / DEFAULT_WEIGHTS_NAME)
    monkeypatch.setenv("ADADIFFSR_WEIGHTS_DIR", str(tmp_path))
    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        Image.open(FIXTURES / "chelsea-288.png").convert("RGB").save(tmp_path / "photos" / split / "a.png")
        code = main(["analyze", "traces", "--photos", str(tmp_path / "photos"), "--split", split, "--tiles", "2",
                     "--interval", "100", "--fr", "psnr", "--nr", "niqe", "--out", str(tmp_path / f"{split}.safetensors")])
        assert code == 0, capsys.readouterr().err
    with safe_open(str(tmp_path / "train.safetensors"), "pt") as f:
        assert f.get_tensor("inputs").shape == (2, 10, 4 * 48, 12, 12)  # tiles, steps, 4C, 48 / pool 4
        assert f.get_tensor("reference").shape == (2, 2 * 48, 12, 12)
    out = regressor_path_for(tmp_path / DEFAULT_WEIGHTS_NAME)
    code = main(["train", "regressor", "--traces", str(tmp_path / "train.safetensors"), "--val-traces",
                 str(tmp_path / "val.safetensors"), "--out", str(out), "--epochs", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert set(report["val"]) >= {"correlation", "category_agreement", "steps", "level_correlation"}
    assert report["val"]["steps"] == 2 * 5  # t = 499 ... 99 at interval 100, two tiles
    assert report["overhead"]["fraction"] > 0  # (a toy backbone: the fraction means nothing here)
    model = load_regressor(out)
    assert model.config.pool == 4 and model.config.in_channels == 48
    assert json.loads(out.with_suffix(".json").read_text())["config"]["epochs"] == 3
    # traces without the regressor inputs, or not traces at all: one clear error
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    code = main(["train", "regressor", "--traces", str(tmp_path / "junk.safetensors"), "--val-traces",
                 str(tmp_path / "val.safetensors"), "--out", str(tmp_path / "r.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and "not a readable traces file" in err and "Traceback" not in err


def test_learned_gain_is_eq1_over_the_regressor_performance():
    from adadiffsr.gain.regressor import LearnedGain, QualityRegressor, RegressorConfig

    torch.manual_seed(0)
    backbone = tiny_compact(tile_size=48)
    model = QualityRegressor(RegressorConfig(in_channels=48)).eval()
    gain_fn = LearnedGain(backbone, model)
    lr = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = backbone.condition(lr)
    x0, prev = cond + 0.1 * torch.randn_like(cond), cond + 0.3 * torch.randn_like(cond)
    t = torch.tensor([900, 499, 10])
    assert torch.equal(gain_fn(x0, None, cond, t), torch.zeros(3, 2))
    assert torch.allclose(gain_fn(x0, x0, cond, t), torch.zeros(3, 2), atol=1e-6)  # no change, no gain
    gain = gain_fn(x0, prev, cond, t)
    with torch.no_grad():
        expected = torch.tanh(model.performance(x0, cond) - model.performance(prev, cond))
    assert torch.allclose(gain[:, 0], expected[:, 0], atol=1e-6)
    assert gain[0, 1] == 0 and torch.allclose(gain[1:, 1], expected[1:, 1], atol=1e-6)  # NR only for t < 500
    assert torch.allclose(gain_fn(prev, x0, cond, t), -gain, atol=1e-6)  # antisymmetric


def test_exact_gain_scores_each_estimate_once():
    backbone = tiny_compact(tile_size=48)
    lr = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = backbone.condition(lr)
    gain_fn = ExactGain(backbone, CONFIG)
    calls = []
    original = gain_fn._compute
    gain_fn._compute = lambda x0, c: calls.append(len(x0)) or original(x0, c)  # type: ignore[method-assign]
    a, b = cond + 0.1, cond + 0.05
    gain_fn(a, None, cond, torch.tensor([999]))
    gain_fn(b, a.clone(), cond, torch.tensor([400]))  # the previous estimate comes from the cache
    assert calls == [1, 1]
