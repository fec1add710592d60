"""Train PFJ for the distilled student's one step, from the prior cache: the shipped model's PFJ.

On the shipped refiner every tile that takes a step takes one step of the student, from the
prior's estimate noised at the student's timestep ``t_s``, with the tile's first gain (0: nothing
to gain against yet). So PFJ is trained on exactly that call: the condition ``o`` (the input and
the prior's estimate in working space) is modulated, ``o_hat = alpha * o + beta`` (eq. 3), the
student predicts the clean image from it, and the loss is the L1 of that image to the ground
truth. With the student frozen, PFJ learns what makes its output faithful; ``--fidelity`` then
moves between the student alone (0, its texture) and this (1, the faithful end).

Batches are random sub-crops of the cache (x4plus never runs here); its last shard is held out and
scored with PFJ and without it (same noise). Resumable from ``OUT/last.safetensors``; the EMA
network is written to the PFJ file with its recipe in the metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset

from ..backbones.compact import CompactSR
from ..core.backbone import Backbone
from ..core.pixels import normalize
from ..core.schedule import SkipCodebook, add_noise
from ..core.step import denoise_step
from ..data.cache import CacheDataset, read_cache_config
from ..errors import ConfigError
from ..metrics.psnr import psnr_y
from ..pfj import FeatureInjection, PFJConfig, save_pfj
from .checkpoint import load_training_state, optimizer_step, save_or_stop, save_training_state, training_device
from .log import TrainingLog


@dataclass
class StudentPFJConfig:
    """Everything a run depends on; saved in every checkpoint and, as the recipe, in the PFJ file."""

    cache: str = "data/cache"  # a prior cache of the refiner's prior (adadiffsr data cache)
    out: str = "runs/pfj-student"
    steps: int = 2000
    batch_size: int = 8
    crop: int = 128  # ground-truth sub-crop side
    learning_rate: float = 1e-3
    width: int = 32
    depth: int = 2
    ema_decay: float = 0.99
    seed: int = 0
    workers: int = 1
    log_every: int = 50
    val_every: int = 250
    save_every: int = 100
    max_minutes: float | None = None
    device: str = "auto"


@dataclass(frozen=True)
class StudentStep:
    """The frozen networks and the one step PFJ is trained through."""

    refiner: CompactSR  # gives the condition and the working space
    student: Backbone
    codebook: SkipCodebook  # holds the one jump t_s -> -1
    t_s: int

    @torch.no_grad()
    def start(self, lr: Tensor, prior: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """The condition, the noised estimate at ``t_s`` and the timesteps for ``[0, 1]`` crops."""
        cond = self.refiner.condition(normalize(lr), normalize(prior))
        estimate = self.refiner.estimate(cond).float()
        t = torch.full((lr.shape[0],), self.t_s, dtype=torch.long, device=lr.device)
        noise = torch.randn(estimate.shape, generator=generator, device=lr.device)
        return cond, add_noise(self.refiner.spec.schedule, estimate, t, noise), t

    def __call__(self, pfj: FeatureInjection | None, cond: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The student's output image in ``[-1, 1]``, PFJ applied (None: the student alone)."""
        gain = torch.zeros(len(t), 2, device=t.device)  # the sampler's first gain
        c_in = cond if pfj is None else pfj.inject(cond, gain)
        prediction = self.student.predict(x_t, t, c_in).float()
        x0, _ = denoise_step(self.codebook, self.student.spec, prediction, x_t, t, torch.zeros_like(t))
        return self.student.decode(x0)


