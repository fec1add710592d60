"""What one upscale runs besides the model: ``UpscaleConfig``, composed of each part's own settings.

    UpscaleConfig(policy="grouped", groups=GroupSettings(budget=1.0), tiling=TilingSettings(tile=64))
    UpscaleConfig(policy="grouped", budget=1.0, tile=64)        # the same: a part's field by its name

The parts own their fields and defaults, and check them when made:

- ``sampling`` (``SamplingOptions``): the walk every policy shares: steps, interval, strength,
  timesteps, update rule, eta, spacing; None means the model's own default;
- ``groups`` (``policies.groups.GroupSettings``): the grouped policy's thresholds, budget and the
  groups the student takes;
- ``dtss`` (``policies.dtss.DTSSPolicy``): the adaptive policy's own frozen config, as tuned for the
  shipped model (``policies.dtss.SHIPPED``);
- ``tiling`` (``engine.pipeline.TilingSettings``): tile, overlap and the fusion of overlaps;
- ``routing`` (``prior.routing.PriorRouting``): which regions take the full prior when stage 1 is routed.

The rest (the policy's name, the student, seed, batch size, gain, PFJ fidelity, colour fix, output
scale) are the config's own. The flat names (what the CLI's flags, the weights files' sampling
defaults and the report's ``settings`` use) are the parts' field names: ``options()`` lists them
and ``with_options()`` sets them, so no name is declared twice.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, replace
from typing import Any

from .core.schedule import UPDATE_RULES, UpdateRule
from .engine.pipeline import FUSIONS, TilingSettings
from .engine.sampler import SPACINGS
from .errors import ConfigError
from .policies.dtss import SHIPPED as DTSS_SHIPPED
from .policies.dtss import DTSSPolicy
from .policies.groups import GroupSettings
from .policies.registry import POLICIES
from .policies.timesteps import TimestepsPolicy
from .prior.routing import PriorRouting

GAINS: tuple[str, ...] = ("auto", "exact", "learned")  # auto: the gain the policy or PFJ needs, none otherwise
LEGACY_GAINS = {"none": "auto"}  # what --gain none meant before it was called auto; read until 0.3


@dataclass(frozen=True)
class SamplingOptions:
    """The walk to the clean sample, whatever the policy; None = the model's default."""

    steps: int | None = None  # uniform sampling in this many steps from the start timestep (overrides the
    # interval); 0 = no diffusion step: the prior's estimate (the bicubic upsample for a model without one)
    interval: int | None = None  # DDPM steps per jump for uniform sampling; None = UniformPolicy's (20: 50 steps)
    strength: float | None = None  # start at round(strength * T) - 1 from the noised estimate
    timesteps: tuple[int, ...] | None = None  # the walk of the walk policies, e.g. (399, 149, 29)
    rule: UpdateRule | None = None  # update rule through the codebook: ddim or ddpm
    eta: float | None = None  # DDIM stochasticity
    spacing: str = "trailing"  # first timestep: T-1 (trailing) or diffusers' default (leading)

    def __post_init__(self) -> None:
        if self.rule is not None and self.rule not in UPDATE_RULES:
            raise ConfigError(f"unknown update rule {self.rule!r}; choose one of {', '.join(UPDATE_RULES)}")
        if self.interval is not None and self.interval < 1:
            raise ConfigError(f"interval must be at least 1, got {self.interval}")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"steps must not be negative, got {self.steps}")
        if self.timesteps is not None:
            TimestepsPolicy(tuple(self.timesteps))  # checks them
        if self.strength is not None and not 0 <= self.strength <= 1:
            raise ConfigError(f"strength must be in [0, 1], got {self.strength}")
        if self.eta is not None and not 0 <= self.eta <= 1:
            raise ConfigError(f"eta must be in [0, 1], got {self.eta}")
        if self.spacing not in SPACINGS:
            raise ConfigError(f"unknown spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")


PARTS: dict[str, type] = {"sampling": SamplingOptions, "groups": GroupSettings, "dtss": DTSSPolicy,
                          "tiling": TilingSettings, "routing": PriorRouting}
OPTION_ALIASES = {"group_thresholds": "thresholds"}  # flat names from before the config was composed; read until 0.3
REMOVED_IN = "0.3"  # the release that drops the old spellings above (a FutureWarning until then)


def deprecated(old: str, new: str) -> None:
    """The one warning every old spelling gives."""
    warnings.warn(f"{old} is the old spelling of {new} and goes in adadiffsr {REMOVED_IN}", FutureWarning, stacklevel=4)
_PART_OF = {f.name: part for part, kind in PARTS.items() for f in dataclasses.fields(kind)}


