"""Train PFJ (progressive feature injection) with the backbone frozen.

Two objectives. ``chain`` (the default) runs the sampler's own walk, a DDIM chain from pure noise
at a uniform interval, with PFJ modulating the input's feature before every backbone call and the
regressor's gain along the way (as in the sampler), and back-propagates the error of the *final*
estimate against the ground truth through every step: PFJ learns what makes the output faithful.
``--fidelity`` then blends between the backbone alone (0, the most generative) and this (1).

``step`` (one backbone call; what a diffusion loss gives): each training sample is a degraded
crop at a random timestep ``t`` and interval ``k`` from the adaptive sampler's set. The gain PFJ sees is the learned one (the regressor) between the
backbone's estimates at ``t + k`` and ``t + 2k``, as the sampler would have it at ``t``. The
backbone then predicts at ``t`` from the modulated feature ``o_hat = alpha * o + beta``, and PFJ
learns with the backbone's own diffusion loss (MSE of its prediction): it injects the input's
feature where that makes the estimate more faithful. Validation: the same loss on held-out
crops with PFJ and without it (the identity), at fixed timesteps.
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
from torch.utils.data import DataLoader, Subset

from ..core.backbone import Backbone
from ..core.gain import information_gain
from ..core.pixels import normalize
from ..core.schedule import SkipCodebook, add_noise, prediction_target, split_prediction
from ..core.step import denoise_step, strength_timestep
from ..data.pairs import PairDataset
from ..data.photos import split_files
from ..errors import ConfigError, DataError
from ..gain.regressor import LearnedPerformance, QualityRegressor
from ..io import atomic_write
from ..pfj import FeatureInjection, PFJConfig, save_pfj
from ..policies.dtss import SHIPPED as DTSS_SHIPPED
from .checkpoint import training_device


@dataclass
class PFJTrainConfig:
    photos: str = "data/photos"
    out: str = "weights/compact-x4.pfj.safetensors"
    steps: int = 400
    batch_size: int = 8
    crop: int = 256  # ground-truth crop side (the input tile is crop / scale)
    learning_rate: float = 1e-3
    intervals: tuple[int, ...] = DTSS_SHIPPED.intervals  # the adaptive policy's, as upscale runs it
    width: int = 32
    degradation: str = "realesrgan-x4"  # a name in data.degradations.DEGRADATIONS
    val_crops: int = 16
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    log_every: int = 25
    objective: str = "chain"  # "chain": loss on the final output of a sampled walk; "step": one call
    chain_interval: int = 100  # uniform interval of the training walk (10 steps)


@torch.no_grad()
def _working_space(backbone: Backbone, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``[0, 1]`` pair as the backbone sees it: the input's feature (condition) and the target."""
    device = next(backbone.parameters()).device
    return backbone.condition(normalize(lr.to(device))), backbone.encode(normalize(hr.to(device)))


def _batch_loss(backbone: Backbone, learned: LearnedPerformance, pfj: FeatureInjection | None, lr: torch.Tensor,
                hr: torch.Tensor, codebook: SkipCodebook, generator: torch.Generator) -> torch.Tensor:
    spec = backbone.spec
    schedule, total, intervals = spec.schedule, spec.schedule.num_train_timesteps, codebook.intervals
    cond, x0 = _working_space(backbone, lr, hr)
    n, device = x0.shape[0], x0.device
    t = torch.randint(0, total, (n,), device=device, generator=generator)
    k = torch.tensor(intervals, device=device)[torch.randint(0, len(intervals), (n,), device=device, generator=generator)]
    t1, t2 = (t + k).clamp(max=total - 1), (t + 2 * k).clamp(max=total - 1)
    noise = torch.randn((3, *x0.shape), device=device, generator=generator)
    with torch.no_grad():
        x_prev = torch.cat([add_noise(schedule, x0, t1, noise[1]), add_noise(schedule, x0, t2, noise[2])])
        steps = torch.cat([t1, t2])
        out = backbone.predict(x_prev, steps, torch.cat([cond, cond]))
        estimates = split_prediction(codebook, out.float(), x_prev, steps, spec.prediction_type)[0]
        r = learned(estimates, torch.cat([cond, cond]), steps)
        gain = information_gain(r[:n], r[n:], t1, learned.nr_start)
    c_in = cond if pfj is None else pfj.inject(cond, gain)
    pred = backbone.predict(add_noise(schedule, x0, t, noise[0]), t, c_in)
    return F.mse_loss(pred.float(), prediction_target(schedule, spec.prediction_type, x0, t, noise[0]))


