"""Weights files: round trip with the config inside, and clear errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from adadiffsr.backbones import load_backbone, save_backbone
from adadiffsr.errors import WeightsError
from adadiffsr.weights import read_metadata

from .conftest import tiny_compact


def test_round_trip_restores_architecture_and_outputs(tmp_path):
    model = tiny_compact(seed=3, tile_size=24)
    path = tmp_path / "m.safetensors"
    save_backbone(model, path, metadata={"note": "test"})
    loaded = load_backbone(path)
    assert loaded.config == model.config and loaded.spec.tile_size == 24
    assert read_metadata(path)["note"] == "test"
    x, t = torch.randn(2, 48, 8, 8), torch.tensor([10, 900])
    cond = loaded.condition(torch.rand(2, 3, 8, 8) * 2 - 1)
    with torch.no_grad():
        assert torch.equal(loaded.predict(x, t, cond), model.predict(x, t, cond))


def test_wrong_architecture_is_named(tmp_path):
    small, large = tmp_path / "s.safetensors", tmp_path / "l.safetensors"
    save_backbone(tiny_compact(), small)
    # a file whose tensors come from another configuration than its metadata says
    other = tiny_compact(block_out_channels=(8, 24))
    meta = read_metadata(small)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(large), metadata=meta)
    with pytest.raises(WeightsError, match="do not fit"):
        load_backbone(large)


def test_missing_metadata_and_unknown_architecture(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(WeightsError, match="not an adadiffsr weights file"):
        load_backbone(plain)
    alien = tmp_path / "alien.safetensors"
    save_file({"w": torch.zeros(2)}, str(alien), metadata={"adadiffsr.architecture": "alien"})
    with pytest.raises(WeightsError, match="unknown architecture"):
        load_backbone(alien)
    broken = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(2)}, str(broken), metadata={"adadiffsr.architecture": "compact",
                                                            "adadiffsr.config": json.dumps({"scale_factor": "x"})})
    with pytest.raises(WeightsError):
        load_backbone(broken)


def test_truncated_and_nan_weights(tmp_path):
    path = tmp_path / "m.safetensors"
    save_backbone(tiny_compact(), path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError):
        load_backbone(cut)
    model = tiny_compact()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    nan = tmp_path / "nan.safetensors"
    save_backbone(model, nan)
    with pytest.raises(WeightsError, match="NaN"):
        load_backbone(nan)
