"""Train the MMLE regressor on traces of exact gains, then report how well it agrees and what it costs.

The traces (``adadiffsr analyze traces``) hold, per tile and step, the regressor's inputs and the
exact performance ``R`` (FR and NR). The regressor learns ``R`` with L2, plus L2 on its step-to-step
differences, which are what the gain (eq. 1) is made of. The agreement report compares the gains
it implies with the exact ones on held-out traces (validation photos).
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..core.backbone import Backbone
from ..core.gain import information_gain
from ..core.pixels import normalize
from ..errors import DataError
from ..gain.regressor import LearnedPerformance, QualityRegressor, RegressorConfig, save_regressor
from ..io import atomic_write
from ..policies.dtss import CATEGORY_NAMES, GROWING, STABLE, activity, pace
from ..policies.dtss import SHIPPED as DTSS_SHIPPED


@dataclass
class RegressorTrainConfig:
    traces: str = "data/traces/train-i50.safetensors"
    val_traces: str = "data/traces/val-i50.safetensors"
    out: str = "weights/compact-x4.regressor.safetensors"
    epochs: int = 80
    batch_tiles: int = 16  # tiles per batch, all their steps
    learning_rate: float = 2e-3
    difference_weight: float = 4.0  # weight of the step-to-step differences in the loss
    tau: float = DTSS_SHIPPED.tau  # DTSS threshold, for the agreement of decisions (the upscale default)
    fr_change: str = DTSS_SHIPPED.fr_change  # DTSS reading of the FR gain, for the agreement of decisions
    num_intervals: int = len(DTSS_SHIPPED.intervals)  # size of the DTSS interval set, for the agreement of paces
    seed: int = 0


def load_traces(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a traces file written with the regressor inputs."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        data = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable traces file ({e})") from e
    if "inputs" not in data or "pool" not in meta:
        raise DataError(f"{path}: no regressor inputs in these traces; record them with `adadiffsr analyze traces`")
    return data, meta


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def category(gain: torch.Tensor, tau: float) -> torch.Tensor:
    """0 growing (NR rising), 1 stable (NR flat), 2 saturated (NR falling), from ``(n, 2)`` gains."""
    nr = gain[:, 1]
    return torch.where(nr > tau, 0, torch.where(nr < -tau, 2, 1))


def _performance(model: QualityRegressor, data: dict[str, torch.Tensor], tiles: torch.Tensor) -> torch.Tensor:
    """``(b, S, 2)`` predicted R for the given tiles, all steps."""
    x = data["inputs"][tiles].float()  # (b, S, 4C, h, w)
    b, s = x.shape[:2]
    ref = data["reference"][tiles].float()
    ref = ref[:, None].expand(b, s, *ref.shape[1:])
    return model(x.flatten(0, 1), ref.flatten(0, 1)).view(b, s, -1)


def _gains(performance: torch.Tensor, t: torch.Tensor, nr_start: float) -> torch.Tensor:
    """Eq. 1 along each tile's steps (0 at the first step), ``(N, S, 2)``."""
    previous = torch.cat([performance[:, :1], performance[:, :-1]], 1)
    return information_gain(performance.flatten(0, 1), previous.flatten(0, 1), t.flatten(), nr_start).view_as(performance)


def agreement(exact: torch.Tensor, learned: torch.Tensor, t: torch.Tensor, tau: float, nr_start: float,
              fr_change: str = "any", num_intervals: int = 3) -> dict[str, Any]:
    """Correlation per component and agreement of the NR category over the second half of the path
    (``t < nr_start``, where the NR gain counts), and agreement of the pace DTSS would pick (growing or stable, and
    which interval) over the whole path; ``(n, 2)`` gains and ``(n,)`` timesteps."""
    half = t < nr_start

    def paces(gain: torch.Tensor) -> torch.Tensor:
        kind = torch.where(activity(gain, half, fr_change) > tau, GROWING, STABLE)  # type: ignore[arg-type]
        return pace(gain, half, kind, tau, num_intervals, fr_change)  # type: ignore[arg-type]

    pace_agreement = float((paces(exact) == paces(learned)).float().mean())
    late = half
    corr = {}
    for k, name in enumerate(("fr", "nr")):
        a, b = exact[late, k], learned[late, k]
        corr[name] = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if a.std() > 0 and b.std() > 0 else None
    same = category(exact[late], tau) == category(learned[late], tau)
    counts = {name: int((category(exact[late], tau) == i).sum()) for i, name in enumerate(CATEGORY_NAMES)}
    return {"correlation": corr, "category_agreement": float(same.float().mean()), "steps": int(late.sum()),
            "exact_category_counts": counts, "pace_agreement": pace_agreement}