def _chain_loss(backbone: Backbone, learned: LearnedPerformance, pfj: FeatureInjection | None, lr: torch.Tensor,
                hr: torch.Tensor, codebook: SkipCodebook, generator: torch.Generator) -> torch.Tensor:
    """MSE of the final estimate of a DDIM walk (first interval of ``codebook``) from the backbone's
    default start: pure noise, or for a refiner its starting estimate noised to its default strength."""
    cond, target = _working_space(backbone, lr, hr)
    n, device = target.shape[0], target.device
    x = torch.randn(target.shape, device=device, generator=generator)
    start = strength_timestep(backbone.spec.default_strength, codebook.num_train_timesteps)
    t = torch.full((n,), start, device=device, dtype=torch.long)
    if backbone.starts_from_estimate and start < codebook.num_train_timesteps - 1:
        x = add_noise(backbone.spec.schedule, backbone.estimate(cond).float(), t, x)
    k = torch.zeros(n, device=device, dtype=torch.long)
    gain, r_prev = torch.zeros(n, 2, device=device), None
    while True:
        c_in = cond if pfj is None else pfj.inject(cond, gain)
        x0, x_next = denoise_step(codebook, backbone.spec, backbone.predict(x, t, c_in).float(), x, t, k)
        t_next = codebook.next_timestep(t, k)
        if bool((t_next < 0).all()):
            return F.mse_loss(x0, target)
        with torch.no_grad():  # the gain PFJ sees, as the sampler makes it (not differentiated)
            r = learned(x0.detach(), cond, t)
            if r_prev is not None:
                gain = information_gain(r, r_prev, t, learned.nr_start)
            r_prev = r
        x, t = x_next, t_next


OBJECTIVES = {"chain": _chain_loss, "step": _batch_loss}


@torch.no_grad()
def validate(backbone: Backbone, learned: LearnedPerformance, pfj: FeatureInjection, data: list[tuple[torch.Tensor, torch.Tensor]],
             codebook: SkipCodebook, objective: str = "step") -> dict[str, float]:
    """Mean loss on held-out crops with PFJ and with the identity, same timesteps and noise."""
    loss_fn = OBJECTIVES[objective]
    losses: dict[str, float] = {"pfj": 0.0, "identity": 0.0}
    for name, module in (("pfj", pfj), ("identity", None)):
        generator = torch.Generator(device=next(backbone.parameters()).device).manual_seed(1234)
        for lr, hr in data:
            losses[name] += float(loss_fn(backbone, learned, module, lr, hr, codebook, generator)) / len(data)
    return losses


def train_pfj(backbone: Backbone, regressor: QualityRegressor, cfg: PFJTrainConfig,
              log: Callable[[str], None] = print, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    train_files, val_files = split_files(Path(cfg.photos), "train"), split_files(Path(cfg.photos), "val")
    if not train_files or not val_files:
        raise DataError(f"{cfg.photos}: needs train/ and val/ photos (adadiffsr data photos)")
    device = training_device(cfg.device)
    backbone.to(device).eval().requires_grad_(False)
    learned = LearnedPerformance(backbone, regressor.to(device).eval())
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"unknown PFJ objective {cfg.objective!r}; use {' or '.join(OBJECTIVES)}")
    intervals = (cfg.chain_interval,) if cfg.objective == "chain" else tuple(cfg.intervals)
    codebook = SkipCodebook.build(backbone.spec.schedule, intervals).to(device)
    loss_fn = OBJECTIVES[cfg.objective]
    channels = backbone.condition(torch.zeros(1, 3, 8, 8, device=device)).shape[1]
    pfj = FeatureInjection(PFJConfig(in_channels=channels, width=cfg.width)).to(device).train()
    optimizer = torch.optim.AdamW(pfj.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.learning_rate, total_steps=cfg.steps)
    dataset = PairDataset(train_files, cfg.crop, backbone.spec.scale_factor, cfg.degradation, cfg.seed + 101)
    loader = DataLoader(Subset(dataset, range(cfg.steps * cfg.batch_size)), batch_size=cfg.batch_size,
                        num_workers=cfg.workers, drop_last=True)
    val_set = PairDataset(val_files, cfg.crop, backbone.spec.scale_factor, cfg.degradation, cfg.seed + 202)
    val_data = [(torch.stack([val_set[i][0] for i in chunk]), torch.stack([val_set[i][1] for i in chunk]))
                for chunk in [list(range(cfg.val_crops))[j : j + cfg.batch_size] for j in range(0, cfg.val_crops, cfg.batch_size)]]
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    start, window = time.perf_counter(), []
    before = validate(backbone, learned, pfj.eval(), val_data, codebook, cfg.objective)
    log(f"held-out loss before training: {before['pfj']:.5f} (identity {before['identity']:.5f})")
    pfj.train()
    for step, (lr, hr) in enumerate(loader, start=1):
        loss = loss_fn(backbone, learned, pfj, lr, hr, codebook, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if on_step is not None:
            on_step(step, loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {sum(window) / len(window):.5f} "
                f"({(time.perf_counter() - start) / 60:.1f} min)")
            window = []
    pfj.eval()
    after = validate(backbone, learned, pfj, val_data, codebook, cfg.objective)
    report = {"val_loss": after["pfj"], "val_loss_identity": after["identity"],
              "relative_change": after["pfj"] / after["identity"] - 1,
              "minutes": (time.perf_counter() - start) / 60, "config": asdict(cfg)}
    save_pfj(pfj, cfg.out, {"adadiffsr.training": json.dumps(report)})
    atomic_write(Path(cfg.out).with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return report
