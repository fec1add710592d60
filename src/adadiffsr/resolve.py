"""What an upscale runs: a call's ``UpscaleConfig`` with the model's defaults filled in.

``resolve_config`` applies, in this order:

1. the policy the call implies when it names none (a budget: grouped; a walk: timesteps; a pace: uniform);
2. the model's own defaults (``model_defaults``: its weights file's sampling over ``SAMPLING_FALLBACK``)
   for every option the call left unset, minus those that belong to another policy;
3. the student: the distilled policy's start, and the grouped policy's student where it fits the walk;
4. the pace as numbers: strength, uniform interval, and ``steps`` as an evenly spaced walk;
5. stage 1: the prior's name (the model's default where unset) and, routed, its share.

``ModelFacts`` is all it needs to know of a loaded model, so it is tested without loading one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

from .config import OPTION_ALIASES, REMOVED_IN, UpscaleConfig
from .core.backbone import BackboneSpec
from .core.step import strength_timestep
from .errors import ConfigError, WeightsError
from .policies.registry import (
    DTSS_POLICY,
    GROUPED_POLICIES,
    GROUPED_POLICY,
    PACED_POLICY,
    POLICIES,
    WALK_POLICIES,
    WALK_POLICY,
)
from .policies.timesteps import even_walk
from .policies.uniform import UniformPolicy
from .prior.routing import ROUTED, default_share

# What an upscale runs when neither the call nor the model's weights file says otherwise. A model
# ships its own sampling defaults in its config (``BackboneSpec.sampling``: the refiner's steps,
# strength and update rule, say), which take precedence over these.
# A distilled student beside the weights runs by default (quietly off where it cannot: another walk, another
# policy): on the 8 validation photos the shipped one took 0.85x the time of the teacher's walk at -0.05 dB
# PSNR-Y and -1.8% NIQE, and -0.07 dB, -4.5% NIQE on 14 photos of a source never seen (docs/benchmarks.md).
# PFJ at 0.5 was picked for the first model on its training photos (+0.3 dB, NIQE -2.8% on its held-out ones).
SAMPLING_FALLBACK = UpscaleConfig.partial(policy=DTSS_POLICY, rule="ddim", eta=0.0, student=True, fidelity=0.5)
# What weights files written before the rename call a sampling key; read with a warning until REMOVED_IN.
LEGACY_SAMPLING_KEYS = {"sampler": "policy"}


@dataclass(frozen=True)
class ModelFacts:
    """What resolving a config needs to know of a loaded model."""

    spec: BackboneSpec
    name: str  # the backbone's class, for messages
    starts_from_estimate: bool
    has_student: bool
    student_timestep: int | None  # where the student was distilled to start; None: the walk's first
    priors: tuple[str, ...]  # what ``prior`` may name, the model's default first; () without a prior
    device_type: str  # cpu, cuda, mps: the routed prior's share depends on it


def model_defaults(spec: BackboneSpec) -> UpscaleConfig:
    """The model's sampling defaults over ``SAMPLING_FALLBACK``, as a partial config (None = unset);
    a legacy key is renamed (older files say ``sampler``), and a name no config has
    or a value no config takes is the weights file's error."""
    renamed = {**LEGACY_SAMPLING_KEYS, **OPTION_ALIASES}
    own = {renamed.get(key, key): value for key, value in spec.sampling.items()}
    unknown = sorted(set(own) - set(UpscaleConfig.option_fields()))
    if unknown:
        raise WeightsError(f"the weights file's sampling defaults name an option no config has: {unknown[0]!r}")
    try:
        return UpscaleConfig.partial(**{**SAMPLING_FALLBACK.options(), **own})
    except ConfigError as error:
        raise WeightsError(f"the weights file's sampling defaults: {error}") from None


def implied_policy(config: UpscaleConfig) -> UpscaleConfig:
    """Step 1: a budget asks for the grouped policy, a walk for timesteps, a pace for uniform."""
    s = config.sampling
    if config.policy is None and config.groups.budget is not None:
        return replace(config, policy=GROUPED_POLICY)
    if config.policy is None and s.timesteps is not None:
        return replace(config, policy=WALK_POLICY)
    if config.policy is None and (s.steps is not None or s.interval is not None):
        return replace(config, policy=PACED_POLICY)
    return config


def with_model_defaults(config: UpscaleConfig, defaults: UpscaleConfig) -> UpscaleConfig:
    """Step 2: the model's defaults for what the call left unset (None), but not its step count and walk
    for another policy, nor its step count over an explicit interval, nor its student off the grouped plan."""
    called = config.options()
    unset = {k: v for k, v in defaults.options().items() if v is not None and called[k] is None}
    if config.policy is not None and config.policy != defaults.policy:
        unset.pop("steps", None)  # the model's step count and walk belong to its own sampler
        if not (config.policy in WALK_POLICIES and defaults.policy in WALK_POLICIES):
            unset.pop("timesteps", None)
    if unset.get("steps") is not None and config.sampling.interval is not None:
        unset.pop("steps")  # an explicit interval wins over the model's step count
    if (config.policy or unset.get("policy")) not in GROUPED_POLICIES:
        unset.pop("student", None)  # the model's student serves the grouped plan only
    return config.with_options(**unset)


