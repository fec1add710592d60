"""Exported networks behind the interfaces the engine already calls.

``OnnxBackbone`` is the PyTorch backbone with ``predict`` run by ONNX Runtime (the cheap parts,
``condition``, ``encode`` and ``decode``, are rearrangements and stay in PyTorch); the prior gets
an ``OnnxPriorNetwork`` as its external runtime; the regressor and PFJ keep their classes and
configs with ``forward`` run by ONNX Runtime. The sampler, tiling and policies do not know.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core.backbone import Backbone
from ..engine.tiling import apply_tiled
from ..errors import ConfigError, WeightsError
from ..gain.regressor import QualityRegressor
from ..pfj import FeatureInjection
from .onnx_export import onnx_path, state_sha256
from .onnx_session import OnnxSession, require_onnxruntime


class OnnxBackbone(Backbone):
    """A backbone whose ``predict`` runs in ONNX Runtime; everything else is the PyTorch one's."""

    def __init__(self, backbone: Backbone, session: OnnxSession) -> None:
        super().__init__()
        self.inner = backbone  # a submodule: ``.to(device)`` moves its (cheap) parts and its prior
        self.session = session
        self.spec = backbone.spec
        self.starts_from_estimate = backbone.starts_from_estimate
        self.costly_reference = backbone.costly_reference
        object.__setattr__(self, "prior", backbone.prior)  # held outside the module tree, as the inner one holds it

    def condition(self, lr: Tensor, estimate: Tensor | None = None) -> Tensor:
        return self.inner.condition(lr, estimate)

    def estimate(self, cond: Tensor) -> Tensor | None:
        return self.inner.estimate(cond)

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.session(x_t, t, cond)[0]

    def reference_feature(self, cond: Tensor) -> Tensor:
        return self.inner.reference_feature(cond)

    def encode(self, hr: Tensor) -> Tensor:
        return self.inner.encode(hr)

    def decode(self, z: Tensor) -> Tensor:
        return self.inner.decode(z)


class OnnxPriorNetwork:
    """The prior's weights in ONNX Runtime: ``(1, 3, H, W)`` RGB in ``[0, 1]`` -> x scale, tiled."""

    name = "onnx"
    devices: tuple[str, ...] = ("cpu", "cuda")

    def __init__(self, session: OnnxSession, scale: int) -> None:
        self.session, self.scale = session, scale

    def _run(self, rgb: Tensor) -> Tensor:
        return self.session(rgb.float())[0]

    def __call__(self, rgb: Tensor, tile: int = 256, overlap: int = 16) -> Tensor:
        return apply_tiled(self._run, rgb, tile, overlap, self.scale).clamp(0, 1)


class OnnxRegressor(QualityRegressor):
    """The gain regressor with its forward pass in ONNX Runtime (``performance`` is inherited)."""

    def __init__(self, torch_model: QualityRegressor, session: OnnxSession) -> None:
        nn.Module.__init__(self)
        self.config, self.session = torch_model.config, session

    def forward(self, estimate_stats: Tensor, reference_stats: Tensor) -> Tensor:
        return self.session(estimate_stats, reference_stats)[0]


class OnnxFeatureInjection(FeatureInjection):
    """PFJ with its forward pass in ONNX Runtime (``inject`` is inherited)."""

    def __init__(self, torch_model: FeatureInjection, session: OnnxSession) -> None:
        nn.Module.__init__(self)
        self.config, self.session = torch_model.config, session

    def forward(self, o: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = self.session(o, gain.to(o.dtype))
        return alpha, beta


@dataclass
class OnnxModels:
    """The loaded networks, in ONNX Runtime, and the files they came from."""

    backbone: Backbone
    regressor: QualityRegressor | None
    pfj: FeatureInjection | None
    files: dict[str, str]
    provider: str


def _open(weights: Path, kind: str, module: nn.Module, device: torch.device) -> OnnxSession:
    path = onnx_path(weights, kind)
    if not path.is_file():
        raise WeightsError(f"the onnx runtime: no {kind} export at {path} (write it with: "
                           f"adadiffsr export onnx --weights {weights})")
    session = OnnxSession(path, device)
    session.check_source(kind, state_sha256(module), weights)
    return session


def student_to_onnx(student: Backbone, weights: str | os.PathLike[str], device: torch.device) -> OnnxBackbone:
    """The distilled student with its ``predict`` from its export beside ``weights`` (checked to match it)."""
    require_onnxruntime()
    return OnnxBackbone(student, _open(Path(weights), "student", student, device))


def to_onnx(backbone: Backbone, regressor: QualityRegressor | None, pfj: FeatureInjection | None,
            weights: str | os.PathLike[str], device: torch.device) -> OnnxModels:
    """Swap each loaded PyTorch network for its export beside ``weights`` (checked to match it)."""
    require_onnxruntime()
    if getattr(backbone, "architecture", None) != "compact":
        raise ConfigError(f"the onnx runtime runs the compact backbones; {type(backbone).__name__} is not exported")
    weights = Path(weights)
    files: dict[str, str] = {}
    if backbone.prior is not None:
        prior_session = _open(weights, "prior", backbone.prior.network, device)
        backbone.prior.external = OnnxPriorNetwork(prior_session, backbone.prior.scale)
        files["onnx_prior"] = str(prior_session.path)
    session = _open(weights, "refiner", backbone, device)
    files["onnx_refiner"] = str(session.path)
    if regressor is not None:
        regressor_session = _open(weights, "regressor", regressor, device)
        regressor = OnnxRegressor(regressor, regressor_session)
        files["onnx_regressor"] = str(regressor_session.path)
    if pfj is not None:
        pfj_session = _open(weights, "pfj", pfj, device)
        pfj = OnnxFeatureInjection(pfj, pfj_session)
        files["onnx_pfj"] = str(pfj_session.path)
    return OnnxModels(OnnxBackbone(backbone, session), regressor, pfj, files, session.provider)
