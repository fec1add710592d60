"""Train the compact backbone: one flat, resumable loop.

Each step draws degraded/clean pairs, noises the clean image's working-space form at a uniform
random timestep, and regresses the backbone's declared target (x0 for the default) with MSE.
With ``cache`` (``adadiffsr data cache``) the model is a refiner over the cache's prior: batches
hold ``(input, prior output, ground truth)`` crops, so the prior never runs during training;
``max_timestep`` keeps the timesteps where sampling from the noised prior happens, and ``init``
warm-starts from another weights file (tensors that fit are copied; the refiner's output layer
stays at zero).
EMA weights are what gets exported. State lives in ``OUT/last.safetensors`` (resumable) and the
EMA backbone in ``OUT/ema.safetensors`` (a normal weights file for ``--weights``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset

from ..backbones import save_backbone
from ..backbones.compact import CompactConfig, CompactSR
from ..core.pixels import denormalize, normalize
from ..core.schedule import add_noise, prediction_target
from ..data.pairs import PairDataset, load_rgb, make_lr
from ..data.photos import split_files
from ..engine.pipeline import TilingSettings, upscale_tensor
from ..engine.sampler import SamplerSettings
from ..metrics.psnr import psnr_y
from ..policies.uniform import UniformPolicy
from .checkpoint import load_training_state, optimizer_step, save_or_stop, save_training_state, training_device
from .log import TrainingLog


@dataclass
class BackboneTrainConfig:
    """Everything a training run depends on; saved inside every checkpoint."""

    photos: str = "data/photos"  # folder with train/ and val/ ground truth (adadiffsr data photos)
    out: str = "runs/backbone"
    steps: int = 20000  # total optimiser steps (a resumed run continues up to this)
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup: int = 500
    crop: int = 256  # ground-truth crop side (the input tile is crop / scale)
    degradation: str = "realesrgan-x4"  # a name in data.degradations.DEGRADATIONS
    ema_decay: float = 0.999
    seed: int = 0
    workers: int = 2
    log_every: int = 50
    val_every: int = 1000
    val_interval: int = 50  # uniform interval of the validation sampler (20 steps)
    save_every: int = 500
    max_minutes: float | None = None  # stop (and save) after this much wall time
    device: str = "auto"
    mixed_precision: bool = True  # bf16 autocast on CUDA
    model: dict[str, Any] = field(default_factory=dict)  # CompactConfig overrides
    cache: str | None = None  # a prior cache folder: train a refiner over its prior
    max_timestep: int | None = None  # train on timesteps [0, max_timestep] only (None: all of them)
    init: str | None = None  # weights file to warm-start from


def diffusion_loss(
    model: CompactSR, lr: torch.Tensor, hr: torch.Tensor, generator: torch.Generator,
    prior: torch.Tensor | None = None, max_timestep: int | None = None,
) -> torch.Tensor:
    """MSE of the backbone's prediction at a uniform random timestep in ``[0, max_timestep]``
    (inputs in ``[0, 1]``; ``prior``: the prior's output for a refiner)."""
    x0 = model.encode(normalize(hr))
    cond = model.condition(normalize(lr), None if prior is None else normalize(prior))
    schedule = model.spec.schedule
    top = schedule.num_train_timesteps if max_timestep is None else max_timestep + 1
    t = torch.randint(0, top, (hr.shape[0],), device=hr.device, generator=generator)
    noise = torch.randn(x0.shape, device=hr.device, generator=generator)
    pred = model.predict(add_noise(schedule, x0, t, noise), t, cond)
    return F.mse_loss(pred.float(), prediction_target(schedule, model.spec.prediction_type, x0, t, noise))


def warm_start(model: CompactSR, path: str) -> int:
    """Copy the tensors of ``path`` that fit ``model`` (a wider first layer gets the overlapping
    input channels, the rest stay zero); a zero-initialised output layer stays zero. Returns the
    number of tensors copied."""
    from ..backbones import load_backbone

    source = load_backbone(path).state_dict()
    target = model.state_dict()
    copied = 0
    for key, value in target.items():
        if key not in source or (model.prior is not None and key.startswith("unet.conv_out.")):
            continue
        src = source[key]
        if src.shape == value.shape:
            value.copy_(src)
        elif src.dim() == 4 and src.shape[0] == value.shape[0] and src.shape[2:] == value.shape[2:] \
                and src.shape[1] <= value.shape[1]:
            value.zero_()
            value[:, : src.shape[1]] = src
        else:
            continue
        copied += 1
    return copied


@torch.no_grad()
def validate(model: CompactSR, files: list[Path], crop: int, interval: int, degradation: str,
             strength: float = 1.0) -> dict[str, float]:
    """Mean PSNR-Y of the model (uniform sampling) and of bicubic on fixed centre crops of ``files``."""
    device = next(model.parameters()).device
    ours, bicubic = [], []
    for k, path in enumerate(files):
        image = load_rgb(path)
        h, w = image.shape[-2:]
        c = min(crop, h, w) // 4 * 4
        hr = image[:, (h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
        lr = make_lr(hr, degradation, seed=10_000 + k)
        out = upscale_tensor(
            model, normalize(lr[None]).to(device), UniformPolicy(interval), SamplerSettings(strength=strength),
            TilingSettings(), seed=k,
        )
        up = F.interpolate(lr[None], scale_factor=4, mode="bicubic", align_corners=False)
        ours.append(float(psnr_y(denormalize(out.image.cpu()), hr[None])))
        bicubic.append(float(psnr_y(up, hr[None])))
    return {"psnr_y": sum(ours) / len(ours), "psnr_y_bicubic": sum(bicubic) / len(bicubic)}


def train_backbone(
    cfg: BackboneTrainConfig,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train (or resume) and return the path of the exported EMA backbone; ``on_step(step, loss)``
    after every optimiser step (the CLI's progress bar)."""
    device = training_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model_config = dict(cfg.model)
    if cfg.cache is not None:
        from ..data.cache import read_cache_config

        model_config["prior"] = read_cache_config(Path(cfg.cache))["prior"]
    model = CompactSR(CompactConfig.from_dict(model_config)).to(device).train()
    if cfg.init is not None and not (out / "last.safetensors").is_file():
        log(f"warm start: {warm_start(model, cfg.init)} tensors from {cfg.init}")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    state_path = out / "last.safetensors"
    step = load_training_state(state_path, model, ema, optimizer) if state_path.is_file() else 0
    if step:
        log(f"resumed from {state_path} at step {step}")
    train_files = split_files(Path(cfg.photos), "train")
    val_files = split_files(Path(cfg.photos), "val")
    if cfg.cache is not None:
        from ..data.cache import CacheDataset

        dataset: Any = CacheDataset(Path(cfg.cache), cfg.crop, cfg.seed)
    else:
        dataset = PairDataset(train_files, cfg.crop, 4, cfg.degradation, cfg.seed)
    strength = 1.0 if cfg.max_timestep is None else (cfg.max_timestep + 1) / model.spec.schedule.num_train_timesteps
    indices = range(step * cfg.batch_size, cfg.steps * cfg.batch_size)
    loader = DataLoader(
        Subset(dataset, indices), batch_size=cfg.batch_size, num_workers=cfg.workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0, drop_last=True,
    )
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + step)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.mixed_precision)
    config_dict = asdict(cfg) | {"model": model.config.to_dict()}
    run_log = TrainingLog(out, cfg.steps, cfg.log_every, log)

    def checkpoint() -> None:
        save_training_state(state_path, model, ema, optimizer, step, config_dict)
        save_backbone(ema.module, out / "ema.safetensors", metadata={"adadiffsr.train_steps": str(step)})

    for batch in loader:
        lr_img, *prior_img, hr_img = (b.to(device, non_blocking=True) for b in batch)
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * min(1.0, (step + 1) / max(1, cfg.warmup))
        with autocast:
            loss = diffusion_loss(model, lr_img, hr_img, generator, prior_img[0] if prior_img else None,
                                  cfg.max_timestep)
        optimizer_step(model, ema, optimizer, loss)
        step += 1
        mean = run_log.loss(step, loss.item())
        if on_step is not None:
            on_step(step, mean)
        if step % cfg.val_every == 0 or step == cfg.steps:
            ema.module.eval()
            scores = validate(ema.module, val_files, cfg.crop, cfg.val_interval, cfg.degradation, strength)
            run_log.write({"step": step, **scores})
            log(f"step {step} validation PSNR-Y {scores['psnr_y']:.2f} dB (bicubic {scores['psnr_y_bicubic']:.2f})")
        if save_or_stop(step, cfg.save_every, cfg.max_minutes, run_log.start, checkpoint, log):
            break
    checkpoint()
    run_log.close()
    return out / "ema.safetensors"
