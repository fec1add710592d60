"""MUSIQ from local weights: multi-scale patches, pyiqa's checkpoint layout, and the transformer
checked against a plain re-computation with pyiqa's separate query/key/value and masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adadiffsr.errors import ConfigError, WeightsError
from adadiffsr.metrics.musiq import MUSIQ, MusiqConfig, from_pyiqa, hashed_positions, load_musiq, multiscale_patches
from adadiffsr.metrics.registry import available, create_metric

TINY = MusiqConfig(hidden=32, mlp=48, heads=4, layers=2, root=32)


def _pyiqa_layout(model: MUSIQ) -> dict[str, torch.Tensor]:
    """Our weights written the way pyiqa's MUSIQ names them (separate query/key/value layers)."""
    out = {}
    enc = "transformer_encoder."
    for k, v in model.state_dict().items():
        if k == "position_emb":
            out[enc + "posembed_input.position_emb"] = v[None].clone()
        elif k == "scale_emb":
            out[enc + "scaleembed_input.scale_emb"] = v.clone()
        elif k == "cls" or k.startswith("encoder_norm."):
            out[enc + k] = v.clone()
        elif k.startswith("encoder.layers."):
            i, name = k.split(".")[2], ".".join(k.split(".")[3:])
            base = f"{enc}transformer.encoderblock_{i}."
            if name.startswith("self_attn.in_proj_"):
                part = name.removeprefix("self_attn.in_proj_")
                for qkv, chunk in zip(("query", "key", "value"), v.chunk(3), strict=True):
                    out[f"{base}attention.{qkv}.{part}"] = chunk.clone()
            else:
                for ours, theirs in (("self_attn.out_proj.", "attention.out."), ("linear1.", "mlp.fc1."),
                                     ("linear2.", "mlp.fc2."), ("norm1.", "norm1."), ("norm2.", "norm2.")):
                    if name.startswith(ours):
                        out[base + theirs + name.removeprefix(ours)] = v.clone()
        else:
            out[k] = v.clone()
    return out


def _random_model(cfg: MusiqConfig, seed: int = 0) -> MUSIQ:
    torch.manual_seed(seed)
    model = MUSIQ(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
        for name, p in model.named_parameters():
            if name.endswith("weight") and ("norm" in name or "gn" in name):
                p.add_(1.0)
    return model.eval()


def test_patches_cover_every_scale_with_fixed_lengths():
    image = torch.rand(2, 3, 100, 150) * 2 - 1
    p = multiscale_patches(image, MusiqConfig())
    # 224: 149x224 -> 5x7 patches padded to 49; 384: 256x384 -> 8x12 padded to 144; original: 4x5 = 20
    assert p.pixels.shape == (2, 49 + 144 + 20, 3, 32, 32)
    assert p.mask.sum(1).tolist() == [35 + 96 + 20] * 2
    assert p.scale[0, 49 + 144:].eq(2).all() and p.scale[0, 49:49 + 96].eq(1).all()
    assert int(p.spatial.max()) < 100
    # the original scale's first patch is the top-left 32x32 block after "SAME" padding (none here vertically)
    rows, cols = 4 * 32 - 100, 5 * 32 - 150
    padded = F.pad(image, (cols // 2, cols - cols // 2, rows // 2, rows - rows // 2))
    assert torch.equal(p.pixels[:, 49 + 144], padded[:, :, :32, :32])
    sliver = multiscale_patches(torch.rand(1, 3, 2, 900), MusiqConfig())  # resized scales keep one row
    assert sliver.mask.sum().item() == 7 + 12 + 29


def test_hashed_positions_resample_the_patch_grid_onto_the_embedding_grid():
    pos = hashed_positions(10, 5, 20).view(5, 20)
    assert pos[1, 3] == 2 * 10 + 1  # row 1 of 5 -> grid row 2; column 3 of 20 -> grid column 1
    assert pos[0, 0] == 0 and pos[-1, -1] == 8 * 10 + 9
    assert torch.equal(hashed_positions(10, 10, 10), torch.arange(100))


def _reference_encoder(state: dict[str, torch.Tensor], x: torch.Tensor, keep: torch.Tensor, cfg: MusiqConfig):
    """pyiqa's encoder written out: separate q/k/v, 2-D mask filled with -1e3, exact GELU."""
    enc = "transformer_encoder."
    b, n, c = x.shape
    heads = cfg.heads
    mask2d = (keep[:, None, :, None] & keep[:, None, None, :])
    for i in range(cfg.layers):
        s = lambda name: state[f"{enc}transformer.encoderblock_{i}.{name}"]  # noqa: E731
        y = F.layer_norm(x, (c,), s("norm1.weight"), s("norm1.bias"), eps=1e-6)
        q, k, v = (F.linear(y, s(f"attention.{m}.weight"), s(f"attention.{m}.bias")).view(b, n, heads, -1).transpose(1, 2)
                   for m in ("query", "key", "value"))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(c // heads)
        attn = attn.masked_fill(~mask2d, -1e3).softmax(-1)
        y = F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), s("attention.out.weight"), s("attention.out.bias"))
        x = x + y
        y = F.layer_norm(x, (c,), s("norm2.weight"), s("norm2.bias"), eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(y, s("mlp.fc1.weight"), s("mlp.fc1.bias"))), s("mlp.fc2.weight"), s("mlp.fc2.bias"))
    return F.layer_norm(x, (c,), state[enc + "encoder_norm.weight"], state[enc + "encoder_norm.bias"], eps=1e-6)


def test_loaded_pyiqa_layout_matches_a_plain_recomputation():
    source = _random_model(TINY)
    state = _pyiqa_layout(source)
    model = MUSIQ(TINY)
    model.load_state_dict(from_pyiqa({"params": {"module." + k: v for k, v in state.items()}}), strict=True)
    model.eval()
    image = torch.rand(2, 3, 70, 90) * 2 - 1
    with torch.no_grad():
        got = model(image)
        p = multiscale_patches(image, TINY)
        enc = "transformer_encoder."
        x = (model.embed(p.pixels) + state[enc + "posembed_input.position_emb"][0][p.spatial]
             + state[enc + "scaleembed_input.scale_emb"][p.scale])
        x = torch.cat([state[enc + "cls"].expand(2, -1, -1), x], 1)
        keep = torch.cat([torch.ones(2, 1, dtype=torch.bool), p.mask], 1)
        want = F.linear(_reference_encoder(state, x, keep, TINY)[:, 0], state["head.weight"], state["head.bias"])[:, 0]
    assert got.shape == (2,)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # different images, different scores (the check above would pass on a constant)
    assert not torch.allclose(got[0], got[1])


def test_missing_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    assert "musiq" not in available()
    with pytest.raises(ConfigError, match="musiq_koniq_ckpt-e95806b9"):
        create_metric("musiq")


def test_musiq_through_the_registry_on_a_pyiqa_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    torch.save(_pyiqa_layout(_random_model(MusiqConfig(), seed=1)), tmp_path / "musiq_koniq_ckpt-e95806b9.pth")
    spec = create_metric("musiq")
    assert not spec.full_reference and not spec.lower_is_better
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 80, generator=g)
    score = spec.fn(x, None)
    assert score.shape == (2,) and torch.isfinite(score).all()
    assert torch.allclose(spec.fn(x[:1], None), score[:1], atol=1e-4)  # batch-independent
    assert not torch.allclose(score[0], score[1])


def test_wrong_or_corrupt_checkpoint_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADADIFFSR_METRIC_WEIGHTS", str(tmp_path))
    torch.save({"conv_root.weight": torch.zeros(1)}, tmp_path / "musiq_koniq_ckpt-e95806b9.pth")
    with pytest.raises(WeightsError, match="does not fit MUSIQ"):
        load_musiq()
    (tmp_path / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        load_musiq()