@torch.no_grad()
def evaluate(model: QualityRegressor, data: dict[str, torch.Tensor], tau: float, fr_change: str = "any") -> dict[str, Any]:
    """Agreement of gains, and correlation of the performance levels themselves (all steps)."""
    tiles = torch.arange(data["t"].shape[0])
    predicted = torch.cat([_performance(model, data, tiles[i : i + 32]) for i in range(0, len(tiles), 32)])
    cfg = model.config
    nr_start = cfg.nr_from * cfg.num_train_timesteps
    exact = _gains(data["performance"].float(), data["t"], nr_start)
    learned = _gains(predicted, data["t"], nr_start)
    report = agreement(exact.flatten(0, 1), learned.flatten(0, 1), data["t"].flatten(), tau, nr_start, fr_change)
    levels = {}
    for k, name in enumerate(("fr", "nr")):
        a, b = data["performance"][..., k].flatten().float(), predicted[..., k].flatten()
        levels[name] = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    report["level_correlation"] = levels
    report["tiles"] = len(tiles)
    return report


def overhead(backbone: Backbone, model: QualityRegressor, batch: int = 8, repeats: int = 5) -> dict[str, float]:
    """Seconds per tile of the learned performance (one estimate scored per step: the sampler
    remembers the previous one) and of one backbone evaluation, at the native tile size."""
    spec = backbone.spec
    side = spec.tile_size * spec.latent_scale
    x = torch.randn(batch, spec.latent_channels, side, side)
    lr = normalize(torch.rand(batch, 3, spec.tile_size, spec.tile_size))
    t = torch.full((batch,), 300)
    learned = LearnedPerformance(backbone, model)

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
        r = clock(lambda: learned(x, cond, t))
    return {"backbone_s_per_tile": b, "regressor_s_per_tile": r, "fraction": r / b}


def train_regressor(backbone: Backbone, cfg: RegressorTrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    train, meta = load_traces(cfg.traces)
    val, _ = load_traces(cfg.val_traces)
    channels = train["reference"].shape[1] // 2
    if channels != backbone.spec.latent_channels:
        raise DataError(f"{cfg.traces}: traces of a backbone with {channels} channels, not this one's "
                         f"{backbone.spec.latent_channels}")
    gain_config = json.loads(meta["config"])
    model = QualityRegressor(RegressorConfig(in_channels=channels, pool=int(meta["pool"]),
                                             nr_from=gain_config["nr_from"],
                                             num_train_timesteps=backbone.spec.schedule.num_train_timesteps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    steps_per_epoch = -(-train["t"].shape[0] // cfg.batch_tiles)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=cfg.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    target_all = train["performance"].float()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(train["t"].shape[0], generator=generator)
        total = 0.0
        for i in range(0, len(order), cfg.batch_tiles):
            tiles = order[i : i + cfg.batch_tiles]
            pred, target = _performance(model, train, tiles), target_all[tiles]
            loss = F.mse_loss(pred, target) + cfg.difference_weight * F.mse_loss(pred.diff(dim=1), target.diff(dim=1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(tiles)
        if (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs:
            model.eval()
            held_out = evaluate(model, val, cfg.tau, cfg.fr_change)
            level, corr = held_out["level_correlation"], held_out["correlation"]
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {total / len(order):.5f}; held out: level corr "
                f"FR {_num(level['fr'])} NR {_num(level['nr'])}, gain corr FR {_num(corr['fr'])} "
                f"NR {_num(corr['nr'])}, pace agreement {_num(held_out['pace_agreement'])}")
    model.eval()
    report = {
        "train": evaluate(model, train, cfg.tau, cfg.fr_change),
        "val": evaluate(model, val, cfg.tau, cfg.fr_change),
        "overhead": overhead(backbone, model),
        "config": asdict(cfg),
        "gain_config": gain_config,
    }
    save_regressor(model, cfg.out, {"adadiffsr.gain_config": meta["config"]})
    report_path = Path(cfg.out).with_suffix(".json")
    atomic_write(report_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return report
