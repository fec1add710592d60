"""One step where the teacher walks several: a distilled student refiner (AddSR, AdcSR).

The student has the refiner's contract and architecture (by default a copy of the teacher, warm
started from it, as AddSR starts its student; ``width`` < 1 shrinks every level's channels and
starts from the teacher pruned to them, ``prune.py``: AdcSR's trade of size for speed) and takes one
step: from the prior's estimate noised at the teacher walk's first timestep ``t_s`` straight to the
clean sample. It is trained with

- a **distillation loss**: L1 between the student's estimate and the teacher's output, one of two
  ``target`` s: ``hr-walk``, the teacher's whole walk from the same noised start made from the ground
  truth instead of the prior's estimate (AddSR's "HR-regulated teacher": its output carries detail
  the prior lost, a sharper target), or ``default``, what the teacher's default does to the crop at
  inference: the crop's group by the texture of the prior's estimate (``policies/groups.py``: no step
  on a flat crop, else the walk's last 1-3 steps) walked from the prior's estimate noised with the
  student's noise (the HR-regulated target is HR-like detail, while at inference the teacher draws
  fine grain over smooth, not flat regions, which the student should learn to draw too);
- a **ground-truth loss**: L1 to the ground truth itself, weighted low (``gt_weight``, as ``train prior``'s);
- a **texture loss** (``texture_weight``, ``texture.py``): the local amount of fine detail of the
  student's output against the teacher's, at the finest scale or at ``texture_levels`` scales (1, 2,
  4... pixels). The teacher's walk draws fresh noise at every step, so the L1 terms teach the median
  of its texture, smoother than any of its samples; this term asks for as much detail as the teacher
  draws, region by region, whatever its phase;
- an **adversarial loss**: a small patch discriminator on ground-truth crops against the student's
  outputs (hinge loss), weighted by ``adversarial_weight`` (AddSR's timestep-adaptive weight
  reduces to one weight for a one-step student at a fixed ``t_s``); with ``conditional`` it judges
  each image beside the prior's estimate of it (pix2pix), so texture that does not fit the input
  (grain on a smooth sky) reads as fake.

AddSR's prediction-based self-refinement (its student's own HR estimate fed back as the control
signal) is left out: our student already conditions on the prior's HR estimate, the role that
signal plays there. Training is resumable (``last.safetensors`` and ``discriminator.safetensors``
in the run folder), runs on a CUDA device where there is one, and under bf16 autocast where the
device has bf16 instructions (``dtype="auto"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset

from ..backbones import CompactConfig, CompactSR, load_student, save_backbone
from ..core.pixels import normalize
from ..core.precision import autocast
from ..core.schedule import SkipCodebook, add_noise
from ..core.step import denoise_step
from ..data.cache import CacheDataset, read_cache_config
from ..devices import training_dtype
from ..errors import ConfigError
from ..io import atomic_write
from ..policies.timesteps import TimestepsPolicy
from ..prior.runner import prior_from_file
from .checkpoint import load_training_state, save_or_stop, save_training_state, training_device
from .log import TrainingLog
from .prune import prune_into
from .teacher import default_target, distill_walk, teacher_walk
from .texture import MAX_LEVELS as MAX_TEXTURE_LEVELS
from .texture import detail_ratio, texture_loss

TARGETS = ("hr-walk", "default")
# the student's detail over the teacher's at 1, 2 and 4 pixel scales (texture levels 0, 1, 2), logged
DETAIL_RATIOS = ("detail_ratio", "detail_ratio_2x", "detail_ratio_4x")


@dataclass(frozen=True)
class DistillConfig:
    cache: str = "data/cache"  # a prior cache (adadiffsr data cache) of the training photos
    out: str = "runs/distill"  # run folder (resumes from it)
    steps: int = 600
    batch_size: int = 8
    crop: int = 128  # ground-truth crop side (the input tile is crop / 4)
    learning_rate: float = 5e-5
    discriminator_learning_rate: float = 2e-4
    distill_weight: float = 1.0
    gt_weight: float = 0.1
    texture_weight: float = 0.0  # L1 between the log local detail energies of the student's and the teacher's outputs
    texture_levels: int = 1  # scales the texture loss compares: 1 the finest only, 3 also at 2 and 4 pixels
    target: str = "hr-walk"  # the teacher's output to distil: "hr-walk" (AddSR's HR-regulated) or "default"
    adversarial_weight: float = 0.01
    adversarial_start: int = 100  # steps of distillation alone before the discriminator's loss counts
    conditional: bool = False  # the discriminator also sees the prior's estimate (True: texture must fit the input)
    width: float = 1.0  # the student's channels as a fraction of the teacher's (1: a copy; below, pruned from it)
    init: str | None = None  # a student weights file of this width to start from instead (a run folder resumes over it)
    dtype: str = "auto"  # autocast of the networks' calls: auto is bf16 on CUDA and on a CPU with bf16 instructions
    ema_decay: float = 0.99
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    log_every: int = 25
    save_every: int = 100
    max_minutes: float | None = None
    # a compact prior's weights file: the student starts from (and is conditioned on) its estimate of a crop
    # while the teacher's target still comes from the cache's x4plus estimate, so the student learns to make
    # from the cheap prior's estimate what the teacher makes from x4plus's; None: the cache's estimate
    student_estimate: str | None = None
    student_estimate_share: float = 1.0  # the fraction of crops given that estimate (the rest keep the cache's)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: ``(B, C, H, W)`` in ``[-1, 1]`` -> ``(B, 1, H/8, W/8)`` realness logits. With
    ``C = 6`` it is conditional (pix2pix): the image and the prior's estimate side by side."""

    def __init__(self, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out in (width, 2 * width, 4 * width):
            layers += [nn.utils.spectral_norm(nn.Conv2d(channels, out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.utils.spectral_norm(nn.Conv2d(channels, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def student_from(teacher: CompactSR, width: float) -> CompactSR:
    """The student: the teacher's architecture (``width`` x its channels per level, and of its
    GroupNorm groups, so every group keeps the teacher's group size) over the same prior, which it
    shares (not a second copy); at ``width`` 1 a copy of the teacher's weights, below it the
    teacher pruned to the first channels of each level (``prune.py``) with a zero output layer."""
    config = teacher.config.to_dict()
    if width != 1.0:
        groups = max(1, round(config["norm_num_groups"] * width))
        config["norm_num_groups"] = groups
        config["block_out_channels"] = tuple(max(groups, round(c * width / groups) * groups)
                                             for c in config["block_out_channels"])
    student = CompactSR(CompactConfig.from_dict(config))
    object.__setattr__(student, "prior", teacher.prior)  # held outside the module tree, as the teacher holds it
    if width == 1.0:
        student.load_state_dict(teacher.state_dict())
    else:  # an untrained student returns the prior's estimate
        prune_into(student.unet, teacher.unet, student.config.block_out_channels,
                   teacher.config.block_out_channels, teacher.config.layers_per_block)
        for name in ("weight", "bias"):
            torch.nn.init.zeros_(getattr(student.unet.conv_out, name))
    return student


def train_distill(teacher: CompactSR, cfg: DistillConfig, student_out: Path,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) the one-step student of ``teacher``; write its EMA weights to ``student_out``."""
    device = training_device(cfg.device)
    walk = distill_walk(teacher)
    if cfg.target not in TARGETS:
        raise ConfigError(f"unknown distillation target {cfg.target!r}; known: {', '.join(TARGETS)}")
    if not 1 <= cfg.texture_levels <= MAX_TEXTURE_LEVELS:
        raise ConfigError(f"texture levels must be 1 to {MAX_TEXTURE_LEVELS}, got {cfg.texture_levels}")
    if not 0 <= cfg.student_estimate_share <= 1:
        raise ConfigError(f"the student estimate's share must be in [0, 1], got {cfg.student_estimate_share}")
    dtype = training_dtype(cfg.dtype, device)
    stand_in = None if cfg.student_estimate is None else prior_from_file(cfg.student_estimate)
    if stand_in is not None:
        stand_in = stand_in.to(device)
        stand_in.use_dtype(dtype)
    cache_prior = read_cache_config(Path(cfg.cache))["prior"]
    if cache_prior != teacher.config.prior:
        raise ConfigError(f"the cache holds {cache_prior} outputs; the teacher refines {teacher.config.prior}")
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = student_from(teacher, cfg.width)
    if cfg.init is not None:
        initial = load_student(cfg.init, teacher)
        if initial.config.block_out_channels != student.config.block_out_channels:
            raise ConfigError(f"{cfg.init} is a student of channels {initial.config.block_out_channels}; "
                              f"`width` {cfg.width:g} makes {student.config.block_out_channels}")
        student.load_state_dict(initial.state_dict())
    student = student.to(device).train()
    params = list(student.parameters())
    for p in params:
        p.requires_grad_(True)
    object.__setattr__(student, "prior", None)  # the EMA copy must not deep-copy the prior's runtime
    ema = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    for model in (student, ema.module):
        object.__setattr__(model, "prior", teacher.prior)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    d_channels = 6 if cfg.conditional else 3  # the image, and with ``conditional`` the prior's estimate beside it
    discriminator = PatchDiscriminator(in_channels=d_channels).to(device)
    d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=cfg.discriminator_learning_rate, betas=(0.5, 0.999))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, d_path = out / "last.safetensors", out / "discriminator.safetensors"
    step = 0
    if state_path.is_file():
        step = load_training_state(state_path, student, ema, optimizer)
        d_state = load_file(str(d_path))
        if d_state["net.0.weight_orig"].shape[1] != d_channels:
            raise ConfigError(f"{d_path} holds a{'n un' if cfg.conditional else ' '}conditional discriminator; "
                              "resume with the setting it was trained with")
        discriminator.load_state_dict(d_state)
        log(f"resumed from {state_path} at step {step}")
    schedule = teacher.spec.schedule
    jumps = tuple(sorted({*TimestepsPolicy(walk).jumps, walk[0] + 1}))  # the walk's, and the student's one jump
    codebook = SkipCodebook.build(schedule, jumps).to(device)
    t_s, start_jump = walk[0], codebook.interval_index(walk[0] + 1)
    dataset = CacheDataset(Path(cfg.cache), cfg.crop, cfg.seed)
    loader = DataLoader(Subset(dataset, range(step * cfg.batch_size, cfg.steps * cfg.batch_size)),
                        batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True)
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 104_729 + step)
    config_dict = asdict(cfg) | {"walk": list(walk), "teacher": teacher.config.to_dict(), "resolved_dtype": str(dtype)}
    run_log = TrainingLog(out, cfg.steps, cfg.log_every, log)

    def checkpoint() -> None:
        save_training_state(state_path, student, ema, optimizer, step, config_dict)
        d_state = {k: v.detach().contiguous().cpu() for k, v in discriminator.state_dict().items()}
        atomic_write(d_path, lambda tmp: save_file(d_state, str(tmp)))
        save_backbone(ema.module, student_out, metadata={
            "adadiffsr.train_steps": str(step), "adadiffsr.student_timestep": str(t_s),
            "adadiffsr.distill": json.dumps(asdict(cfg))})

    for lr_img, prior_img, hr_img in loader:
        lr_img, prior_img, hr_img = (normalize(b.to(device)) for b in (lr_img, prior_img, hr_img))
        with torch.no_grad():
            cond = teacher.condition(lr_img, prior_img)
            estimate = teacher.estimate(cond)
            assert estimate is not None
            noise = torch.randn(estimate.shape, generator=generator, device=device)
            t = torch.full((estimate.shape[0],), t_s, dtype=torch.long, device=device)
            student_cond = cond
            if stand_in is not None:
                pick = torch.Generator().manual_seed(cfg.seed * 7_919 + step)  # apart from the noise's stream
                swap = (torch.rand(len(lr_img), generator=pick) < cfg.student_estimate_share).to(device)
                own = torch.where(swap[:, None, None, None], stand_in(lr_img), prior_img)
                student_cond = teacher.condition(lr_img, own)
            x_student = add_noise(schedule, teacher.estimate(student_cond).float(), t, noise)
            if cfg.target == "default":
                target = default_target(teacher, codebook, walk, estimate.float(), cond, noise, generator, dtype)
            else:
                x_teacher = add_noise(schedule, teacher.encode(hr_img).float(), t, noise)  # the HR-regulated start
                target = teacher_walk(teacher, codebook, walk, x_teacher, cond, generator, dtype)
        def judged(image: Tensor, prior_img: Tensor = prior_img) -> Tensor:  # what the discriminator sees
            return torch.cat([image, prior_img], dim=1) if cfg.conditional else image

        k_idx = torch.full_like(t, start_jump)
        with autocast(device, dtype):
            prediction = student.predict(x_student, t, student_cond)
        x0, _ = denoise_step(codebook, student.spec, prediction.float(), x_student, t, k_idx)
        fake = student.decode(x0)
        target_img = student.decode(target)
        losses = {"distill": F.l1_loss(x0, target), "gt": F.l1_loss(fake, hr_img),
                  "texture": texture_loss(fake, target_img, levels=cfg.texture_levels)}
        adversarial_on = step >= cfg.adversarial_start and cfg.adversarial_weight > 0
        with autocast(device, dtype):
            realness = discriminator(judged(fake)).float() if adversarial_on else None
        losses["adversarial"] = -realness.mean() if realness is not None else fake.new_zeros(())
        loss = (cfg.distill_weight * losses["distill"] + cfg.gt_weight * losses["gt"]
                + cfg.texture_weight * losses["texture"] + cfg.adversarial_weight * losses["adversarial"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update_parameters(student)
        with autocast(device, dtype):
            real_logits = discriminator(judged(hr_img)).float()
            fake_logits = discriminator(judged(fake.detach())).float()
        d_loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        step += 1
        values = {key: float(value.detach()) for key, value in losses.items()} | {"d": float(d_loss.detach())}
        with torch.no_grad():  # the student's detail over the teacher's: 1 draws as much, below it smoother
            values |= {key: float(detail_ratio(fake, target_img, level=level)) for level, key in enumerate(DETAIL_RATIOS)}
        run_log.losses(step, values)
        if save_or_stop(step, cfg.save_every, cfg.max_minutes, run_log.start, checkpoint, log):
            break
    checkpoint()
    run_log.close()
    return {"steps": step, "student": str(student_out), "walk": list(walk), "t_s": t_s, "dtype": str(dtype),
            "parameters": sum(p.numel() for p in params), "teacher_parameters": sum(p.numel() for p in teacher.parameters())}
