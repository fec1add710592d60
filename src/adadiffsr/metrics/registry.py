"""Named metrics with their metadata, in the spirit of pyiqa's ``create_metric``.

Every metric maps ``(output, target)`` batches of ``(B, 3, H, W)`` RGB in ``[0, 1]`` to ``(B,)``;
no-reference metrics ignore ``target``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..errors import ConfigError

MetricFn = Callable[[Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: MetricFn | None  # None: not available offline (see ``missing``)
    full_reference: bool
    lower_is_better: bool
    description: str
    missing: str = ""  # why it is unavailable
    requires: Callable[[], str] | None = None  # for metrics on local weights: "" when they are there, else why not

    def unavailable(self) -> str:
        """Empty when the metric can run here; otherwise the reason."""
        if self.fn is None:
            return self.missing
        return self.requires() if self.requires is not None else ""


def _psnr(o: Tensor, t: Tensor | None) -> Tensor:
    from .psnr import psnr_y

    return psnr_y(o, _ref(t))


def _ssim(o: Tensor, t: Tensor | None) -> Tensor:
    from .ssim import ssim_y

    return ssim_y(o, _ref(t))


def _ms_ssim(o: Tensor, t: Tensor | None) -> Tensor:
    from .ssim import ms_ssim_y

    return ms_ssim_y(o, _ref(t))


def _gmsd(o: Tensor, t: Tensor | None) -> Tensor:
    from .gmsd import gmsd

    return gmsd(o, _ref(t))


def _niqe(o: Tensor, t: Tensor | None) -> Tensor:
    from .niqe import niqe

    return niqe(o)


def _nlpd(o: Tensor, t: Tensor | None) -> Tensor:
    from .nlpd import nlpd

    return nlpd(o, _ref(t))


def _brisque(o: Tensor, t: Tensor | None) -> Tensor:
    from .brisque import brisque

    return brisque(o)


def _piqe(o: Tensor, t: Tensor | None) -> Tensor:
    from .piqe import piqe

    return piqe(o)


def _lpips(o: Tensor, t: Tensor | None) -> Tensor:
    from .lpips import lpips

    return lpips(o, _ref(t))


def _lpips_missing() -> str:
    from .lpips import missing

    return missing()


def _dists(o: Tensor, t: Tensor | None) -> Tensor:
    from .dists import dists

    return dists(o, _ref(t))


def _dists_missing() -> str:
    from .dists import missing

    return missing()


def _musiq(o: Tensor, t: Tensor | None) -> Tensor:
    from .musiq import musiq

    return musiq(o)


def _musiq_missing() -> str:
    from .musiq import missing

    return missing()


def _detail(scale: int) -> MetricFn:
    def fn(o: Tensor, t: Tensor | None) -> Tensor:
        from .detail import detail_ratio

        return detail_ratio(o, _ref(t), scale)

    return fn


def _ref(t: Tensor | None) -> Tensor:
    if t is None:
        raise ValueError("this metric needs a reference image")
    return t



METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("psnr", _psnr, True, False, "PSNR of the Y channel, 4-pixel border crop (dB)"),
        MetricSpec("ssim", _ssim, True, False, "SSIM of the Y channel, 4-pixel border crop"),
        MetricSpec("ms_ssim", _ms_ssim, True, False, "MS-SSIM of the Y channel (sides >= 176 px)"),
        MetricSpec("gmsd", _gmsd, True, True, "gradient magnitude similarity deviation"),
        MetricSpec("nlpd", _nlpd, True, True, "normalised Laplacian pyramid distance (luma)"),
        MetricSpec("niqe", _niqe, False, True, "NIQE, MATLAB-compatible (at least two 96x96 blocks)"),
        MetricSpec("brisque", _brisque, False, True, "BRISQUE, the model of the PyPI brisque package"),
        MetricSpec("piqe", _piqe, False, True, "PIQE, MATLAB-compatible (0-100)"),
        *(MetricSpec(f"detail_{s}", _detail(s), True, False,
                     f"detail at {s} px against the truth: band energy output / truth (1 = the truth's amount)")
          for s in (1, 2, 4)),
        MetricSpec("lpips", _lpips, True, True, "LPIPS v0.1, VGG, from local weights (metrics/lpips.py)",
                   requires=_lpips_missing),
        MetricSpec("dists", _dists, True, True, "DISTS, from local weights (metrics/dists.py)",
                   requires=_dists_missing),
        MetricSpec("musiq", _musiq, False, False, "MUSIQ (KonIQ-10k, 0-100), from local weights (metrics/musiq.py)",
                   requires=_musiq_missing),
    )
}


def create_metric(name: str) -> MetricSpec:
    """The metric called ``name``; a clear error with a suggestion otherwise."""
    key = name.strip().lower().replace("-", "_")
    if key not in METRICS:
        close = difflib.get_close_matches(key, METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown metric {name!r}{hint}; available: {', '.join(available())}")
    spec = METRICS[key]
    reason = spec.unavailable()
    if reason:
        raise ConfigError(f"metric {name!r} is not available: {reason}")
    return spec


def available() -> list[str]:
    return [name for name, spec in METRICS.items() if not spec.unavailable()]