@torch.no_grad()
def validate(step: StudentStep, pfj: FeatureInjection, crops: tuple[Tensor, Tensor, Tensor],
             device: torch.device, batch: int = 8) -> dict[str, float]:
    """Mean PSNR-Y against the truth on held-out crops: the student with PFJ, without, and the prior."""
    generator = torch.Generator(device=device).manual_seed(1234)
    scores: dict[str, list[Tensor]] = {"psnr_y": [], "psnr_y_student": [], "psnr_y_prior": []}
    for i in range(0, len(crops[0]), batch):
        lr, prior, hr = (c[i : i + batch].float().div(255).to(device) for c in crops)
        start = step.start(lr, prior, generator)
        for name, module in (("psnr_y", pfj), ("psnr_y_student", None)):
            out = (step(module, *start).clamp(-1, 1) + 1) / 2
            scores[name].append(psnr_y(out.cpu(), hr.cpu()))
        scores["psnr_y_prior"].append(psnr_y(prior.cpu(), hr.cpu()))
    return {k: float(torch.cat(v).mean()) for k, v in scores.items()}


def train_student_pfj(refiner: CompactSR, student: Backbone, t_s: int, cfg: StudentPFJConfig, pfj_out: Path,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) PFJ through the student's step; write its EMA to ``pfj_out``; return the scores."""
    device = training_device(cfg.device)
    torch.manual_seed(cfg.seed)
    cache_config = read_cache_config(Path(cfg.cache))
    if cache_config.get("prior") != refiner.config.prior:
        raise ConfigError(f"{cfg.cache} caches {cache_config.get('prior')!r}; the refiner refines {refiner.config.prior!r}")
    refiner, student = refiner.to(device).eval().requires_grad_(False), student.to(device).eval().requires_grad_(False)
    step_fn = StudentStep(refiner, student, SkipCodebook.build(refiner.spec.schedule, (t_s + 1,)).to(device), t_s)
    channels = refiner.condition(torch.zeros(1, 3, 8, 8, device=device)).shape[1]
    pfj = FeatureInjection(PFJConfig(in_channels=channels, width=cfg.width, depth=cfg.depth, student=True)).to(device).train()
    ema = AveragedModel(pfj, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(pfj.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "last.safetensors"
    step = load_training_state(state_path, pfj, ema, optimizer) if state_path.is_file() else 0
    if step:
        log(f"resumed from {state_path} at step {step}")
    data = CacheDataset(Path(cfg.cache), cfg.crop, cfg.seed)
    held_out = data.hold_out(int(cache_config.get("shard_size", 32)), "PFJ")  # type: ignore[call-overload]
    loader = DataLoader(Subset(data, range(step * cfg.batch_size, cfg.steps * cfg.batch_size)),
                        batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                        persistent_workers=cfg.workers > 0)
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + step)
    recipe = asdict(cfg) | {"t_s": t_s, "cache_config": cache_config, "objective": "student"}
    run_log, scores = TrainingLog(out, cfg.steps, cfg.log_every, log), {}

    def checkpoint() -> None:
        save_training_state(state_path, pfj, ema, optimizer, step, recipe)
        save_pfj(ema.module, pfj_out, {"adadiffsr.training": json.dumps(recipe | {"train_steps": step, **scores})})

    for lr_img, prior, hr in loader:
        lr_img, prior, hr = lr_img.to(device), prior.to(device), hr.to(device)
        for group in optimizer.param_groups:  # cosine to 0.1x over the run
            group["lr"] = cfg.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * step / cfg.steps)))
        loss = F.l1_loss(step_fn(pfj, *step_fn.start(lr_img, prior, generator)), normalize(hr))
        optimizer_step(pfj, ema, optimizer, loss)
        step += 1
        run_log.loss(step, loss.item())
        if step % cfg.val_every == 0 or step == cfg.steps:
            scores = validate(step_fn, ema.module.eval(), held_out, device)
            run_log.write({"step": step, **scores})
            log(f"step {step} held-out PSNR-Y {scores['psnr_y']:.2f} dB with PFJ, {scores['psnr_y_student']:.2f} "
                f"the student alone, {scores['psnr_y_prior']:.2f} the prior")
        if save_or_stop(step, cfg.save_every, cfg.max_minutes, run_log.start, checkpoint, log):
            break
    if not scores:
        scores = validate(step_fn, ema.module.eval(), held_out, device)
    checkpoint()
    run_log.close()
    return {"steps": step, **scores}
