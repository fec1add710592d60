"""Many processes over one folder: the split, and 2 ranks under torchrun (gloo, CPU) giving the same
files as one process, with a rerun that redoes only what a lost rank did not write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from adadiffsr.backbones import save_backbone
from adadiffsr.distributed import Rank, current_rank, shard

from .conftest import tiny_compact

PHOTO = Path(__file__).parents[1] / "assets" / "coffee-lr.png"


def test_rank_from_the_launchers_environment_and_the_split():
    assert current_rank({}) == Rank(0, 1, 0, 1)
    rank = current_rank({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert rank == Rank(1, 2, 1, 2) and rank.distributed and not rank.is_main
    assert shard(list(range(7)), rank) == [1, 3, 5]
    assert shard(list(range(7)), Rank(0, 2, 0, 2)) == [0, 2, 4, 6]
    with pytest.raises(RuntimeError, match="RANK=2"):
        current_rank({"RANK": "2", "WORLD_SIZE": "2"})


def _upscale(args: list[str], cwd: Path, nproc: int | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"  # one thread per process on both sides, so the arithmetic is the same
    if nproc is None:
        command = [sys.executable, "-m", "adadiffsr", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "adadiffsr", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_two_ranks_write_the_same_files_as_one_and_a_rerun_redoes_a_lost_ranks_files(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    save_backbone(tiny_compact(), weights)
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = Image.open(PHOTO).convert("RGB")
    for k in range(5):
        photo.crop((10 * k, 5 * k, 10 * k + 24, 5 * k + 20)).save(inputs / f"p{k}.png")
    common = ["upscale", str(inputs), "--weights", str(weights), "--policy", "uniform", "--interval", "250",
              "--device", "cpu", "-q"]
    one = _upscale([*common, "-o", str(tmp_path / "one")], tmp_path, None)
    assert one.returncode == 0, one.stderr
    two = _upscale([*common[:-1], "-o", str(tmp_path / "two")], tmp_path, 2)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("5 upscaled, 0 skipped, 0 failed, of 5 (2 processes)") == 1  # rank 0 only
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == [f"p{k}.png" for k in range(5)] == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    # rank 1 had p1 and p3; as if it was killed before writing them, a rerun redoes exactly those
    for name in ("p1.png", "p3.png"):
        (tmp_path / "two" / name).unlink()
    again = _upscale([*common[:-1], "-o", str(tmp_path / "two"), "--skip-existing"], tmp_path, 2)
    assert again.returncode == 0, again.stderr
    assert "2 upscaled, 3 skipped, 0 failed, of 5 (2 processes)" in again.stderr
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
