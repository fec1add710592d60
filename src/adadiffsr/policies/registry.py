"""The region policies a user picks by name (``--policy``): how each is built from the settings.

``POLICIES`` is the one list the CLI, the API, the benchmark and the page read. A policy is built
once per upscale from an object with the parts of ``PolicyFields`` (``UpscaleConfig`` has them), and
its plan for an image (each tile's start and network from its difficulty) from the same object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..core.policy import PlanFn, Policy, TilePlan
from ..errors import ConfigError
from .dtss import DTSSPolicy
from .groups import GroupSettings, group_steps, student_tiles, walk_starts
from .timesteps import TimestepsPolicy
from .uniform import UniformPolicy
from .walk_dtss import WalkDTSSPolicy


class WalkFields(Protocol):
    """The shared walk settings a policy reads (``config.SamplingOptions``)."""

    @property
    def steps(self) -> int | None: ...
    @property
    def interval(self) -> int | None: ...
    @property
    def timesteps(self) -> tuple[int, ...] | None: ...


class PolicyFields(Protocol):
    """The settings policies are built from: the walk, and DTSS's own frozen config."""

    @property
    def sampling(self) -> WalkFields: ...
    @property
    def dtss(self) -> DTSSPolicy: ...
    @property
    def groups(self) -> GroupSettings: ...
    @property
    def student(self) -> bool | None: ...


@dataclass(frozen=True)
class PolicyKind:
    """A policy a user can name."""

    name: str
    build: Callable[[PolicyFields], Policy]
    walk: bool  # follows a fixed timestep walk (``timesteps``), shared with the model's default
    help: str
    grouped: bool = False  # tiles join the walk where the patch-adaptive groups say (budget, student)
    needs_gain: bool = False  # decides from the information gain (MMLE) along the way
    first_gain: str = "zero"  # the sampler's ``first_gain``: a tile's first gain 0, or against its starting estimate
    plan: Callable[[PolicyFields], PlanFn | None] = lambda c: None  # each tile's start and network; None: all alike
    paced: bool = False  # its pace is the call's: an interval or a step count (the uniform policy)
    student_only: bool = False  # every tile takes one step of the distilled student

    def check(self, c: PolicyFields) -> None:
        """Refuse the settings that only another policy reads, naming the policy that does."""
        s = c.sampling
        if not self.paced and (s.interval is not None or s.steps):
            name, value = ("interval", s.interval) if s.interval is not None else ("steps", s.steps)
            raise ConfigError(f"{name}={value} sets the pace of the {PACED_POLICY} policy; pass "
                              f"policy={PACED_POLICY!r} (the {self.name} policy sets its own)")
        if c.student and not self.grouped:
            raise ConfigError(f"the student takes regions of the grouped policy's plan; pass policy={GROUPED_POLICY!r} "
                              f"(or policy={STUDENT_POLICY!r} for the student everywhere), not {self.name!r}")
        if c.groups.budget is not None and not self.grouped:
            raise ConfigError(f"a budget sets the steps of patch-adaptive groups; pass policy={GROUPED_POLICY!r} "
                              f"(the {self.name} policy sets its own)")


def _uniform(c: PolicyFields) -> Policy:
    s = c.sampling
    return TimestepsPolicy(tuple(s.timesteps)) if s.timesteps else UniformPolicy(s.interval or UniformPolicy.interval)


def _walk(c: PolicyFields) -> Policy:
    return TimestepsPolicy(tuple(c.sampling.timesteps or ()))


def _first_step(c: PolicyFields) -> Policy:
    return TimestepsPolicy(tuple(c.sampling.timesteps or ())[:1])


def _dtss(c: PolicyFields) -> Policy:
    return c.dtss


def _grouped_plan(c: PolicyFields) -> PlanFn:
    """Each tile's start on the walk from its difficulty (``policies/groups.py``), and with the student
    on, one step of the student from the walk's first timestep for the groups it takes."""
    walk, groups = tuple(c.sampling.timesteps or ()), c.groups

    def plan(difficulty: Tensor) -> TilePlan:
        steps = group_steps(difficulty, groups, len(walk))
        if not c.student:
            return TilePlan(walk_starts(walk, steps))
        routed = student_tiles(steps, groups.student_groups)
        return TilePlan(torch.where(routed, walk[0], walk_starts(walk, steps)), routed)

    return plan


def _student_plan(c: PolicyFields) -> PlanFn | None:
    """The student for every tile, from the walk's first timestep."""
    walk = tuple(c.sampling.timesteps or ())
    if not walk:
        return None
    return lambda difficulty: TilePlan(torch.full_like(difficulty, walk[0], dtype=torch.long),
                                       torch.ones_like(difficulty, dtype=torch.bool))


def _walk_dtss(c: PolicyFields) -> Policy:
    d = c.dtss
    return WalkDTSSPolicy(tuple(c.sampling.timesteps or ()), tau=d.tau, drop=d.drop, fr_change=d.fr_change)


POLICIES: dict[str, PolicyKind] = {
    "grouped": PolicyKind("grouped", _walk, True,
                          "each region joins the walk where its difficulty says (0 steps for flat ones)", grouped=True,
                          plan=_grouped_plan),
    "grouped-dtss": PolicyKind("grouped-dtss", _walk_dtss, True,
                               "the grouped starts, then DTSS along the walk: the next step, straight to the clean "
                               "sample, or an early exit, from each region's gain", grouped=True, needs_gain=True,
                               first_gain="estimate", plan=_grouped_plan),
    "adaptive": PolicyKind("adaptive", _dtss, False, "DTSS: each region at its own pace from its information gain",
                           needs_gain=True),
    "timesteps": PolicyKind("timesteps", _walk, True, "one walk for all regions"),
    "distilled": PolicyKind("distilled", _first_step, True,
                            "one step of the distilled student (NAME.student.safetensors) from the walk's first timestep",
                            plan=_student_plan, student_only=True),
    "uniform": PolicyKind("uniform", _uniform, False, "one fixed interval for all regions", paced=True),
}
WALK_POLICIES: tuple[str, ...] = tuple(name for name, kind in POLICIES.items() if kind.walk)
GROUPED_POLICIES: tuple[str, ...] = tuple(name for name, kind in POLICIES.items() if kind.grouped)
# the policies whose regions may take fewer steps than uniform sampling's (skipped, or stopped early)
ADAPTIVE_POLICIES: tuple[str, ...] = tuple(name for name, kind in POLICIES.items() if kind.grouped or kind.needs_gain)
PACED_POLICY: str = next(name for name, kind in POLICIES.items() if kind.paced)  # what an interval or steps imply
GROUPED_POLICY: str = GROUPED_POLICIES[0]  # what a budget implies, and the page's student preset
WALK_POLICY: str = next(name for name, kind in POLICIES.items()  # what a walk (timesteps) implies
                        if kind.walk and not (kind.grouped or kind.needs_gain or kind.student_only))
STUDENT_POLICY: str = next(name for name, kind in POLICIES.items() if kind.student_only)  # the student everywhere
# AdaDiffSR's own: DTSS at each region's pace, the default of a model whose weights file names no policy
DTSS_POLICY: str = next(name for name, kind in POLICIES.items() if kind.needs_gain and not kind.walk)