def with_student(config: UpscaleConfig, model: ModelFacts, asked: bool) -> UpscaleConfig:
    """Step 3: the distilled policy starts where its student was distilled; the grouped policy's
    student runs where it fits the walk (``asked``: the call asked for it, so not fitting is an error)."""
    if POLICIES[str(config.policy)].student_only:
        if not model.has_student:
            raise WeightsError("the distilled policy needs a student beside the weights (NAME.student.safetensors; "
                               "train one: adadiffsr train distill)")
        first = tuple(config.sampling.timesteps or ())[:1]
        start = (model.student_timestep,) if model.student_timestep is not None else first
        config = config.with_options(timesteps=start or None)
    if config.student:  # asked for, or the model's default (then quietly off where it cannot run)
        walk = tuple(config.sampling.timesteps or ())
        fits = model.student_timestep is None or walk[:1] == (model.student_timestep,)
        if asked and not model.has_student:
            raise WeightsError("student=True needs a student beside the weights (NAME.student.safetensors; "
                               "train one: adadiffsr train distill)")
        if asked and not fits:
            raise ConfigError(f"the student was distilled to start at timestep {model.student_timestep}; this walk "
                              f"starts at {walk[0] if walk else None} (student=False, or a walk from "
                              f"{model.student_timestep})")
        if not model.has_student or not fits:
            config = replace(config, student=False)
    return replace(config, student=bool(config.student) and config.policy in GROUPED_POLICIES)


def with_pace(config: UpscaleConfig, model: ModelFacts) -> UpscaleConfig:
    """Step 4: the start (strength), the uniform interval, and ``steps`` as an evenly spaced walk of
    exactly that many steps from the start (trailing spacing; the nearest interval otherwise)."""
    s, total = config.sampling, model.spec.schedule.num_train_timesteps
    if config.policy in WALK_POLICIES and not s.timesteps:
        raise ConfigError(f"the {config.policy} policy needs a timestep list (timesteps=(399, 149, 29))")
    strength = model.spec.default_strength if s.strength is None else s.strength
    if config.policy in WALK_POLICIES and s.steps != 0:
        strength = (s.timesteps[0] + 1) / total  # type: ignore[index]
    if s.steps == 0:
        strength = 0.0
    interval, walk = s.interval, s.timesteps
    if POLICIES[str(config.policy)].paced:
        interval, walk = interval or UniformPolicy.interval, None
    if s.steps:
        first = strength_timestep(strength, total)
        interval = max(1, math.ceil((first + 1) / s.steps))
        if s.spacing == "trailing":  # exactly that many steps, evenly spaced
            walk = even_walk(first, min(s.steps, first + 1))
    if strength < 1 and not model.starts_from_estimate:
        raise ConfigError(f"strength below 1 and steps=0 need a backbone that starts from an estimate; "
                          f"{model.name} starts from pure noise only")
    return replace(config, sampling=replace(s, strength=strength, interval=interval, timesteps=walk))


def with_prior(config: UpscaleConfig, model: ModelFacts) -> UpscaleConfig:
    """Step 5: stage 1 as resolved: the prior's name (the model's default where unset) and, routed, the share."""
    if not model.priors:
        if config.prior is not None:
            raise ConfigError(f"prior={config.prior!r}: this backbone has no prior")
        return config
    name = config.prior or model.priors[0]
    if name not in model.priors:
        raise ConfigError(f"unknown prior {name!r} for this model; choose one of {', '.join(model.priors)}")
    share = config.routing.prior_share
    if name == ROUTED and share is None:
        share = default_share(model.device_type)
    return replace(config, prior=name, routing=replace(config.routing, prior_share=share))


def resolve_config(config: UpscaleConfig, model: ModelFacts) -> UpscaleConfig:
    """``config`` with the model's defaults filled in (the module docstring's five steps)."""
    total = model.spec.schedule.num_train_timesteps  # T is the backbone's
    for name, value in (("interval", config.sampling.interval), ("steps", config.sampling.steps)):
        if value is not None and value > total:
            raise ConfigError(f"{name} must be at most {total} (the backbone's training timesteps), got {value}")
    renamed = {**LEGACY_SAMPLING_KEYS, **OPTION_ALIASES}
    for old in sorted(set(model.spec.sampling) & set(renamed)):
        warnings.warn(f"the weights file's sampling defaults call {renamed[old]!r} {old!r}, a spelling read until "
                      f"adadiffsr {REMOVED_IN}; re-save the file with the new name", FutureWarning, stacklevel=3)
    asked_student = bool(config.student)
    config = with_model_defaults(implied_policy(config), model_defaults(model.spec))
    config = with_student(config, model, asked_student)
    return with_prior(with_pace(config, model), model)
