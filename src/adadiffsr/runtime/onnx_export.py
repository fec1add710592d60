"""``adadiffsr export onnx``: the refiner, the prior, the gain regressor, PFJ and the distilled student
as ONNX files.

Each network is traced by PyTorch's ONNX exporter (TorchScript-based, opset 17) with a dynamic
batch and, for the convolutional ones, dynamic height and width; the refiner takes ``(B,)``
per-sample timesteps, so tiles at mixed timesteps share one call as they do in PyTorch. Every file
is checked against PyTorch on random inputs and on a real photo's tile before it is written
(atomically); a larger difference than ``TOLERANCE`` fails the export. Each file records in its
metadata what it is (``adadiffsr.kind``) and a digest of the weights it came from, so that a stale
export is refused in one line instead of running a network that no longer matches.

Files lie beside the weights: ``NAME.onnx`` (refiner), ``NAME.prior.onnx``, ``NAME.regressor.onnx``,
``NAME.pfj.onnx`` and ``NAME.student.onnx`` for ``NAME.safetensors`` (each where the model has that network).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from ..core.backbone import Backbone
from ..core.pixels import denormalize
from ..core.schedule import add_noise
from ..errors import ConfigError, WeightsError
from ..gain.regressor import QualityRegressor, regressor_inputs, tile_statistics
from ..io import atomic_write, picture_to_tensor, read_picture
from ..pfj import FeatureInjection
from .onnx_session import INSTALL_HINT, KIND_KEY, SOURCE_KEY, OnnxSession

TOLERANCE = 1e-4  # largest absolute difference from PyTorch allowed, on outputs in [-1, 1] (or [0, 1])
OPSET = 17
KINDS: tuple[str, ...] = ("refiner", "prior", "regressor", "pfj", "student")
DEFAULT_IMAGE = Path(__file__).resolve().parents[3] / "assets" / "coffee-lr.png"  # the real photo of the check


def onnx_path(weights: str | os.PathLike[str], kind: str) -> Path:
    """``weights/NAME.safetensors`` -> ``weights/NAME.onnx`` (refiner) or ``weights/NAME.KIND.onnx``."""
    p = Path(weights)
    stem = p.name.removesuffix(".safetensors")
    return p.with_name(f"{stem}.onnx" if kind == "refiner" else f"{stem}.{kind}.onnx")


def state_sha256(module: nn.Module) -> str:
    """A digest of a module's weights (names, shapes, dtypes and bytes), whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class ExportCheck:
    """One written file and how far ONNX Runtime's outputs were from PyTorch's."""

    kind: str
    path: Path
    random_diff: float  # max |ONNX - PyTorch| on random inputs of other shapes than traced
    real_diff: float  # the same on a real photo's tile
    seconds: float  # export and check


class _Predict(nn.Module):
    """The refiner's raw prediction as a plain ``forward(x_t, t, cond)``."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.backbone.predict(x_t, t, cond)


@dataclass
class _Job:
    kind: str
    module: nn.Module
    names: tuple[list[str], list[str]]  # inputs, outputs
    dynamic: dict[str, dict[int, str]]
    real: tuple[Tensor, ...]  # traced with these
    random: tuple[Tensor, ...]  # checked on these too (other batch and sizes)
    digest: str


class Networks(Protocol):
    """What is exported: a loaded model's networks (an ``Upscaler`` is one)."""

    backbone: Backbone
    regressor: QualityRegressor | None
    pfj: FeatureInjection | None

    @property
    def student(self) -> Backbone | None: ...  # the distilled student beside the weights, if any


def _image_axes(*names: str, spatial: bool = True) -> dict[str, dict[int, str]]:
    return {n: ({0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}) for n in names}