@dataclass(frozen=True, init=False)
class UpscaleConfig:
    """Everything one upscale needs besides the model; the CLI's flags map onto its options."""

    policy: str | None = None  # the region policy: a name in POLICIES ("grouped", "adaptive", ...); None = the model's
    sampling: SamplingOptions = SamplingOptions()
    groups: GroupSettings = GroupSettings()  # noqa: RUF009 (frozen, so one shared default is safe)
    dtss: DTSSPolicy = DTSS_SHIPPED
    tiling: TilingSettings = TilingSettings()  # noqa: RUF009 (frozen)
    routing: PriorRouting = PriorRouting()  # noqa: RUF009 (frozen): how regions choose their prior
    # stage 1: "routed" (the compact prior everywhere, the full one where a region needs it), or one prior's
    # name for the whole image (the backbone's own, or the compact one); None = the model's default
    prior: str | None = None
    # the grouped policy's student: the tiles of ``groups.student_groups`` take one step of the distilled
    # student instead of the teacher's walk; None = the model's default (off unless its weights file says so)
    student: bool | None = None
    batch_tiles: int = 8  # 0 = size batches from free memory
    seed: int = 0
    color_fix: str = "none"
    outscale: float | None = None  # final scale; None = the backbone's own
    gain: str = "auto"  # information gain per step (MMLE): auto, exact (the metrics) or learned (the regressor)
    fidelity: float | None = None  # 0 = most texture, 1 = faithful (PFJ and the prior tail); None = the model's
    # default (0.5 where its weights file names none); ignored without a PFJ file

    def __init__(self, policy: str | None = None, *, sampling: SamplingOptions | None = None,
                 groups: GroupSettings | None = None, dtss: DTSSPolicy | None = None,
                 tiling: TilingSettings | None = None, routing: PriorRouting | None = None,
                 _partial: bool = False, **options: Any) -> None:
        """The parts as given (or their defaults), then ``options`` by name: the config's own fields
        and any part's (``steps=3`` is ``sampling=SamplingOptions(steps=3)``). ``partial()`` makes one
        whose options are not yet checked against its policy."""
        own = {f.name for f in dataclasses.fields(self)} - set(PARTS)
        parts: dict[str, Any] = {"sampling": sampling, "groups": groups, "dtss": dtss, "tiling": tiling,
                                 "routing": routing}
        split: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        values: dict[str, Any] = {"policy": policy}
        for name, value in options.items():
            if name in OPTION_ALIASES:
                deprecated(repr(name), repr(OPTION_ALIASES[name]))
            name = OPTION_ALIASES.get(name, name)
            value = tuple(value) if isinstance(value, list) else value  # weights files store lists
            if name in _PART_OF:
                split[_PART_OF[name]][name] = value
            elif name in own:
                values[name] = value
            else:
                raise ConfigError(f"UpscaleConfig has no option {name!r}")
        for part, kind in PARTS.items():
            given = parts[part] if parts[part] is not None else _default(part)
            values[part] = replace(given, **split[part]) if split[part] else given
            if not isinstance(values[part], kind):
                raise ConfigError(f"{part} must be a {kind.__name__}, got {type(values[part]).__name__}")
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, values.get(f.name, f.default))
        self._check(partial=_partial)

    @classmethod
    def partial(cls, **options: Any) -> UpscaleConfig:
        """Options that a call completes (a model's defaults): each checked, None where unset, but not
        against the policy, since the call may name another (the student serves the grouped one only)."""
        return cls(_partial=True, **options)

    def _check(self, *, partial: bool) -> None:
        """How the parts fit together, checked once, when the config is made (each part checks its own)."""
        if self.policy is not None and self.policy not in POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if self.policy is not None and not partial:
            POLICIES[self.policy].check(self)  # what only another policy reads
        if self.batch_tiles < 0:
            raise ConfigError(f"batch-tiles must be at least 1 (or 0 for auto), got {self.batch_tiles}")
        if self.gain in LEGACY_GAINS:
            deprecated(f"gain={self.gain!r}", f"gain={LEGACY_GAINS[self.gain]!r}")
            object.__setattr__(self, "gain", LEGACY_GAINS[self.gain])
        if self.gain not in GAINS:
            raise ConfigError(f"unknown gain {self.gain!r}; choose one of {', '.join(GAINS)}")
        if self.tiling.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.tiling.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if self.fidelity is not None and not 0 <= self.fidelity <= 4:
            raise ConfigError(f"fidelity must be in [0, 4], got {self.fidelity}")
        if self.outscale is not None and not 0 < self.outscale <= 16:
            raise ConfigError(f"scale must be in (0, 16], got {self.outscale}")

    def with_options(self, **options: Any) -> UpscaleConfig:
        """A copy with ``options`` set by name, the parts' fields included (``dataclasses.replace``
        by flat name)."""
        own = {name: value for name, value in self.options().items() if name not in _PART_OF}
        return UpscaleConfig(sampling=self.sampling, groups=self.groups, dtss=self.dtss, tiling=self.tiling,
                             routing=self.routing, **{**own, **options})

    def options(self) -> dict[str, Any]:
        """Every option by its flat name: the config's own fields and the parts' (the report's settings)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in PARTS}
        for part in PARTS:
            flat.update(dataclasses.asdict(getattr(self, part)))
        return flat

    @staticmethod
    def option_fields() -> dict[str, dataclasses.Field[Any]]:
        """The field behind each flat option name (what the benchmark parses method settings with)."""
        fields = {f.name: f for f in dataclasses.fields(UpscaleConfig) if f.name not in PARTS}
        for kind in PARTS.values():
            fields.update({f.name: f for f in dataclasses.fields(kind)})
        return fields


def _default(part: str) -> Any:
    return next(f.default for f in dataclasses.fields(UpscaleConfig) if f.name == part)
