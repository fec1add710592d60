"""PFJ: eq. 3 as a module, its place in the sampler, the --fidelity knob, training and loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr.api import UpscaleConfig, Upscaler
from adadiffsr.backbones import save_backbone
from adadiffsr.cli import main
from adadiffsr.errors import ConfigError
from adadiffsr.gain.regressor import QualityRegressor, RegressorConfig, regressor_path_for, save_regressor
from adadiffsr.pfj import FeatureInjection, PFJConfig, load_pfj, pfj_path_for, save_pfj
from adadiffsr.weights import DEFAULT_WEIGHTS_NAME

from .conftest import tiny_compact

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "chelsea-288.png"


def _random_pfj(seed: int = 0) -> FeatureInjection:
    torch.manual_seed(seed)
    model = FeatureInjection(PFJConfig(in_channels=48, width=8))
    with torch.no_grad():
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def test_untrained_pfj_is_the_identity_and_strength_scales_the_modulation():
    o = torch.randn(2, 48, 12, 12)
    gain = torch.tensor([[0.01, -0.02], [0.0, 0.03]])
    assert torch.equal(FeatureInjection(PFJConfig(in_channels=48)).inject(o, gain), o)
    model = _random_pfj()
    alpha, beta = model(o, gain)
    assert alpha.shape == beta.shape == o.shape
    full = model.inject(o, gain)
    assert torch.allclose(full, alpha * o + beta, atol=1e-6)  # eq. 3
    assert torch.allclose(model.inject(o, gain, 0.5), (o + full) / 2, atol=1e-6)
    assert torch.equal(model.inject(o, gain, 0.0), o)
    assert not torch.allclose(model(o, gain)[1], model(o, -gain)[1])  # the gain changes the modulation


def test_fidelity_zero_is_the_backbone_alone_and_pfj_changes_the_output():
    image = Image.open(SAMPLE).convert("RGB").crop((0, 0, 40, 40))
    backbone = tiny_compact(tile_size=16)
    regressor = QualityRegressor(RegressorConfig(in_channels=48, width=8))
    plain = Upscaler(backbone, "cpu", regressor=regressor)
    with_pfj = Upscaler(tiny_compact(tile_size=16), "cpu", regressor=regressor, pfj=_random_pfj())
    config = dict(interval=250, tile=16)
    base = np.asarray(plain(image, UpscaleConfig(**config)).image)
    off = with_pfj(image, UpscaleConfig(fidelity=0, **config))
    assert np.array_equal(np.asarray(off.image), base)
    assert off.report["seconds"]["pfj"] == 0
    on = with_pfj(image, UpscaleConfig(fidelity=1, **config))
    assert not np.array_equal(np.asarray(on.image), base)
    assert on.report["seconds"]["pfj"] > 0 and on.report["seconds"]["gain"] > 0  # PFJ takes the learned gain
    with pytest.raises(ConfigError, match="fidelity"):
        with_pfj(image, UpscaleConfig(fidelity=-1, **config))


def test_train_pfj_cli_then_upscale_loads_it_beside_the_weights(tmp_path, monkeypatch, capsys):
    weights = tmp_path / DEFAULT_WEIGHTS_NAME
    save_backbone(tiny_compact(tile_size=16), weights)
    monkeypatch.setenv("ADADIFFSR_WEIGHTS_DIR", str(tmp_path))
    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        Image.open(SAMPLE).convert("RGB").save(tmp_path / "photos" / split / "a.png")
    args = ["train", "pfj", "--photos", str(tmp_path / "photos"), "--steps", "2", "--batch-size", "2",
            "--crop", "64", "--device", "cpu"]
    assert main(args) == 1  # no regressor yet
    assert "train the regressor first" in capsys.readouterr().err
    save_regressor(QualityRegressor(RegressorConfig(in_channels=48, width=8)), regressor_path_for(weights))
    out = pfj_path_for(weights)
    assert main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["val_loss"] > 0 and report["val_loss_identity"] > 0
    assert load_pfj(out).config.in_channels == 48
    image = tmp_path / "in.png"
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 32, 32)).save(image)
    outputs = []
    for fidelity in ("0", "1"):
        target = tmp_path / f"out-{fidelity}.png"
        code = main(["upscale", str(image), "-o", str(target), "--interval", "500", "--fidelity", fidelity,
                     "--report", str(tmp_path / f"r-{fidelity}.json"), "-q"])
        assert code == 0, capsys.readouterr().err
        outputs.append(np.asarray(Image.open(target)))
        assert json.loads((tmp_path / f"r-{fidelity}.json").read_text())["settings"]["fidelity"] == float(fidelity)
    assert outputs[0].shape == (128, 128, 3) and outputs[0].shape == outputs[1].shape
    assert not np.array_equal(outputs[0], outputs[1])  # the trained PFJ at fidelity 1 changes the output
    # a corrupt PFJ file beside the weights: one clear line, no output
    out.write_bytes(b"\x00" * 40)
    code = main(["upscale", str(image), "-o", str(tmp_path / "bad.png"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "pfj" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.png").exists()


def test_pfj_file_must_hold_a_pfj(tmp_path):
    path = tmp_path / "x.pfj.safetensors"
    save_regressor(QualityRegressor(RegressorConfig()), path)
    with pytest.raises(Exception, match="not a pfj file"):
        load_pfj(path)
    save_pfj(_random_pfj(), path)
    assert load_pfj(path).config.width == 8


def test_chain_objective_trains_pfj_through_every_step_of_the_walk():
    from adadiffsr.core.schedule import SkipCodebook
    from adadiffsr.gain.regressor import LearnedPerformance
    from adadiffsr.train.pfj import _chain_loss

    backbone = tiny_compact(tile_size=16).eval().requires_grad_(False)
    learned = LearnedPerformance(backbone, QualityRegressor(RegressorConfig(in_channels=48, width=8)).eval())
    codebook = SkipCodebook.build(backbone.spec.schedule, (250,))
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 64, 64, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    pfj = FeatureInjection(PFJConfig(in_channels=48, width=8))
    optimizer = torch.optim.Adam(pfj.parameters(), lr=5e-3)

    def loss(module):
        return _chain_loss(backbone, learned, module, lr, hr, codebook, torch.Generator().manual_seed(5))

    with torch.no_grad():
        identity = float(loss(None))
        assert float(loss(pfj)) == pytest.approx(identity)  # untrained PFJ is the identity
    for _ in range(25):
        value = loss(pfj)
        optimizer.zero_grad()
        value.backward()
        assert pfj.out.weight.grad is not None and float(pfj.out.weight.grad.abs().sum()) > 0
        optimizer.step()
    with torch.no_grad():
        assert float(loss(pfj)) < 0.95 * identity  # the final output moved towards the ground truth


def test_companions_for_another_backbone_fail_in_one_line(tmp_path, capsys):
    weights = tmp_path / "model.safetensors"
    save_backbone(tiny_compact(tile_size=16), weights)
    save_pfj(FeatureInjection(PFJConfig(in_channels=3, width=8)), pfj_path_for(weights))
    image = tmp_path / "in.png"
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 32, 32)).save(image)
    code = main(["upscale", str(image), "-o", str(tmp_path / "out.png"), "--weights", str(weights), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "PFJ file was trained for a condition of 3 channels" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.png").exists()
    pfj_path_for(weights).unlink()
    save_regressor(QualityRegressor(RegressorConfig(in_channels=3, width=8)), regressor_path_for(weights))
    with pytest.raises(Exception, match="regressor was trained for a backbone with 3"):
        Upscaler.from_pretrained(str(weights))


def test_train_pfj_for_the_student_from_the_cli_then_fidelity_moves_the_students_output(tmp_path, capsys, tiny_prior):
    """`train pfj-student` trains PFJ through the student's one step from a prior cache, resumably,
    and writes NAME.pfj.safetensors beside the refiner; upscale then loads it: --fidelity 0 is the
    student alone (bit-identical to no PFJ file), --fidelity 1 differs; a refiner without a student: one line."""
    from adadiffsr.backbones import student_path_for
    from adadiffsr.data.cache import CacheConfig, build_cache
    from adadiffsr.prior import load_prior

    from .conftest import tiny_refiner

    files = []
    for i, box in enumerate([(0, 0, 96, 96), (100, 40, 196, 136)]):
        files.append(tmp_path / f"p{i}.png")
        Image.open(SAMPLE).convert("RGB").crop(box).save(files[-1])
    build_cache(files, tmp_path / "cache", 8, CacheConfig(prior=tiny_prior, crop=64, shard_size=4), load_prior(tiny_prior))
    teacher = tiny_refiner(live=True, sampling={"policy": "timesteps", "timesteps": [299, 49]}, default_strength=0.3)
    weights = tmp_path / "refiner.safetensors"
    save_backbone(teacher, weights)
    image = tmp_path / "in.png"
    Image.open(SAMPLE).convert("RGB").crop((50, 50, 82, 74)).save(image)
    args = ["train", "pfj-student", "--cache", str(tmp_path / "cache"), "--run", str(tmp_path / "run"), "--batch-size", "2",
            "--crop", "32", "--workers", "0", "--weights", str(weights), "--device", "cpu", "--width", "8", "--depth", "3"]
    assert main([*args, "--steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "student" in err and len(err.strip().splitlines()) == 1
    save_backbone(tiny_refiner(live=True, default_strength=0.3), student_path_for(weights),
                  metadata={"adadiffsr.student_timestep": "299"})
    assert main([*args, "--steps", "2"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main([*args, "--steps", "4"]) == 0, capsys.readouterr().err
    assert "resumed from" in capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert report["step"] == 4 and {"psnr_y", "psnr_y_student", "psnr_y_prior"} <= set(report)
    pfj = load_pfj(pfj_path_for(weights))
    assert (pfj.config.width, pfj.config.depth, pfj.config.student) == (8, 3, True)
    assert any(bool(p.any()) for p in pfj.out.parameters())  # it trained (its last layer starts at zero)
    outputs = {}
    for fidelity in ("0", "1"):
        out = tmp_path / f"f{fidelity}.png"
        assert main(["upscale", str(image), "-o", str(out), "--weights", str(weights), "--policy", "distilled",
                     "--fidelity", fidelity, "--report", str(tmp_path / f"f{fidelity}.json"), "-q"]) == 0, capsys.readouterr().err
        outputs[fidelity] = np.asarray(Image.open(out))
    settings = json.loads((tmp_path / "f1.json").read_text())["settings"]
    assert settings["files"]["pfj"] == str(pfj_path_for(weights)) and settings["pfj"] is True
    assert settings["gain"] == "none"  # trained at the student's first gain (0): no gain runs for it
    walks = []  # the teacher's walk: a PFJ trained through the student's step does not touch it
    for fidelity in ("0", "1"):
        out = tmp_path / f"walk{fidelity}.png"
        assert main(["upscale", str(image), "-o", str(out), "--weights", str(weights), "--policy", "timesteps",
                     "--fidelity", fidelity, "--report", str(tmp_path / "walk.json"), "-q"]) == 0
        walks.append(np.asarray(Image.open(out)))
    assert np.array_equal(*walks) and json.loads((tmp_path / "walk.json").read_text())["settings"]["pfj"] is False
    pfj_path_for(weights).unlink()
    assert main(["upscale", str(image), "-o", str(tmp_path / "none.png"), "--weights", str(weights), "--policy", "distilled",
                 "-q"]) == 0
    assert np.array_equal(outputs["0"], np.asarray(Image.open(tmp_path / "none.png")))
    assert not np.array_equal(outputs["0"], outputs["1"])
