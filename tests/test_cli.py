"""The command line through its public entry point: outputs, report, step map, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from adadiffsr.backbones import save_backbone
from adadiffsr.cli import main

from .conftest import tiny_compact


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_backbone(tiny_compact(), path)
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.open(Path(__file__).parents[1] / "assets" / "coffee-lr.png").crop((40, 30, 77, 53)).save(path)
    return path


def run(capsys, *args: str) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_upscale_writes_image_report_and_step_map(capsys, tmp_path, photo, weights):
    out, report, steps = tmp_path / "out.png", tmp_path / "r.json", tmp_path / "steps.png"
    code, err = run(
        capsys, "upscale", photo, "-o", out, "--weights", weights, "--steps", "4", "--tile", "16",
        "--report", report, "--step-map", steps, "--batch-tiles", "3",
    )
    assert code == 0, err
    assert Image.open(out).size == (37 * 4, 23 * 4)
    r = json.loads(report.read_text())
    assert r["nfe"] == r["nfe_uniform"] == 4 * r["num_tiles"]
    assert set(r["seconds"]) >= {"backbone", "gain", "fusion", "total"}
    assert len(r["tiles"]) == r["num_tiles"] and all(t["steps"] == 4 for t in r["tiles"])
    assert r["tiles"][-1]["box"][0] + r["tiles"][-1]["box"][2] == 37
    assert Image.open(steps).mode == "RGB"
    assert "NFE" in err  # progress bar on stderr


def test_adaptive_is_the_default_and_steps_alone_mean_uniform(capsys, tmp_path, photo, weights):
    """No --gain given: auto, which for the adaptive policy without a regressor file runs the exact
    metrics, and the report says so (it said "none" once)."""
    reports = {}
    for name, extra in (("default", []), ("steps", ["--steps", "4"]), ("old-gain", ["--gain", "none"])):
        code, err = run(capsys, "upscale", photo, "-o", tmp_path / f"{name}.png", "--weights", weights, "--tile", "16",
                        "--report", tmp_path / f"{name}.json", *extra)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert "computed the metrics themselves" in err  # the note on the missing regressor
    assert reports["default"]["settings"]["policy"] == "adaptive" and reports["default"]["settings"]["gain"] == "exact"
    assert reports["default"]["intervals"] == [20, 50, 100] and reports["default"]["settings"]["fr_change"] == "any"
    assert reports["steps"]["settings"]["policy"] == "uniform" and reports["steps"]["nfe"] == 4 * reports["steps"]["num_tiles"]
    assert reports["steps"]["settings"]["gain"] == "none"  # uniform sampling needs no gain: none ran
    assert reports["old-gain"]["settings"]["gain"] == "exact" and reports["old-gain"]["nfe"] == reports["default"]["nfe"]
    # --steps with an explicit policy is refused in one line instead of being dropped, in both spellings
    for flag in ("--policy", "--sampler"):
        code, err = run(capsys, "upscale", photo, "-o", tmp_path / "both.png", "--weights", weights, "--steps", "4",
                        flag, "adaptive")
        assert code == 2 and "pace of the uniform policy" in err.splitlines()[-1] and err.count("error:") == 1
        assert "Traceback" not in err
    assert not (tmp_path / "both.png").exists()


def test_adaptive_without_a_regressor_warns_that_it_computes_the_metrics(capsys, tmp_path, photo, weights):
    code, err = run(capsys, "upscale", photo, "-o", tmp_path / "o.png", "--weights", weights, "--tile", "16",
                    "--intervals", "250,500")
    assert code == 0 and "no gain regressor" in err
    code, err = run(capsys, "upscale", photo, "-o", tmp_path / "o.png", "--weights", weights, "--steps", "2", "--force")
    assert code == 0 and "no gain regressor" not in err  # uniform sampling needs no gain


def test_fidelity_without_a_pfj_file_warns(capsys, tmp_path, photo, weights):
    code, err = run(capsys, "upscale", photo, "-o", tmp_path / "o.png", "--weights", weights, "--steps", "2",
                    "--fidelity", "0.5", "-q")
    assert code == 0 and "--fidelity has no effect" in err


def test_scale_option_resizes_and_quiet_is_silent(capsys, tmp_path, photo, weights):
    out = tmp_path / "out.jpg"
    code, err = run(capsys, "upscale", photo, "-o", out, "--weights", weights, "--steps", "2", "--scale", "2", "-q")
    assert code == 0 and err == ""
    assert Image.open(out).size == (74, 46)


def test_same_seed_same_bytes(capsys, tmp_path, photo, weights):
    outs = []
    for name in ("a.png", "b.png"):
        assert run(capsys, "upscale", photo, "-o", tmp_path / name, "--weights", weights, "--steps", "3",
                   "--scheduler", "ddpm", "--seed", "3", "-q")[0] == 0
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--tile", "abc"], 2, "--tile"),
        (["--interval", "5", "--steps", "10"], 2, "not both"),
        (["--device", "tpu"], 2, "--device"),
        (["--tile", "7"], 2, "multiple of 2"),
        (["--color-fix", "sepia"], 2, "--color-fix"),
    ],
)
def test_bad_flags_give_one_line(capsys, tmp_path, photo, weights, args, code, message):
    out = tmp_path / "out.png"
    got, err = run(capsys, "upscale", photo, "-o", out, "--weights", weights, *args)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not out.exists()


def test_bad_inputs_and_weights_give_one_line(capsys, tmp_path, photo, weights):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(photo.read_bytes()[:300])
    (tmp_path / "empty").mkdir()
    bad_weights = tmp_path / "bad.safetensors"
    bad_weights.write_bytes(b"not safetensors at all")
    cases = [
        ([tmp_path / "missing.png"], "input not found"),
        ([garbage], "not a readable image"),
        ([truncated], "truncated"),
        ([tmp_path / "empty"], "no image files"),
        ([photo, "--weights", tmp_path / "none.safetensors"], "weights file not found"),
        ([photo, "--weights", bad_weights], "not a valid safetensors"),
        ([photo, "--weights", photo], "not a valid safetensors"),
    ]
    for extra, message in cases:
        args = [extra[0], "-o", tmp_path / "out.png", *(extra[1:] or ["--weights", weights])]
        code, err = run(capsys, "upscale", *args)
        assert code == 1, (extra, err)
        assert err.count("\n") == 1 and message in err, (extra, err)
        assert not (tmp_path / "out.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_refuses_to_overwrite_the_input(capsys, photo, weights):
    before = photo.read_bytes()
    code, err = run(capsys, "upscale", photo, "-o", photo, "--weights", weights)
    assert code == 1 and "is the input" in err
    assert photo.read_bytes() == before


def test_bad_output_location(capsys, tmp_path, photo, weights):
    code, err = run(capsys, "upscale", photo, "-o", tmp_path / "nope" / "out.png", "--weights", weights)
    assert code == 1 and "does not exist" in err
    code, err = run(capsys, "upscale", photo, "-o", tmp_path / "out.gifx", "--weights", weights)
    assert code == 1 and "unknown output format" in err


def test_console_script_runs(tmp_path, photo, weights):
    """The installed ``adadiffsr`` entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("adadiffsr")
    out = tmp_path / "o.png"
    proc = subprocess.run(
        [str(exe), "upscale", str(photo), "-o", str(out), "--weights", str(weights), "--steps", "2", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (148, 92)
    proc = subprocess.run([str(exe), "upscale", "missing.png", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_an_old_spelling_runs_with_one_warning_line_that_names_its_last_release(tmp_path, photo, weights):
    """``--sampler`` and ``--gain none`` still work until 0.3: one ``warning:`` line each, no traceback;
    given together with a disagreeing ``--policy``, one error line."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "adadiffsr", "upscale", str(photo), "-o", str(tmp_path / "o.png"), "--weights",
               str(weights), "--tile", "16", "--sampler", "uniform", "--interval", "500", "--gain", "none", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "warning: --sampler is the old spelling of --policy and goes in adadiffsr 0.3" in lines
    assert "warning: gain='none' is the old spelling of gain='auto' and goes in adadiffsr 0.3" in lines
    assert len(lines) == 2 and (tmp_path / "o.png").is_file()
    done = subprocess.run([*command, "--policy", "adaptive"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "disagree" in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr
