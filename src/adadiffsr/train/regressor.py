"""Train the MMLE regressor on exact gains, then report how well it agrees and what it costs.

Tiles are degraded crops of the photos; each is sampled uniformly once while the exact gain
(``gain/quality.py``) of every step is computed and the estimates are kept in memory. The
regressor learns ``(x0_i, x0_{i-1}, o, t_i) -> I_i`` with L2, as the paper trains its regressor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..data.pairs import PairDataset
from ..data.photos import split_files
from ..gain.quality import GainConfig
from ..gain.regressor import GainRegressor, RegressorConfig, save_regressor
from ..gain.traces import Trace, trace_tile
from ..io import atomic_write

CATEGORIES = ("growing", "stable", "saturated")


@dataclass
class RegressorTrainConfig:
    photos: str = "data/photos"
    out: str = "weights/compact-x4.regressor.safetensors"
    train_tiles: int = 24
    val_tiles: int = 8  # from the validation photos: the agreement report
    interval: int = 20
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    tau: float = 5e-3  # DTSS threshold, for the category agreement
    seed: int = 0


def category(gain: torch.Tensor, tau: float) -> torch.Tensor:
    """0 growing (NR rising), 1 stable (NR flat), 2 saturated (NR falling), from ``(n, 2)`` gains."""
    nr = gain[:, 1]
    return torch.where(nr > tau, 0, torch.where(nr < -tau, 2, 1))


def _tiles(backbone: Backbone, photos: Path, split: str, count: int, cfg: RegressorTrainConfig, gain: GainConfig,
           log: Callable[[str], None]) -> list[Trace]:
    side = backbone.spec.tile_size * backbone.spec.scale_factor
    dataset = PairDataset(split_files(photos, split), crop=side, seed=cfg.seed + (0 if split == "train" else 1))
    traces = []
    for k in range(count):
        lr, _ = dataset[k]
        traces.append(trace_tile(backbone, lr[None] * 2 - 1, gain, cfg.interval, cfg.seed + k, keep=True))
        log(f"{split} tile {k + 1}/{count} traced")
    return traces


def _examples(traces: list[Trace]) -> dict[str, torch.Tensor]:
    x0, prev, cond, t, target = [], [], [], [], []
    for tr in traces:
        assert tr.estimates is not None and tr.cond is not None
        n = tr.estimates.shape[0]
        x0.append(tr.estimates)
        prev.append(torch.cat([tr.estimates[:1], tr.estimates[:-1]]))
        cond.append(tr.cond.half().expand(n, *tr.cond.shape[1:]))
        t.append(tr.t)
        target.append(tr.gain.float())
    return {"x0": torch.cat(x0), "prev": torch.cat(prev), "cond": torch.cat(cond), "t": torch.cat(t),
            "gain": torch.cat(target)}


@torch.no_grad()
def _predict(model: GainRegressor, data: dict[str, torch.Tensor], batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(data["t"]), batch):
        s = slice(i, i + batch)
        out.append(model(data["x0"][s].float(), data["prev"][s].float(), data["cond"][s].float(), data["t"][s]))
    return torch.cat(out)


def agreement(exact: torch.Tensor, learned: torch.Tensor, t: torch.Tensor, tau: float) -> dict[str, Any]:
    """Correlation per component and agreement of the region category, over the second half of the
    path (where the NR gain counts)."""
    late = t < 500
    corr = {}
    for k, name in enumerate(("fr", "nr")):
        a, b = exact[late, k], learned[late, k]
        corr[name] = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if a.std() > 0 and b.std() > 0 else None
    same = category(exact[late], tau) == category(learned[late], tau)
    counts = {name: int((category(exact[late], tau) == i).sum()) for i, name in enumerate(CATEGORIES)}
    return {"correlation": corr, "category_agreement": float(same.float().mean()), "steps": int(late.sum()),
            "exact_category_counts": counts}


def overhead(backbone: Backbone, model: GainRegressor, batch: int = 8, repeats: int = 5) -> dict[str, float]:
    """Seconds per tile of the regressor and of one backbone evaluation, at the native tile size."""
    spec = backbone.spec
    side = spec.tile_size * spec.latent_scale
    x = torch.randn(batch, spec.latent_channels, side, side)
    lr = torch.rand(batch, 3, spec.tile_size, spec.tile_size) * 2 - 1
    t = torch.full((batch,), 500)

    def clock(fn: Callable[[], Any]) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best / batch

    with torch.no_grad():
        cond = backbone.condition(lr)
        b = clock(lambda: backbone.predict(x, t, cond))
        r = clock(lambda: model(x, x, cond, t))
    return {"backbone_s_per_tile": b, "regressor_s_per_tile": r, "fraction": r / b}


def train_regressor(backbone: Backbone, cfg: RegressorTrainConfig, gain: GainConfig = GainConfig(),
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    photos = Path(cfg.photos)
    train = _examples(_tiles(backbone, photos, "train", cfg.train_tiles, cfg, gain, log))
    val = _examples(_tiles(backbone, photos, "val", cfg.val_tiles, cfg, gain, log))
    model = GainRegressor(RegressorConfig(in_channels=backbone.spec.latent_channels))
    model.scale.copy_(train["gain"].std(0).clamp(min=1e-4))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n = len(train["t"])
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            pred = model(train["x0"][idx].float(), train["prev"][idx].float(), train["cond"][idx].float(), train["t"][idx])
            loss = F.mse_loss(pred / model.scale, train["gain"][idx] / model.scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {total / n:.4f}")
    model.eval()
    report = {
        "train": agreement(train["gain"], _predict(model, train), train["t"], cfg.tau),
        "val": agreement(val["gain"], _predict(model, val), val["t"], cfg.tau),
        "overhead": overhead(backbone, model),
        "config": asdict(cfg),
        "gain_config": asdict(gain),
    }
    save_regressor(model, cfg.out, {"adadiffsr.gain_config": json.dumps(asdict(gain))})
    report_path = Path(cfg.out).with_suffix(".json")
    atomic_write(report_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return report
