"""The backbone training loop through the CLI: trains, logs, saves, resumes, exports loadable EMA weights."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from safetensors import safe_open

from adadiffsr.backbones import load_backbone
from adadiffsr.cli import main

SAMPLE = Path(__file__).parents[1] / "assets" / "coffee-lr.png"


def photos(root: Path) -> Path:
    image = Image.open(SAMPLE).convert("RGB")
    for split, box in (("train", (0, 0, 96, 80)), ("train", (50, 20, 150, 100)), ("val", (30, 30, 94, 94))):
        (root / split).mkdir(parents=True, exist_ok=True)
        image.crop(box).save(root / split / f"{box[0]}.png")
    return root


def test_train_resume_and_export(tmp_path, capsys):
    data, out = photos(tmp_path / "photos"), tmp_path / "run"
    args = ["train", "backbone", "--photos", data, "--out", out, "--batch-size", "2", "--crop", "32", "--workers", "0",
            "--val-every", "2", "--save-every", "2", "--device", "cpu", "--ema-decay", "0.9",
            "--model", json.dumps({"block_out_channels": [8, 16], "norm_num_groups": 4, "layers_per_block": 1})]
    assert main([str(a) for a in args + ["--steps", "2"]]) == 0
    assert main([str(a) for a in args + ["--steps", "4"]]) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "at step 2" in err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "psnr_y" in r] == [2, 4]
    with safe_open(str(out / "last.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "4"
        assert json.loads(f.metadata()["config"])["ema_decay"] == 0.9  # --ema-decay reaches the run's config
    model = load_backbone(out / "ema.safetensors")
    assert model.config.block_out_channels == (8, 16)


def test_bad_model_json_is_a_usage_error(tmp_path, capsys):
    code = main(["train", "backbone", "--photos", str(tmp_path), "--model", "{nope"])
    assert code == 2 and "--model" in capsys.readouterr().err


def test_missing_photos_say_how_to_get_them(tmp_path, capsys):
    code = main(["train", "backbone", "--photos", str(tmp_path / "none"), "--steps", "1", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "adadiffsr data photos" in err and err.count("\n") == 1


def test_the_texture_loss_compares_how_much_detail_not_where():
    """Two independent noise fields of one strength have the same detail energy, so the texture loss
    between them is small where L1 is large; a blurred image lacks detail and a descent step on the
    loss gives it more; a flat target penalises grain."""
    import torch
    import torch.nn.functional as F

    from adadiffsr.train.texture import detail_energy, texture_loss

    g = torch.Generator().manual_seed(0)
    a = (0.2 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    b = (0.2 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    flat = torch.zeros_like(a)
    assert detail_energy(a).shape == (2, 1, 4, 4) and float(detail_energy(flat).max()) < 1e-3
    assert float(texture_loss(a, a)) == 0.0
    assert float(texture_loss(a, b)) < 0.1 * float(texture_loss(flat, a))  # the phase does not count
    assert float(F.l1_loss(a, b)) > 0.1  # while L1 calls the two different
    blurred = F.avg_pool2d(F.pad(a, (2, 2, 2, 2), mode="replicate"), 5, stride=1).requires_grad_(True)
    before = float(detail_energy(blurred).mean())
    texture_loss(blurred, a).backward()
    with torch.no_grad():
        stepped = blurred - 10.0 * blurred.grad
    assert float(detail_energy(stepped).mean()) > before
    assert float(texture_loss(a, flat)) > 0.05  # grain where the target is smooth costs


def test_the_texture_loss_at_several_levels_sees_detail_coarser_than_a_pixel():
    """Two images with the same fine grain, one with detail at a 4-pixel scale (noise upsampled by 4)
    and one with it blurred away: the finest level's 3x3 high-pass sees mostly the grain, the coarser
    levels see the missing detail, so the three-level loss is larger and ``detail_ratio`` at level 2
    is lower than at level 0; impossible levels are refused."""
    import pytest
    import torch
    import torch.nn.functional as F

    from adadiffsr.train.texture import detail_ratio, texture_loss

    g = torch.Generator().manual_seed(0)
    coarse = F.interpolate(0.3 * torch.randn(2, 3, 16, 16, generator=g), scale_factor=4, mode="bilinear")
    smooth = F.avg_pool2d(F.pad(coarse, (4, 4, 4, 4), mode="replicate"), 9, stride=1)
    coarse, smooth = (x + 0.05 * torch.randn(x.shape, generator=g) for x in (coarse, smooth))
    one, three = float(texture_loss(smooth, coarse)), float(texture_loss(smooth, coarse, levels=3))
    assert three > 3 * one
    assert float(detail_ratio(smooth, coarse, level=2)) < 0.5 * float(detail_ratio(smooth, coarse, level=0))
    for levels in (0, 5):  # none, or a 16-pixel window halved to 1 pixel
        with pytest.raises(ValueError, match="level"):
            texture_loss(smooth, coarse, levels=levels)


def test_training_log_fails_at_the_first_loss_that_is_not_finite(tmp_path):
    """A diverged loss ends the run at its step, even when that step closes a window (the old log reset
    its window there and let the run end as if it had converged)."""
    import math

    import pytest

    from adadiffsr.train.log import TrainingLog

    lines: list[str] = []
    run_log = TrainingLog(tmp_path, steps=4, every=2, echo=lines.append)
    assert run_log.losses(1, {"loss": 1.0, "d": 3.0}) == {"loss": 1.0, "d": 3.0}
    assert run_log.losses(2, {"loss": 2.0, "d": 5.0}) == {"loss": 1.5, "d": 4.0}  # a record: steps 1-2
    run_log.loss(3, 1.0)
    with pytest.raises(FloatingPointError, match=r"at step 4 \(loss not finite\)"):
        run_log.loss(4, math.nan)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2] and records[0]["loss"] == 1.5
    assert lines == ["step 2/4 loss 1.50000 d 4.00000 (0.0 min)"]
