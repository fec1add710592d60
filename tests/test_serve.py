"""The web page's jobs and presets, without a browser: tiny seeded refiner over a tiny prior."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

from adadiffsr.api import UpscaleConfig, Upscaler
from adadiffsr.serve.jobs import JobCancelled, JobTimedOut, Workspace, describe, upscale_uploads, zip_outputs
from adadiffsr.serve.presets import preset_config, scale_walk

from .conftest import tiny_refiner

PHOTO = Path(__file__).parents[1] / "assets" / "coffee-lr.png"
SHIPPED_LIKE = {"policy": "timesteps", "timesteps": [399, 149, 29], "rule": "ddpm"}


pytestmark = pytest.mark.usefixtures("tiny_prior")


@pytest.fixture
def upscaler() -> Upscaler:
    """A refiner shipped like the default model (a fixed walk from 399, ddpm), with a live output layer."""
    return Upscaler(tiny_refiner(live=True, sampling=SHIPPED_LIKE, default_strength=0.4), "cpu")


def _photo(tmp_path: Path, name: str = "photo.png", size: tuple[int, int] = (40, 24)) -> Path:
    path = tmp_path / name
    Image.open(PHOTO).convert("RGB").crop((30, 20, 30 + size[0], 20 + size[1])).save(path)
    return path


def test_scale_walk_keeps_a_falling_walk_in_range():
    assert scale_walk((399, 149, 29), 1.0, 1000) == (399, 149, 29)
    assert scale_walk((399, 149, 29), 0.6, 1000) == (239, 89, 17)
    assert scale_walk((399, 149, 29), 1.5, 1000) == (599, 224, 44)
    assert scale_walk((999, 998, 500), 1.5, 1000) == (999, 998, 751)
    assert scale_walk((2, 1, 0), 0.3, 1000) == (0,)


def test_presets_move_the_start_and_the_step_count(upscaler):
    image = Image.open(PHOTO).convert("RGB").crop((0, 0, 40, 24))
    balanced = preset_config(upscaler, "balanced", "standard")
    assert upscaler.resolve(balanced).sampling.timesteps == (399, 149, 29)
    assert preset_config(upscaler, "faithful", "standard").sampling.timesteps == (239, 89, 17)
    detailed = preset_config(upscaler, "detailed", "standard")
    assert detailed.sampling.timesteps == (399, 149, 29) and detailed.sampling.rule == "ddim" and detailed.fidelity == 0
    default = upscaler(image, UpscaleConfig())
    same = upscaler(image, balanced)
    assert np.array_equal(default.picture.rgb, same.picture.rgb)  # the default preset is the model's default
    fast = upscaler(image, preset_config(upscaler, "balanced", "fast"))
    assert fast.report["nfe"] == 0
    thorough = upscaler(image, preset_config(upscaler, "faithful", "thorough"))
    assert {t["steps"] for t in thorough.report["tiles"]} == {6}  # twice the model's three steps
    assert thorough.report["settings"]["strength"] == pytest.approx(0.24)
    assert thorough.report["settings"]["rule"] == "ddpm"  # the model's
    with pytest.raises(ValueError, match="unknown look"):
        preset_config(upscaler, "sharp", "standard")


def test_the_quick_speed_runs_the_student_where_the_plan_steps_and_only_for_models_with_one(upscaler):
    from adadiffsr.serve.presets import speeds_for

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8))  # textured: every tile steps
    assert "quick" not in speeds_for(upscaler)
    with pytest.raises(ValueError, match="no distilled student"):
        preset_config(upscaler, "balanced", "quick")
    teacher = tiny_refiner(live=True, sampling=SHIPPED_LIKE, default_strength=0.4)
    student = tiny_refiner(live=True, sampling=SHIPPED_LIKE, default_strength=0.4)
    with torch.no_grad():
        student.unet.conv_out.weight.mul_(-1)  # not the teacher
    with_student = Upscaler(teacher, "cpu", student=student)
    assert list(speeds_for(with_student)) == ["fast", "quick", "standard", "thorough"]
    for look in ("balanced", "faithful"):  # the look's start does not move the student's
        report = with_student(image, preset_config(with_student, look, "quick")).report
        assert report["settings"]["policy"] == "grouped" and report["settings"]["student"] is True
        assert report["nfe_student"] == report["student_tiles"] == report["nfe"] > 0
        assert {t["network"] for t in report["tiles"]} <= {"student", "prior"}


def test_a_job_upscales_good_files_and_names_the_bad_ones(upscaler, tmp_path):
    good = _photo(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:100])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    large = _photo(tmp_path, "large.png", (80, 60))
    folder = tmp_path / "job"
    folder.mkdir()
    seen: list[float] = []
    uploads = [(p.name, p) for p in (good, broken, empty, text, large)]
    outcomes = upscale_uploads(upscaler, uploads, UpscaleConfig(), folder, max_pixels=3000,
                               progress=lambda done, what: seen.append(done))
    assert [o.output is not None for o in outcomes] == [True, False, False, False, False]
    assert Image.open(outcomes[0].output).size == (160, 96)
    errors = [o.error for o in outcomes[1:]]
    assert "broken.png: corrupt or truncated image" in errors[0]
    assert errors[1] == "empty.jpg is empty"
    assert errors[2].startswith("notes.txt is not an image file")
    assert errors[3] == "large.png: 80x60 is more than the 3000-pixel limit"
    assert all("\n" not in e and str(tmp_path) not in e for e in errors)  # one sentence, no temporary paths
    assert seen == sorted(seen) and seen[-1] == 1.0
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["photo_x4-after.png", "photo_x4-before.png", "photo_x4-steps.png", "photo_x4.json",
                       "photo_x4.png"]
    before, after = Image.open(outcomes[0].before), Image.open(outcomes[0].after)
    assert before.size == after.size == (160, 96)  # the comparison at the same zoom
    assert "40x24 -> 160x96" in outcomes[0].summary and "18 tile evaluations over 6 tiles" in outcomes[0].summary


def test_a_failure_inside_the_model_is_one_sentence(upscaler, tmp_path, monkeypatch):
    def broken_sampler(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    monkeypatch.setattr(upscaler, "_sample", broken_sampler)
    good = _photo(tmp_path)
    folder = tmp_path / "job"
    folder.mkdir()
    [outcome] = upscale_uploads(upscaler, [("photo.png", good)], UpscaleConfig(), folder)
    assert outcome.error == ("photo.png: the upscale failed inside the model (RuntimeError: CUDA error: an illegal "
                             "memory access was encountered)")
    assert list(folder.iterdir()) == []


def test_a_cancelled_job_stops_at_the_next_step_and_leaves_no_output(upscaler, tmp_path):
    good = _photo(tmp_path)
    folder = tmp_path / "job"
    folder.mkdir()
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2  # the job starts, then the tab closes

    with pytest.raises(JobCancelled):
        upscale_uploads(upscaler, [("a.png", good), ("b.png", good)], UpscaleConfig(), folder, cancelled=cancelled)
    assert list(folder.iterdir()) == []


def test_a_job_past_its_time_limit_stops_with_a_plain_message_and_leaves_no_output(upscaler, tmp_path, monkeypatch):
    """The page's per-job time limit: the first file finishes, the clock passes the limit during the
    second file's sampling, the job stops there with one sentence and the finished file is removed too."""
    import adadiffsr.serve.jobs as jobs

    good = _photo(tmp_path)
    folder = tmp_path / "job"
    folder.mkdir()
    clock = {"now": 0.0}
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock["now"])
    done: list[str] = []

    def progress(fraction: float, what: str) -> None:
        done.append(what)
        if what.startswith("b.png"):  # the second file is under way: 11 s have passed
            clock["now"] = 11.0

    with pytest.raises(JobTimedOut, match=r"longer than this page allows \(10 s\)"):
        upscale_uploads(upscaler, [("a.png", good), ("b.png", good)], UpscaleConfig(), folder, progress=progress,
                        time_limit=10)
    assert any(w.startswith("b.png") for w in done)
    assert list(folder.iterdir()) == []
    assert issubclass(JobTimedOut, JobCancelled)
    clock["now"] = 0.0
    outcomes = upscale_uploads(upscaler, [("a.png", good)], UpscaleConfig(), folder, time_limit=10)
    assert outcomes[0].output is not None and outcomes[0].output.is_file()


