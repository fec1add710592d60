"""LPIPS from local weights: found by name, loaded from torchvision/lpips layouts, laws of a distance."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.metrics.lpips import LPIPS, load_lpips
from adadiffsr.metrics.registry import available, create_metric


def _write_weights(folder, fmt: str = "pth") -> None:
    """Random weights in the two published layouts: torchvision's VGG16 and lpips' v0.1 linear layers."""
    torch.manual_seed(0)
    model = LPIPS()
    vgg = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files hold the classifier too: ignored
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    if fmt == "pth":
        torch.save(vgg, folder / "vgg16-397923af.pth")
        torch.save(lins, folder / "lpips-vgg-v0.1.pth")
    else:
        save_file(vgg, str(folder / "vgg16-397923af.safetensors"))
        save_file(lins, str(folder / "lpips-vgg-v0.1.safetensors"))


def test_missing_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    assert "lpips" not in available()
    with pytest.raises(ConfigError, match="vgg16-397923af.*lpips-vgg-v0.1"):
        create_metric("lpips")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_lpips_is_a_distance_on_local_weights(tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    _write_weights(tmp_path, fmt)
    assert "lpips" in available()
    spec = create_metric("lpips")
    assert spec.full_reference and spec.lower_is_better
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 48, 48, generator=g)
    y = (x + 0.2 * torch.randn(2, 3, 48, 48, generator=g)).clamp(0, 1)
    same = spec.fn(x, x)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    d = spec.fn(x, y)
    assert bool((d > 0).all()) and torch.allclose(d, spec.fn(y, x), atol=1e-6)  # symmetric
    stored = (torch.load(tmp_path / "lpips-vgg-v0.1.pth") if fmt == "pth"
              else load_file(str(tmp_path / "lpips-vgg-v0.1.safetensors")))
    assert torch.equal(load_lpips().lins[4].weight, stored["lin4.model.1.weight"])  # keys mapped onto ours


def test_wrong_or_corrupt_weights_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    _write_weights(tmp_path)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "vgg16-397923af.pth")
    with pytest.raises(WeightsError, match="does not fit"):
        load_lpips()
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        load_lpips()


def test_dists_is_a_distance_on_local_weights(tmp_path, monkeypatch):
    from adadiffsr.metrics.dists import STAGE_CHANNELS, load_dists

    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    _write_weights(tmp_path)
    assert "dists" not in available()
    with pytest.raises(ConfigError, match="dists-v1"):
        create_metric("dists")
    n = sum(STAGE_CHANNELS)
    assert n == 1475
    torch.save({"alpha": torch.rand(1, n, 1, 1), "beta": torch.rand(1, n, 1, 1)}, tmp_path / "dists-v1.pth")
    spec = create_metric("dists")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 64, generator=g)
    y = (x + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(0, 1)
    assert torch.allclose(spec.fn(x, x), torch.zeros(2), atol=1e-5)
    d = spec.fn(x, y)
    assert bool((d > 0).all()) and bool((d < 1).all()) and torch.allclose(d, spec.fn(y, x), atol=1e-5)
    model = load_dists()
    pooled = model.features[4](torch.ones(1, 64, 8, 8))  # L2 pooling in place of max pooling
    assert pooled.shape == (1, 64, 4, 4) and torch.allclose(pooled[..., 1:, 1:], torch.ones(1, 64, 3, 3))
    torch.save({"alpha": torch.rand(3)}, tmp_path / "dists-v1.pth")
    with pytest.raises(WeightsError, match="alpha/beta"):
        load_dists()
