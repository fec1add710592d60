"""The page's two presets, the look (fidelity against realism) and the speed (how much compute), as configs.

Both are pure functions of the model's resolved defaults, so they mean the same thing for every
model: a look moves where the walk starts (and the PFJ strength where the model has one), a speed
sets how many steps it takes. Where the model's default runs its distilled student with a PFJ trained
for it (the shipped model), a look moves PFJ's strength alone: the student starts where it was distilled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import UpscaleConfig, Upscaler
from ..policies.registry import GROUPED_POLICY, PACED_POLICY, POLICIES, WALK_POLICIES


@dataclass(frozen=True)
class Look:
    label: str
    start: float  # the start timestep (and every timestep of a fixed walk) times this
    fidelity: float | None  # PFJ strength; None = the model's default
    rule: str | None  # the update rule; None = the model's
    help: str


@dataclass(frozen=True)
class Speed:
    label: str
    step_factor: float | None  # the model's step count times this; None = no diffusion step (the prior alone)
    help: str
    student: bool = False  # the distilled student takes every region the plan steps (shown for models with one)


# Measured for the shipped refiner on 8 validation photos (docs/benchmarks.md, "The page's presets"):
# against Balanced, Faithful has +0.0015 SSIM and fewer artefacts by PIQE at 2-6% worse NIQE;
# Detailed (DDIM) has 1-4% better NIQE at 0.1-0.25 dB lower PSNR. Small trades, reported as such.
LOOKS: dict[str, Look] = {
    "faithful": Look("Faithful", 0.6, 1.0, None, "closest to the input: less is invented (the prior's faithful "
                     "tail and PFJ at full strength, and the walk starts later where the model has no PFJ for its "
                     "student)"),
    "balanced": Look("Balanced", 1.0, None, None, "the model's own setting"),
    "detailed": Look("Detailed", 1.0, 0.0, "ddim", "more natural texture by NIQE, a little lower PSNR"),
}
SPEEDS: dict[str, Speed] = {
    "fast": Speed("Fast", None, "the compact prior instead of Real-ESRGAN's, then the model's own steps: about "
                   "1/13 of Standard's time, as good on mild inputs, softer on heavily degraded ones (a model "
                   "without one: its restoration prior alone, no diffusion step)"),
    "quick": Speed("Quick", 1.0, "one step of the distilled student where the plan takes any (the look's start "
                    "does not apply: the student starts where it was distilled)", student=True),
    "standard": Speed("Standard", 1.0, "the model's own setting (the shipped model: one step of its student "
                       "where the plan takes any, as Quick)"),
    "thorough": Speed("Thorough", 2.0, "twice the model's steps, the same start"),
}
DEFAULT_LOOK = "balanced"
DEFAULT_SPEED = "standard"
STEPS_WITHOUT_PRIOR = 5  # the Fast speed of a model with no prior: a few uniform steps from noise


def scale_walk(timesteps: tuple[int, ...], factor: float, num_train_timesteps: int) -> tuple[int, ...]:
    """Every timestep of a fixed walk times ``factor``, kept in ``0..T-1`` and strictly falling."""
    walk: list[int] = []
    for t in timesteps:
        scaled = min(num_train_timesteps - 1, max(0, round((t + 1) * factor) - 1))
        if walk and scaled >= walk[-1]:
            scaled = walk[-1] - 1
        if scaled < 0:
            break
        walk.append(scaled)
    return tuple(walk)


def speeds_for(upscaler: Upscaler) -> dict[str, Speed]:
    """The speeds this model can run (Quick only where a student lies beside its weights)."""
    return {k: v for k, v in SPEEDS.items() if not v.student or upscaler.has_student}


def preset_config(upscaler: Upscaler, look: str, speed: str, base: UpscaleConfig = UpscaleConfig()) -> UpscaleConfig:
    """``base`` (seed, tiles, colour fix, ...) with the look and speed applied to the model's defaults."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    if speed not in SPEEDS:
        raise ValueError(f"unknown speed {speed!r}; choose one of {', '.join(SPEEDS)}")
    chosen, spend = LOOKS[look], SPEEDS[speed]
    spec = upscaler.backbone.spec
    total = spec.schedule.num_train_timesteps
    resolved = upscaler.resolve(base)
    fidelity = resolved.fidelity if chosen.fidelity is None else chosen.fidelity
    if chosen.rule is not None:
        base = base.with_options(rule=chosen.rule)
    if spend.student:
        if not upscaler.has_student:
            raise ValueError("this model has no distilled student (adadiffsr train distill makes one)")
        return base.with_options(policy=GROUPED_POLICY, student=True, fidelity=fidelity)
    if spend.step_factor is None:
        if upscaler.prior_stages.stand_in is not None:  # held-out: about 0.07x the default's time (docs/benchmarks.md)
            return base.with_options(prior=upscaler.prior_stages.stand_in, fidelity=fidelity)
        if upscaler.backbone.prior is not None:
            return base.with_options(policy=PACED_POLICY, steps=0, fidelity=fidelity)
        return base.with_options(policy=PACED_POLICY, steps=STEPS_WITHOUT_PRIOR, fidelity=fidelity)
    strength = float(resolved.sampling.strength)  # type: ignore[arg-type]
    student_pfj = bool(resolved.student) and upscaler.pfj is not None and upscaler.pfj.config.student
    start = 1.0 if student_pfj and spend.step_factor == 1.0 else chosen.start  # PFJ alone moves the student's look
    if upscaler.backbone.starts_from_estimate:
        strength = min(1.0, strength * start)
    if resolved.policy in WALK_POLICIES and spend.step_factor == 1.0:
        walk = scale_walk(tuple(resolved.sampling.timesteps or ()), start, total)
        return base.with_options(policy=resolved.policy, timesteps=walk, fidelity=fidelity)
    if spend.step_factor == 1.0:
        return base.with_options(policy=resolved.policy, strength=strength, fidelity=fidelity)
    steps = model_steps(resolved, total)
    return base.with_options(policy=PACED_POLICY, steps=max(1, round(steps * spend.step_factor)), strength=strength,
                             fidelity=fidelity)


def model_steps(resolved: UpscaleConfig, num_train_timesteps: int) -> int:
    """How many steps a resolved config walks per tile (the adaptive sampler: at its coarsest pace)."""
    if resolved.policy in WALK_POLICIES:
        return len(resolved.sampling.timesteps or ())
    start = round(float(resolved.sampling.strength) * num_train_timesteps)  # type: ignore[arg-type]
    pace = resolved.sampling.interval if POLICIES[str(resolved.policy)].paced else max(resolved.dtss.intervals)
    return max(1, -(-start // pace))
