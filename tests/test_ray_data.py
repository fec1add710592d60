"""The Ray Data recipe on a local Ray with 2 CPU workers: the same files as the CLI, byte for byte,
subfolders kept, a bad file one line in its row, a rerun skipping what is written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adadiffsr import UpscaleConfig
from adadiffsr.cli import main

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray and two workers: 53 s on this idle 2-core machine, 7 min while it trained

ROOT = Path(__file__).parents[1]
WEIGHTS = ROOT / "weights" / "compact-x4.safetensors"  # no prior: a worker process needs nothing registered


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _photos(folder: Path) -> None:
    source = Image.open(ROOT / "assets" / "coffee-lr.png").convert("RGB")
    (folder / "sub").mkdir(parents=True)
    for k, name in enumerate(("a.png", "b.png", "sub/c.png")):
        source.crop((8 * k, 4 * k, 8 * k + 24, 4 * k + 16)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a picture")


def test_ray_workers_write_what_the_cli_writes_and_a_rerun_skips(tmp_path, local_ray):
    from adadiffsr.ray_data import upscale_with_ray

    _photos(tmp_path / "in")
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "cli"), "--weights", str(WEIGHTS),
                 "--steps", "2", "-q"]) == 1  # the broken file fails, the others are written
    config = UpscaleConfig(steps=2)
    # fp32 as the in-process CLI runs here (the suite pins --dtype auto to fp32; Ray's workers do not see the pin)
    rows = upscale_with_ray([str(tmp_path / "in")], str(tmp_path / "ray"), concurrency=2, weights=str(WEIGHTS),
                            device="cpu", dtype="fp32", config=config)
    status = {Path(str(r["input"])).name: str(r["status"]) for r in rows}
    assert status == {"a.png": "upscaled", "b.png": "upscaled", "c.png": "upscaled", "broken.png": "failed"}
    broken = next(str(r["message"]) for r in rows if str(r["status"]) == "failed")
    assert "broken.png" in broken and "\n" not in broken and "Traceback" not in broken
    for name in ("a.png", "b.png", "sub/c.png"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert not (tmp_path / "ray" / "broken.png").exists()
    (tmp_path / "ray" / "b.png").unlink()  # as if a worker was killed before writing it
    again = upscale_with_ray([str(tmp_path / "in")], str(tmp_path / "ray"), concurrency=2, weights=str(WEIGHTS),
                             device="cpu", dtype="fp32", config=config)
    status = {Path(str(r["input"])).name: str(r["status"]) for r in again}
    assert status == {"a.png": "skipped", "b.png": "upscaled", "c.png": "skipped", "broken.png": "failed"}
    assert (tmp_path / "ray" / "b.png").read_bytes() == (tmp_path / "cli" / "b.png").read_bytes()
    assert np.asarray(Image.open(tmp_path / "ray" / "a.png")).shape == (64, 96, 3)


def test_the_example_script_runs_and_exits_1_on_a_failed_file(tmp_path):
    _photos(tmp_path / "in")
    shutil.rmtree(tmp_path / "in" / "sub")
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "ray_data_upscale.py"), str(tmp_path / "in"),
                          "-o", str(tmp_path / "out"), "--workers", "2", "--weights", str(WEIGHTS), "--steps", "1"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "2 upscaled, 0 skipped, 1 failed, of 3" in run.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
