"""Stage 1 as a model offers it: its own prior over the whole image, the compact stand-in alone, or routed.

``PriorStages`` belongs to one loaded model (``Upscaler``): it lists what ``UpscaleConfig.prior`` may
name and turns a resolved choice into the function the pipeline calls, loading the compact prior the
first time a choice needs it.
"""

from __future__ import annotations

from functools import partial

import torch

from ..engine.pipeline import PriorStage
from ..engine.prior_route import PriorEstimate
from .routing import ROUTED, PriorRouting, routed_prior
from .runner import PRIORS, Prior, load_prior


class PriorStages:
    """The stage-1 choices of a model whose backbone runs ``own`` (None: a backbone without a prior)."""

    def __init__(self, own: Prior | None, device: torch.device, dtype: torch.dtype, files: dict[str, str | None]) -> None:
        self.own, self.device, self.dtype = own, device, dtype
        self.files = files  # the model's record of what was loaded from where, for reports
        self._loaded: dict[str, Prior] = {}
        if own is not None and own.fidelity_tail is not None and own.info.fidelity_tail is not None:
            self.files["prior_fidelity_tail"] = str(own.info.fidelity_tail())

    def tail_fidelity(self, prior: str | None, fidelity: float) -> float:
        """How far ``fidelity`` moved the own prior's tail toward its faithful one for a resolved choice
        (0 where the own prior does not run: the stand-in or the lite prior over the whole image)."""
        if self.own is None or prior not in (None, self.own.info.name, ROUTED):
            return 0.0
        return self.own.tail_fidelity(fidelity)

    @property
    def names(self) -> tuple[str, ...]:
        """What ``UpscaleConfig.prior`` may name, the default first: the backbone's own prior over the whole
        image, then ``routed`` and the stand-in where that prior has a cheaper one distilled from it
        (Real-ESRGAN x4plus: the compact prior) whose weights are here, and its lite one where here."""
        if self.own is None:
            return ()
        names: tuple[str, ...] = (self.own.info.name,)
        if self.stand_in is not None:
            names += (ROUTED, self.stand_in)
        lite = _here(self.own.info.lite)
        return names if lite is None else (*names, lite)

    @property
    def stand_in(self) -> str | None:
        """The cheaper prior this model offers over the whole image (the compact prior), if any."""
        return None if self.own is None else _here(self.own.info.stand_in)

    def _load(self, name: str) -> Prior:
        if name not in self._loaded:
            prior = load_prior(name).to(self.device)
            prior.use_dtype(self.dtype)
            self._loaded[name] = prior
            self.files["prior_stand_in" if name == self.stand_in else "prior_lite"] = PRIORS[name].source
        return self._loaded[name]

    def stage(self, prior: str | None, routing: PriorRouting, fidelity: float = 0.0) -> PriorStage | None:
        """Stage 1 for a resolved choice: None for the backbone's own prior over the whole image as it is.
        ``fidelity`` moves the own prior's tail toward its faithful one, where it has one (``Prior.forward``)."""
        own = self.own
        if own is None:
            return None
        full = own if own.tail_fidelity(fidelity) == 0 else partial(own, fidelity=fidelity)
        if prior in (None, own.info.name):
            return None if full is own else (lambda lr: PriorEstimate(full(lr)))
        if prior != ROUTED:
            network, compact_estimate = self._load(str(prior)), prior == self.stand_in
            return lambda lr: PriorEstimate(network(lr), compact=compact_estimate)
        compact = self._load(str(own.info.stand_in))
        share = float(routing.prior_share)  # type: ignore[arg-type]
        return lambda lr: routed_prior(lr, compact, full, routing, share, own.scale)


def _here(name: str | None) -> str | None:
    """``name`` where it is a known prior whose weights are here, else None."""
    return name if name is not None and name in PRIORS and PRIORS[name].available() else None
