"""Tiny seeded backbones built in-process: the real classes at toy sizes, plus analytic ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from adadiffsr.backbones.compact import CompactConfig, CompactSR
from adadiffsr.core.backbone import Backbone, BackboneSpec
from adadiffsr.core.schedule import NoiseSchedule, PredictionType
from adadiffsr.prior import PRIORS, PriorInfo
from adadiffsr.prior.rrdbnet import RRDBNet

TINY = CompactConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, tile_size=16)


def tiny_compact(seed: int = 0, **overrides: object) -> CompactSR:
    """A CompactSR with a few thousand random weights; seeded so tests are repeatable."""
    torch.manual_seed(seed)
    config = CompactConfig(**{**TINY.to_dict(), **overrides})  # type: ignore[arg-type]
    model = CompactSR(config).eval()
    # random init leaves the last conv at zero in some diffusers versions; make outputs non-trivial
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def tiny_rrdbnet() -> RRDBNet:
    """An RRDBNet of a few thousand seeded weights: a stand-in for Real-ESRGAN x4plus."""
    torch.manual_seed(7)
    return RRDBNet(nf=8, gc=4, num_blocks=1).eval()


@pytest.fixture
def tiny_prior(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``tiny_rrdbnet`` as the prior ``tiny-test`` for one test; returns its name."""
    monkeypatch.setitem(PRIORS, "tiny-test", PriorInfo("tiny-test", 4, "tests", "test only", tiny_rrdbnet))
    return "tiny-test"


def tiny_refiner(live: bool = False, **overrides: object) -> CompactSR:
    """A refiner over the ``tiny-test`` prior (use the ``tiny_prior`` fixture). Untrained, its output
    layer is zero and it returns the prior exactly; ``live`` draws that layer at random."""
    torch.manual_seed(0)
    model = CompactSR(CompactConfig(**{**TINY.to_dict(), "prior": "tiny-test", **overrides})).eval()  # type: ignore[arg-type]
    if live:
        with torch.no_grad():
            model.unet.conv_out.weight.normal_(0, 0.05)
    return model


class FunctionBackbone(Backbone):
    """Pixel-space backbone whose prediction is a given function of ``(x_t, t, cond)``.

    Encode/decode are identity at the high resolution (latent scale = scale factor), the condition
    is the nearest-neighbour upsample of the input. It counts its calls and the batch sizes it saw.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor, Tensor], Tensor],
        prediction_type: PredictionType = "sample",
        scale: int = 2,
        tile_size: int = 8,
        size_multiple: int = 1,
        clip_sample: bool = False,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.spec = BackboneSpec(
            prediction_type=prediction_type,
            scale_factor=scale,
            latent_scale=scale,
            latent_channels=3,
            tile_size=tile_size,
            size_multiple=size_multiple,
            clip_sample=clip_sample,
            schedule=NoiseSchedule.from_betas(),
        )
        self.calls: list[tuple[int, tuple[int, ...]]] = []  # (batch size, timesteps)

    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        return F.interpolate(lr, scale_factor=self.spec.scale_factor, mode="nearest")

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        self.calls.append((x_t.shape[0], tuple(t.tolist())))
        return self.fn(x_t, t, cond)

    def encode(self, hr: Tensor) -> Tensor:
        return hr

    def decode(self, z: Tensor) -> Tensor:
        return z


def constant_preserving(**kwargs: object) -> FunctionBackbone:
    """x0 = the upsampled input: a constant input stays constant whatever the noise."""
    return FunctionBackbone(lambda x_t, t, cond: cond, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def tiny() -> CompactSR:
    return tiny_compact()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tier (``@pytest.mark.slow``) runs only with ADADIFFSR_SLOW=1 (``make test-slow``)."""
    import os

    if os.environ.get("ADADIFFSR_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow tier: ADADIFFSR_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fp32_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dtype auto`` is bf16 on CPUs with AMX-BF16 only: the suite runs as on any CPU (fp32), and the
    tests of auto itself say which CPU they pretend to be."""
    monkeypatch.setattr("adadiffsr.devices.cpu_runs_bf16", lambda: False)
