"""``adadiffsr bench`` through the CLI on tiny images and a tiny backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from adadiffsr.backbones import save_backbone
from adadiffsr.bench.methods import parse_spec, split_methods
from adadiffsr.cli import main
from adadiffsr.errors import ConfigError

from .conftest import tiny_compact

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def folders(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir(), lr.mkdir()
    for name, path in (("cat", "chelsea-288.png"), ("cup", "coffee-288x192.png")):
        image = Image.open(FIXTURES / path).convert("RGB").crop((0, 0, 192, 192))
        image.save(hr / f"{name}.png")
        image.resize((48, 48), Image.Resampling.BICUBIC).save(lr / f"{name}.png")
    weights = tmp_path / "tiny.safetensors"
    save_backbone(tiny_compact(), weights)
    return hr, lr, weights


def test_bench_writes_results_table_plot_and_sheets(folders, tmp_path, capsys):
    hr, lr, weights = folders
    out = tmp_path / "out"
    code = main(["bench", "--hr", str(hr), "--lr", str(lr), "--methods", "bicubic,uniform:interval=250,tile=16,uniform:interval=500",
                 "--weights", str(weights), "--out", str(out), "--save-images", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["bicubic", "uniform-interval250-tile16", "uniform-interval500"]
    assert len(results["rows"]) == 2 * 3
    by = {(r["image"], r["method"]): r for r in results["rows"]}
    assert by[("cat", "bicubic")]["nfe"] == 0
    assert by[("cat", "uniform-interval250-tile16")]["nfe"] == 4 * 16  # 4x4 tiles of 16 (overlap 4) over 48, 4 steps
    assert by[("cat", "uniform-interval500")]["nfe"] == 2 * 16  # the tiny model's native tile is 16 too
    assert all(r["psnr"] > 15 and 0 < r["ssim"] <= 1 and r["niqe"] > 0 for r in results["rows"])
    assert results["median"]["uniform-interval500"]["nfe"] == 32
    assert "| bicubic |" in (out / "results.md").read_text() and "| bicubic |" in captured.out
    # paired against the first method: the median of per-image differences, and the wins, from the rows
    paired = results["paired"]
    assert paired["reference"] == "bicubic" and set(paired["methods"]) == {"uniform-interval250-tile16", "uniform-interval500"}
    for label, entry in paired["methods"].items():
        diffs = sorted(by[(i, label)]["psnr"] - by[(i, "bicubic")]["psnr"] for i in ("cat", "cup"))
        assert entry["psnr"]["median_difference"] == pytest.approx(sum(diffs) / 2)
        assert entry["niqe"]["better_on"] == sum(by[(i, label)]["niqe"] < by[(i, "bicubic")]["niqe"] for i in ("cat", "cup"))
        assert entry["psnr"]["images"] == 2
        ratios = sorted(by[(i, label)]["seconds"] / by[(i, "bicubic")]["seconds"] for i in ("cat", "cup"))
        assert entry["seconds"]["median_ratio"] == pytest.approx(sum(ratios) / 2)
    assert "Against bicubic, image by image" in (out / "results.md").read_text()
    assert Image.open(out / "pareto.png").size[0] > 300
    assert Image.open(out / "images" / "uniform-interval500" / "cup.png").size == (192, 192)
    assert (out / "sheets" / "cat.png").is_file()


def test_bench_degrade_realesrgan_and_crop(folders, tmp_path, capsys):
    hr, _, weights = folders
    out = tmp_path / "out"
    code = main(["bench", "--hr", str(hr), "--degrade", "realesrgan-x4", "--seed", "1", "--crop", "96", "--limit", "1",
                 "--methods", "bicubic", "--metrics", "psnr,gmsd,detail_1,detail_4", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["image"] == "cat" and set(rows[0]) >= {"psnr", "gmsd", "seconds", "peak_mb"}
    assert 0 < rows[0]["detail_1"] < rows[0]["detail_4"] < 1  # bicubic loses the finest detail most


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "bicubc"], "unknown method"),
        (["--methods", "uniform:stepz=5"], "unknown setting"),
        (["--metrics", "psnr,lpips"], "weights"),
        (["--metrics", "nique"], "did you mean"),
    ],
)
def test_bench_errors_are_one_line(folders, tmp_path, capsys, args, message):
    hr, lr, weights = folders
    code = main(["bench", "--hr", str(hr), "--lr", str(lr), "--weights", str(weights), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_bench_needs_exactly_one_input_source(folders, tmp_path, capsys):
    hr, lr, _ = folders
    assert main(["bench", "--hr", str(hr), "--out", str(tmp_path / "o")]) == 2
    assert main(["bench", "--hr", str(hr), "--lr", str(lr), "--degrade", "bicubic-x4", "--out", str(tmp_path / "o")]) == 2


def test_method_specs():
    assert split_methods("bicubic,uniform:interval=5,rule=ddpm,realesrgan") == [
        "bicubic", "uniform:interval=5,rule=ddpm", "realesrgan"]
    assert parse_spec("uniform:interval=5,batch-tiles=4") == ("uniform", {"interval": "5", "batch_tiles": "4"})
    with pytest.raises(ConfigError):
        parse_spec("uniform:interval")


def test_the_real_esrgan_peer_runs_in_the_dtype_auto_picks():
    from adadiffsr.bench.methods import build_methods
    from adadiffsr.devices import cpu_runs_bf16

    (auto,) = build_methods(["realesrgan"], None, "cpu", "auto")
    expected = "bf16" if cpu_runs_bf16() else "fp32"
    assert auto.label == f"realesrgan-{expected}" and auto.model.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[expected]
    (fp32,) = build_methods(["realesrgan:dtype=fp32"], None, "cpu", "auto")
    assert fp32.label == "realesrgan-fp32" and fp32.model.runtime == "torch"
    with pytest.raises(ConfigError):
        build_methods(["realesrgan:runtime=ncnn,dtype=bf16"], None, "cpu", "auto")


def test_a_method_with_a_list_setting_is_labelled_without_a_slash(folders):
    """A label names the folder of a method's saved images: ``intervals=250/500`` must not nest folders."""
    from adadiffsr.bench.methods import build_methods

    (method,) = build_methods(["adaptive:intervals=250/500"], str(folders[2]), "cpu", "fp32")
    assert method.label == "adaptive-intervals250+500" and "/" not in method.label


def test_a_method_can_run_a_candidate_model_beside_the_main_one(folders, tmp_path, capsys):
    """``weights=FILE`` in a method: that model runs it (labelled by its folder), the others run ``--weights``."""
    hr, lr, weights = folders
    candidate = tmp_path / "candidate" / "tiny.safetensors"
    candidate.parent.mkdir()
    torch.manual_seed(3)
    other = tiny_compact()
    with torch.no_grad():
        other.unet.conv_out.weight.normal_(0, 0.05)  # a model that does something else
    save_backbone(other, candidate)
    out = tmp_path / "out"
    code = main(["bench", "--hr", str(hr), "--lr", str(lr), "--methods",
                 f"uniform:interval=500,uniform:interval=500,weights={candidate}", "--metrics", "psnr",
                 "--weights", str(weights), "--out", str(out), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["uniform-interval500", "uniform-interval500-weightscandidate"]
    by = {(r["image"], r["method"]): r["psnr"] for r in results["rows"]}
    assert by[("cat", "uniform-interval500")] != by[("cat", "uniform-interval500-weightscandidate")]
