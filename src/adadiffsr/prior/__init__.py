"""Stage 1: pretrained restoration priors, run once over the whole image before diffusion sampling.

The prior's output is the starting estimate of every tile and what the refiner conditions on
(PatchScaler's global restoration module, DiffBIR's first stage). Priors are named in ``PRIORS``.
"""

from .runner import COMPACT_PRIOR, PRIORS, Prior, PriorInfo, load_prior

__all__ = ["COMPACT_PRIOR", "PRIORS", "Prior", "PriorInfo", "load_prior"]