def test_sixteen_bit_and_alpha_survive_a_job(upscaler, tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65535, (12, 16, 4), dtype=np.uint16)
    path = tmp_path / "deep.png"
    with open(path, "wb") as f:
        png.Writer(16, 12, greyscale=False, alpha=True, bitdepth=16).write(f, data.reshape(12, -1))
    folder = tmp_path / "job"
    folder.mkdir()
    [outcome] = upscale_uploads(upscaler, [("deep.png", path)], UpscaleConfig(), folder)
    assert outcome.error is None
    width, height, _, info = png.Reader(filename=str(outcome.output)).read()
    assert (width, height) == (64, 48) and info["bitdepth"] == 16 and info["alpha"]


def test_zip_holds_every_output_and_describe_names_the_costs(upscaler, tmp_path):
    a, b = _photo(tmp_path, "a.png"), _photo(tmp_path, "b.png", (24, 24))
    folder = tmp_path / "job"
    folder.mkdir()
    outcomes = upscale_uploads(upscaler, [("a.png", a), ("b.png", b), ("a.png", a)], UpscaleConfig(), folder)
    archive = zip_outputs(outcomes, folder / "all.zip")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["a_x4-2.png", "a_x4.png", "b_x4.png"]  # the same name twice is kept apart
        assert Image.open(z.open("b_x4.png")).size == (96, 96)
    text = describe(outcomes[1].report)
    assert text.startswith("24x24 -> 96x96 in ") and "the prior (tiny-test" in text
    assert "walk 399 -> 149 -> 29" in text
    flat = Image.new("RGB", (48, 24), (120, 120, 120))  # no texture at all: the grouped sampler skips it
    flat.save(tmp_path / "flat.png")
    grouped = upscale_uploads(upscaler, [("flat.png", tmp_path / "flat.png")], UpscaleConfig(policy="grouped"),
                              folder)[0].report
    words = describe(grouped)
    assert grouped["nfe"] == 0 and "all flat, each kept the prior's estimate" in words
    half = np.full((24, 48, 3), 120, dtype=np.uint8)
    half[:, 24:] = np.random.default_rng(0).integers(0, 256, (24, 24, 3))  # texture on the right only
    Image.fromarray(half).save(tmp_path / "half.png")
    mixed = upscale_uploads(upscaler, [("half.png", tmp_path / "half.png")],
                            UpscaleConfig(policy="grouped", thresholds=(0.001, 0.002, 0.003)), folder)[0].report
    skipped = sum(1 for tile in mixed["tiles"] if tile["steps"] == 0)
    assert 0 < skipped < mixed["num_tiles"] and f"{skipped} flat tile" in describe(mixed)


