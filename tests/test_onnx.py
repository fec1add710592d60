"""ONNX export and ``--runtime onnx``: parity with PyTorch, the CLI, the bench, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adadiffsr.api import UpscaleConfig, Upscaler
from adadiffsr.backbones import load_backbone, save_backbone
from adadiffsr.cli import main
from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.gain.regressor import QualityRegressor, RegressorConfig, regressor_path_for, save_regressor
from adadiffsr.pfj import FeatureInjection, PFJConfig, pfj_path_for, save_pfj

from .conftest import tiny_refiner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from adadiffsr.runtime.onnx_export import KINDS, export_onnx, onnx_path  # noqa: E402

PHOTO = Path(__file__).parents[1] / "assets" / "coffee-lr.png"
pytestmark = pytest.mark.usefixtures("tiny_prior")


def _model(folder: Path, seed: int = 0) -> Path:
    """A live tiny refiner over the tiny prior, with a random regressor and a PFJ that is not the identity."""
    weights = folder / "tiny.safetensors"
    refiner = tiny_refiner(live=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        refiner.unet.conv_out.weight.normal_(0, 0.05)
    save_backbone(refiner, weights)
    save_regressor(QualityRegressor(RegressorConfig(in_channels=48, width=8)), regressor_path_for(weights))
    pfj = FeatureInjection(PFJConfig(in_channels=51, width=8))
    with torch.no_grad():
        pfj.out.weight.normal_(0, 0.02)
    save_pfj(pfj, pfj_path_for(weights))
    return weights


def _image(size: tuple[int, int] = (40, 28)) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").crop((30, 20, 30 + size[0], 20 + size[1]))


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    weights = _model(tmp_path)
    checks = export_onnx(Upscaler.from_pretrained(weights, device="cpu"), weights, PHOTO)
    assert [c.kind for c in checks] == ["prior", "refiner", "regressor", "pfj"]
    assert all(c.path.is_file() and c.random_diff < 1e-4 and c.real_diff < 1e-4 for c in checks)
    return weights


def test_onnx_runtime_matches_pytorch_through_the_api(exported):
    image = _image()
    config = UpscaleConfig(seed=3)  # the adaptive default: prior, refiner, learned gain and PFJ all run
    reference = Upscaler.from_pretrained(exported, device="cpu")(image, config)
    onnx = Upscaler.from_pretrained(exported, device="cpu", runtime="onnx")
    assert onnx.backbone.prior.runtime == "onnx" and onnx.regressor is not None and onnx.pfj is not None
    result = onnx(image, config)
    assert result.report["settings"]["runtime"] == "onnx"
    assert result.report["settings"]["backbone"] == "CompactSR"
    assert result.report["settings"]["files"]["onnx_pfj"] == str(onnx_path(exported, "pfj"))
    assert result.report["nfe"] == reference.report["nfe"] > 0
    assert [t["steps"] for t in result.report["tiles"]] == [t["steps"] for t in reference.report["tiles"]]
    diff = np.abs(result.picture.rgb - reference.picture.rgb).max()
    assert diff < 1e-4, diff
    # the refiner moves away from the prior, so the match above is not the prior's alone
    zero = Upscaler.from_pretrained(exported, device="cpu")(image, UpscaleConfig(steps=0))
    assert np.abs(zero.picture.rgb - reference.picture.rgb).max() > 1e-3


def test_the_exported_refiner_takes_mixed_timesteps_and_any_batch(exported):
    torch_model = Upscaler.from_pretrained(exported, device="cpu").backbone
    onnx_model = Upscaler.from_pretrained(exported, device="cpu", runtime="onnx").backbone
    g = torch.Generator().manual_seed(1)
    for batch, side in ((1, 8), (5, 16)):
        x_t = torch.randn(batch, 48, side, side + 8, generator=g)
        cond = torch.randn(batch, 51, side, side + 8, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        with torch.no_grad():
            expected = torch_model.predict(x_t, t, cond)
        assert (onnx_model.predict(x_t, t, cond) - expected).abs().max() < 1e-4
    with torch.no_grad():  # per-sample timesteps: each row is what that row alone would give
        alone = torch_model.predict(x_t[:1], t[:1], cond[:1])
    assert (onnx_model.predict(x_t, t, cond)[:1] - alone).abs().max() < 1e-4


def test_export_and_upscale_with_onnx_from_the_cli(tmp_path, capsys):
    weights = _model(tmp_path)
    assert main(["export", "onnx", "--weights", str(weights), "--image", str(PHOTO)]) == 0
    err = capsys.readouterr().err
    assert "wrote 4 ONNX files" in err and "max |ONNX - PyTorch|" in err
    assert all(onnx_path(weights, kind).is_file() for kind in KINDS if kind != "student")  # it has no student
    _image().save(tmp_path / "in.png")
    outputs = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"out-{runtime}.png"
        code = main(["upscale", str(tmp_path / "in.png"), "-o", str(out), "--weights", str(weights),
                     "--runtime", runtime, "-q"])
        assert code == 0, capsys.readouterr().err
        outputs[runtime] = np.asarray(Image.open(out), dtype=np.int16)
    assert outputs["onnx"].shape == (112, 160, 3)
    assert np.abs(outputs["onnx"] - outputs["torch"]).max() <= 1  # 8-bit rounding of a < 1e-4 difference


def _one_line_error(capsys, args: list[str], code: int, text: str) -> None:
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err, err
    assert "Traceback" not in err


def test_onnx_errors_are_one_line(exported, tmp_path, capsys):
    _image().save(tmp_path / "in.png")
    base = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--weights", str(exported),
            "--runtime", "onnx"]
    _one_line_error(capsys, [*base, "--dtype", "bf16"], 2, "runs the fp32 exports")
    pfj_file = onnx_path(exported, "pfj")
    saved = pfj_file.read_bytes()
    pfj_file.write_bytes(saved[: len(saved) // 2])  # truncated
    _one_line_error(capsys, base, 1, "not a valid ONNX file")
    pfj_file.unlink()
    _one_line_error(capsys, base, 1, "no pfj export at")
    pfj_file.write_bytes(saved)
    onnx_path(exported, "regressor").write_bytes(onnx_path(exported, "refiner").read_bytes())  # the wrong network
    _one_line_error(capsys, base, 1, "not an adadiffsr regressor export")
    _model(tmp_path, seed=1)  # the weights change after the export
    _one_line_error(capsys, base, 1, "exported from another model")
    assert not (tmp_path / "out.png").exists()


def test_a_missing_onnx_runtime_is_one_line(exported, tmp_path, capsys, monkeypatch):
    import adadiffsr.runtime.onnx_session as session

    monkeypatch.setattr(session, "onnx_available", lambda: False)
    _image().save(tmp_path / "in.png")
    _one_line_error(capsys, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--weights",
                             str(exported), "--runtime", "onnx"], 2, "ONNX Runtime, which is not installed")
    with pytest.raises(ConfigError, match="unknown runtime"):
        Upscaler.from_pretrained(exported, device="cpu", runtime="tensorrt")


def test_an_export_that_drifts_from_pytorch_is_not_written(tmp_path):
    weights = _model(tmp_path)
    with pytest.raises(WeightsError, match="differs from PyTorch"):
        export_onnx(Upscaler.from_pretrained(weights, device="cpu"), weights, PHOTO, tolerance=1e-12)
    assert not any(onnx_path(weights, kind).exists() for kind in KINDS)
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.suffix for p in tmp_path.iterdir()) == [".safetensors"] * 3


def test_the_bench_runs_onnx_and_torch_methods_side_by_side(exported):
    from adadiffsr.bench.methods import build_methods

    methods = build_methods(["grouped:timesteps=399/149/29", "grouped:timesteps=399/149/29,runtime=onnx"],
                            str(exported), "cpu", "fp32")
    assert [m.label for m in methods] == ["grouped-timesteps399+149+29", "grouped-timesteps399+149+29-runtimeonnx"]
    assert methods[0].upscaler.runtime == "torch" and methods[1].upscaler.runtime == "onnx"
    lr = torch.from_numpy(np.asarray(_image(), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    (a, nfe_a), (b, nfe_b) = methods[0](lr), methods[1](lr)
    assert nfe_a == nfe_b and (a - b).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="not Real-ESRGAN x4plus"):  # the peer row needs the real prior's export
        build_methods(["realesrgan:runtime=onnx"], str(exported), "cpu", "fp32")
    onnx_default = build_methods(["uniform:steps=1"], str(exported), "cpu", "fp32", runtime="onnx")[0]
    assert onnx_default.label == "uniform-steps1-onnx" and onnx_default.upscaler.runtime == "onnx"


def test_the_prior_follows_the_upscalers_dtype(tiny_prior):
    from adadiffsr.prior import load_prior

    x = torch.rand(1, 3, 20, 28) * 2 - 1
    prior = load_prior(tiny_prior)
    full = prior(x)
    prior.use_dtype(torch.bfloat16)
    half = prior(x)
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert 0 < (half - full).abs().max() < 0.05  # bf16 rounding: different, and close
    upscaler = Upscaler(tiny_refiner(), "cpu", dtype="bf16")
    assert upscaler.backbone.prior.dtype == torch.bfloat16
    assert upscaler.backbone.prior.network.conv_first.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_distilled_student_is_exported_and_runs_in_onnx_runtime(tmp_path, capsys):
    """A student beside the weights is exported too; ``--runtime onnx --policy distilled`` runs it from
    its export (same output as PyTorch), and without that export asking for the student is one line
    while the rest still runs."""
    from adadiffsr.backbones import student_path_for
    from adadiffsr.train.distill import student_from

    weights = _model(tmp_path)
    student = student_from(load_backbone(weights), 0.5)
    with torch.no_grad():
        student.unet.conv_out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    save_backbone(student, student_path_for(weights), metadata={"adadiffsr.student_timestep": "299"})
    assert main(["export", "onnx", "--weights", str(weights), "--image", str(PHOTO)]) == 0
    assert "wrote 5 ONNX files" in capsys.readouterr().err and onnx_path(weights, "student").is_file()
    image = _image()
    config = UpscaleConfig(policy="distilled", timesteps=(299, 49), seed=1)
    reference = Upscaler.from_pretrained(weights, device="cpu", dtype="fp32")(image, config)
    onnx = Upscaler.from_pretrained(weights, device="cpu", runtime="onnx")
    result = onnx(image, config)
    assert result.report["nfe_student"] == result.report["num_tiles"] > 0
    assert result.report["settings"]["files"]["onnx_student"] == str(onnx_path(weights, "student"))
    assert type(onnx.student).__name__ == "OnnxBackbone"
    assert np.abs(result.picture.rgb - reference.picture.rgb).max() < 1e-4
    zero = Upscaler.from_pretrained(weights, device="cpu", dtype="fp32")(image, UpscaleConfig(steps=0))
    assert np.abs(zero.picture.rgb - reference.picture.rgb).max() > 1e-3  # the student moved the prior's estimate
    onnx_path(weights, "student").unlink()
    image.save(tmp_path / "in.png")
    _one_line_error(capsys, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "s.png"), "--weights",
                             str(weights), "--runtime", "onnx", "--policy", "distilled"], 1, "no student export")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "r.png"), "--weights", str(weights),
                 "--runtime", "onnx", "-q"]) == 0
