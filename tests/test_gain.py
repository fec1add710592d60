"""MMLE: eq. 1-2 as pure functions, the exact gain on a tiny model, traces, and the analysis CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from adadiffsr.backbones import save_backbone
from adadiffsr.cli import main
from adadiffsr.core.gain import information_gain
from adadiffsr.errors import ConfigError
from adadiffsr.gain.exact import ExactPerformance
from adadiffsr.gain.quality import GainConfig, components, normalise
from adadiffsr.gain.traces import fit_ranges, trace_tile
from adadiffsr.weights import DEFAULT_WEIGHTS_NAME

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


def test_exact_performance_on_a_tiny_model():
    backbone = tiny_compact(tile_size=48)
    lr = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = backbone.condition(lr)
    x0 = cond + 0.05 * torch.randn_like(cond)
    performance = ExactPerformance(backbone, CONFIG)
    assert performance.nr_start == 500
    noisy, exact = performance(x0, cond, torch.tensor([300, 300])), performance(cond, cond, torch.tensor([300, 300]))
    assert noisy.shape == (2, 2) and bool(((noisy >= 0) & (noisy <= 1)).all())
    assert bool((exact[:, 0] > noisy[:, 0]).all())  # the input feature itself is the best FR estimate
    gain = information_gain(exact, noisy, torch.tensor([300, 300]), performance.nr_start)
    assert bool((gain[:, 0] > 0).all())  # moving onto the input feature: FR rises


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
    assert set(report["val"]) >= {"correlation", "category_agreement", "pace_agreement", "steps", "level_correlation"}
    assert 0 <= report["val"]["pace_agreement"] <= 1  # its value is tested on known gains below
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


def test_learned_performance_and_the_gain_the_sampler_makes_of_it():
    from adadiffsr.engine.sampler import SamplerSettings, sample_tiles, tile_generators
    from adadiffsr.gain.regressor import LearnedPerformance, QualityRegressor, RegressorConfig
    from adadiffsr.policies.uniform import UniformPolicy

    torch.manual_seed(0)
    backbone = tiny_compact(tile_size=48)
    model = QualityRegressor(RegressorConfig(in_channels=48)).eval()
    learned = LearnedPerformance(backbone, model)
    lr = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = backbone.condition(lr)
    x0 = cond + 0.1 * torch.randn_like(cond)
    r = learned(x0, cond, torch.tensor([900, 499, 10]))
    assert r.shape == (3, 2) and bool(((r > 0) & (r < 1)).all())
    assert torch.equal(r, model.performance(x0, cond))

    class Watch:  # the learned performance, remembering what the sampler was told
        nr_start = learned.nr_start

        def __init__(self):
            self.seen = []

        def __call__(self, x0, c, t):
            out = learned(x0, c, t)
            self.seen.append((int(t[0]), out))
            return out

    watch = Watch()
    gains = []

    def policy(obs):  # uniform at 250, recording the gains the sampler hands over
        gains.append(obs.gain.clone())
        return UniformPolicy(250)(obs)

    policy.intervals = (250,)  # type: ignore[attr-defined]
    policy.initial = UniformPolicy(250).initial  # type: ignore[attr-defined]
    sample_tiles(backbone, torch.randn(1, 48, 48, 48), cond[:1], policy, SamplerSettings(),
                 tile_generators(0, 1, cond.device), performance=watch)
    assert [t for t, _ in watch.seen] == [999, 749, 499, 249]
    assert torch.equal(gains[0], torch.zeros(1, 2))  # nothing to gain against at the first step
    for k in (1, 2, 3):
        expected = torch.tanh(watch.seen[k][1] - watch.seen[k - 1][1])
        assert torch.allclose(gains[k][:, 0], expected[:, 0], atol=1e-6)
        nr = expected[:, 1] if watch.seen[k][0] < 500 else torch.zeros(1)
        assert torch.allclose(gains[k][:, 1], nr, atol=1e-6)  # NR only in the second half




def test_traces_refuse_a_missing_output_folder_before_any_work(tmp_path, capsys):
    code = main(["analyze", "traces", "--photos", str(tmp_path), "--out", str(tmp_path / "no" / "t.safetensors")])
    err = capsys.readouterr().err
    assert code != 0 and "output folder does not exist" in err and err.count("\n") == 1


def test_agreement_of_known_gains():
    """The agreement report on gains whose DTSS decisions are known: identical gains agree fully;
    learned NR gains of the wrong sign disagree on exactly the late growing steps."""
    from adadiffsr.train.regressor import agreement

    t = torch.tensor([900, 700, 400, 300, 200, 100])
    exact = torch.tensor([[0.03, 0.0], [0.0, 0.0], [0.0, 0.05], [0.0, 0.05], [0.0, 0.0], [0.0, 0.0]])
    same = agreement(exact, exact.clone(), t, tau=0.02, nr_start=500, fr_change="rise")
    assert same["pace_agreement"] == 1.0 and same["category_agreement"] == 1.0 and same["steps"] == 4
    flipped = exact.clone()
    flipped[:, 1] = -flipped[:, 1]  # the two growing late steps now look stable to the learned gain
    wrong = agreement(exact, flipped, t, tau=0.02, nr_start=500, fr_change="rise")
    assert wrong["pace_agreement"] == pytest.approx(4 / 6) and wrong["category_agreement"] == pytest.approx(2 / 4)
    assert agreement(exact, exact, t, tau=0.02, nr_start=800, fr_change="rise")["steps"] == 5  # the late half moves