def test_workspace_is_private_and_removed(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    one, two = workspace.job_folder("session/../x"), workspace.job_folder("session/../x")
    assert one != two and one.parent == two.parent and one.parent.parent == tmp_path / "ws" / "results"
    (one / "f.png").write_bytes(b"x")
    workspace.drop_session("session/../x")
    assert not one.exists()
    workspace.close()
    assert not (tmp_path / "ws").exists()


def test_with_a_pfj_for_the_student_a_look_moves_pfj_not_the_start():
    """The shipped model's case: its default runs the student, and its PFJ was trained for the student's
    step; Faithful then keeps the walk (so the student still runs) and sets PFJ to 1, Detailed to 0."""
    from adadiffsr.pfj import FeatureInjection, PFJConfig

    teacher = tiny_refiner(live=True, sampling={**SHIPPED_LIKE, "policy": "grouped"}, default_strength=0.4)
    channels = teacher.condition(torch.zeros(1, 3, 8, 8)).shape[1]
    pfj = FeatureInjection(PFJConfig(in_channels=channels, width=4, student=True))
    model = Upscaler(teacher, "cpu", pfj=pfj, student=tiny_refiner(live=True, sampling=SHIPPED_LIKE, default_strength=0.4))
    faithful, detailed = (model.resolve(preset_config(model, look, "standard")) for look in ("faithful", "detailed"))
    assert faithful.sampling.timesteps == (399, 149, 29) and faithful.student and faithful.fidelity == 1.0
    assert detailed.student and detailed.fidelity == 0.0
    assert model.injection(faithful) is not None and model.injection(detailed) is None
    thorough = model.resolve(preset_config(model, "faithful", "thorough"))  # no student there: the look's start
    assert thorough.sampling.strength == pytest.approx(0.24)


def test_serve_refuses_a_bad_login_before_loading_and_the_page_limit_is_below_the_cli_s(capsys):
    """--auth takes USER:PASSWORD (Gradio's login); the page refuses inputs the CLI would take."""
    from adadiffsr.cli import main
    from adadiffsr.io import MAX_INPUT_PIXELS
    from adadiffsr.serve.settings import PAGE_MAX_PIXELS, ServeSettings

    assert main(["serve", "--auth", "nocolon", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "USER:PASSWORD" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert ServeSettings().max_pixels == PAGE_MAX_PIXELS < MAX_INPUT_PIXELS
    assert ServeSettings().auth == () and ServeSettings().job_seconds is not None