def _jobs(upscaler: Networks, image: Tensor) -> list[_Job]:
    """What to export for a loaded model, with real inputs made from ``image`` ((1,3,h,w) in [-1, 1])."""
    backbone: Backbone = upscaler.backbone
    spec = backbone.spec
    g = torch.Generator().manual_seed(0)
    m = spec.size_multiple
    side = max(m, min(spec.tile_size, image.shape[-2], image.shape[-1]) // m * m)
    lr = image[..., :side, :side].float()
    if lr.shape[-1] < side or lr.shape[-2] < side:
        raise ConfigError(f"the check image is smaller than one {side}px tile")
    jobs: list[_Job] = []
    estimate = None
    if backbone.prior is not None:
        network = backbone.prior.network
        rgb = denormalize(lr)
        estimate = backbone.prior(lr)
        jobs.append(_Job("prior", network, (["lr"], ["sr"]), _image_axes("lr", "sr"), (rgb,),
                         (torch.rand(2, 3, side // 2 + 3, side + 5, generator=g),), state_sha256(network)))
    with torch.no_grad():
        cond = backbone.condition(lr, estimate)
        x0 = backbone.estimate(cond)
    if x0 is None:
        raise ConfigError(f"the onnx runtime runs refiners that start from an estimate; {type(backbone).__name__} does not")
    total = spec.schedule.num_train_timesteps
    t = torch.tensor([int(total * 0.4) - 1, int(total * 0.03) - 1])
    cond2 = cond.repeat(2, 1, 1, 1)
    x_t = add_noise(spec.schedule, x0.repeat(2, 1, 1, 1), t, torch.randn(x0.repeat(2, 1, 1, 1).shape, generator=g))
    h, w = m * 3, m * 5
    rand_cond = torch.randn(3, cond.shape[1], h * spec.latent_scale, w * spec.latent_scale, generator=g)
    rand_x = torch.randn(3, x0.shape[1], h * spec.latent_scale, w * spec.latent_scale, generator=g)
    # the student, where there is one, has the refiner's contract at other widths: the same inputs
    predictors = [("refiner", backbone)] + ([("student", upscaler.student)] if upscaler.student is not None else [])
    for kind, predictor in predictors:
        jobs.append(_Job(kind, _Predict(predictor), (["x_t", "t", "cond"], ["prediction"]),
                         {**_image_axes("x_t", "cond", "prediction"), "t": {0: "batch"}}, (x_t, t, cond2),
                         (rand_x, torch.randint(0, total, (3,), generator=g), rand_cond), state_sha256(predictor)))
    regressor: QualityRegressor | None = upscaler.regressor
    if regressor is not None:
        pool = regressor.config.pool
        reference = backbone.reference_feature(cond2)
        real = (regressor_inputs(x_t, reference, pool), tile_statistics(reference, pool))
        rand = (regressor_inputs(rand_x, rand_cond[:, : x0.shape[1]], pool), tile_statistics(rand_cond[:, : x0.shape[1]], pool))
        jobs.append(_Job("regressor", regressor, (["estimate_stats", "reference_stats"], ["performance"]),
                         {**_image_axes("estimate_stats", "reference_stats"), "performance": {0: "batch"}},
                         real, rand, state_sha256(regressor)))
    pfj: FeatureInjection | None = upscaler.pfj
    if pfj is not None:
        gains = pfj.config.gains
        jobs.append(_Job("pfj", pfj, (["o", "gain"], ["alpha", "beta"]),
                         {**_image_axes("o", "alpha", "beta"), "gain": {0: "batch"}},
                         (cond2, torch.tensor([[0.1, -0.05][:gains] + [0.0] * max(0, gains - 2)] * 2)),
                         (rand_cond, torch.randn(3, gains, generator=g) * 0.2), state_sha256(pfj)))
    return jobs


def _max_diff(session: OnnxSession, module: nn.Module, inputs: tuple[Tensor, ...]) -> float:
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session(*inputs)
    return max(float((a - b.float()).abs().max()) for a, b in zip(got, expected, strict=True))


def _export_one(job: _Job, path: Path, tolerance: float) -> ExportCheck:
    import onnx

    start = time.perf_counter()
    result: dict[str, float] = {}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and constant folding
            torch.onnx.export(job.module.eval(), job.real, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=job.names[0], output_names=job.names[1], dynamic_axes=job.dynamic)
        model = onnx.load(str(tmp))
        for key, value in ((KIND_KEY, job.kind), (SOURCE_KEY, job.digest)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        session = OnnxSession(tmp, "cpu")
        result["real"] = _max_diff(session, job.module, job.real)
        result["random"] = _max_diff(session, job.module, job.random)
        worst = max(result.values())
        if not worst <= tolerance:
            raise WeightsError(f"the {job.kind} export differs from PyTorch by {worst:.2e} (> {tolerance:g}); "
                               f"nothing written to {path}")

    atomic_write(path, write)
    return ExportCheck(job.kind, path, result["random"], result["real"], time.perf_counter() - start)


def export_onnx(upscaler: Networks, weights: str | os.PathLike[str], image: str | os.PathLike[str] | None = None,
                tolerance: float = TOLERANCE, log: Callable[[str], None] | None = None) -> list[ExportCheck]:
    """Export every network of a loaded (PyTorch, CPU) ``Upscaler`` beside ``weights``; see the module doc."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"exporting needs onnx and ONNX Runtime: {INSTALL_HINT}") from e
    picture = read_picture(image or DEFAULT_IMAGE)
    checks = []
    for job in _jobs(upscaler, picture_to_tensor(picture)):
        check = _export_one(job, onnx_path(weights, job.kind), tolerance)
        checks.append(check)
        if log is not None:
            log(f"{check.kind:<9} {check.path}  max |ONNX - PyTorch|: random {check.random_diff:.1e}, "
                f"real {check.real_diff:.1e}  ({check.seconds:.1f} s)")
    return checks
