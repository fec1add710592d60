"""The Python API: load a backbone once, upscale many images.

    from adadiffsr import Upscaler, UpscaleConfig
    upscaler = Upscaler.from_pretrained("weights/compact-x4.safetensors", device="auto")
    result = upscaler("photo.jpg", UpscaleConfig(interval=20, seed=0))
    result.image.save("photo_x4.png"); print(result.report["nfe"])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from . import devices
from .backbones import BACKBONES, DEFAULT_BACKBONE, compact_student_path_for, load_student, student_path_for
from .config import UpscaleConfig
from .core.backbone import Backbone
from .core.gain import PerformanceFn
from .core.pixels import denormalize
from .core.policy import Policy
from .core.step import InjectFn, ProgressFn, strength_timestep
from .devices import DTYPES, resolve_device, resolve_dtype
from .engine.memory import auto_batch_tiles
from .engine.pipeline import PipelineOutput, PriorStage, resolve_tiling, upscale_tensor
from .engine.sampler import SamplerSettings
from .errors import ConfigError, WeightsError
from .gain.exact import ExactPerformance
from .gain.regressor import LearnedPerformance, QualityRegressor, load_regressor, regressor_path_for
from .io import Picture, output_picture, picture_to_tensor, read_picture
from .pfj import FeatureInjection, injector, load_pfj, pfj_path_for
from .policies.registry import PACED_POLICY, POLICIES
from .prior.stages import PriorStages
from .report import build_report
from .resolve import ModelFacts, resolve_config
from .result import UpscaleResult
from .runtime import RUNTIMES
from .weights import read_metadata


def auto_dtype(device: torch.device, runtime: str, backbone: str) -> str:
    """What ``dtype="auto"`` runs: bf16 for the compact refiner and its prior in PyTorch on a CPU with
    bf16 instructions (``devices.cpu_runs_bf16``; with AMX-BF16 2.4-2.9x faster in total on the held-out photos
    at PSNR-Y within 0.03 dB and NIQE within 1% of fp32, docs/benchmarks.md), fp32 everywhere else
    (not measured on GPUs yet)."""
    if runtime == "torch" and device.type == "cpu" and backbone == DEFAULT_BACKBONE and devices.cpu_runs_bf16():
        return "bf16"
    return "fp32"


class Upscaler:
    """A loaded backbone on a device, ready to upscale many images."""

    def __init__(
        self, backbone: Backbone, device: str | torch.device = "cpu", dtype: str = "fp32",
        regressor: QualityRegressor | None = None,
        pfj: FeatureInjection | None = None,
        files: dict[str, str | None] | None = None,
        runtime: str = "torch",
        student: Backbone | Callable[[], Backbone] | None = None,
        student_timestep: int | None = None,
        compact_student: Backbone | Callable[[], Backbone] | None = None,
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.files = dict(files or {})  # what was loaded from where (weights, regressor, pfj), for reports
        self.dtype = resolve_dtype(dtype)
        self.runtime = runtime  # what runs the networks: torch, or onnx (exported files in ONNX Runtime)
        self.backbone = backbone.to(self.device).eval()
        if self.backbone.prior is not None:
            self.backbone.prior.use_dtype(self.dtype)  # the prior runs in the same dtype as the refiner
        self.regressor = regressor.to(self.device).eval() if regressor is not None else None
        self.pfj = pfj.to(self.device).eval() if pfj is not None else None
        # the student, or what loads it on first use (--student, --policy distilled)
        self._student = student.to(self.device).eval() if isinstance(student, torch.nn.Module) else student
        # the student distilled on the compact prior's estimate, for the tiles whose estimate is the compact prior's
        self._compact_student = compact_student.to(self.device).eval() \
            if isinstance(compact_student, torch.nn.Module) else compact_student
        self.student_timestep = student_timestep  # where the student was distilled to start; None: the walk's first
        self.prior_stages = PriorStages(self.backbone.prior, self.device, self.dtype, self.files)  # stage 1's choices
        self._check_companions()

    @property
    def has_student(self) -> bool:
        """Is there a distilled student (loaded or beside the weights, not loaded yet)?"""
        return self._student is not None

    @property
    def student(self) -> Backbone | None:
        """The distilled student, loaded the first time a config asks for it."""
        self._student = self._loaded(self._student)
        return self._student

    @property
    def compact_student(self) -> Backbone | None:
        """The student distilled on the compact prior's estimate (``NAME.compact-student.safetensors``), loaded
        the first time a student's tile has an estimate of the compact prior's."""
        self._compact_student = self._loaded(self._compact_student)
        return self._compact_student

    def _loaded(self, model: Backbone | Callable[[], Backbone] | None) -> Backbone | None:
        return model().to(self.device).eval() if callable(model) and not isinstance(model, torch.nn.Module) else model

    def _check_companions(self) -> None:
        """A regressor or PFJ made for another backbone fails here, in one line, not mid-sampling."""
        latent = self.backbone.spec.latent_channels
        if self.regressor is not None and self.regressor.config.in_channels != latent:
            raise WeightsError(f"the gain regressor was trained for a backbone with {self.regressor.config.in_channels} "
                               f"working-space channels; this one has {latent} (retrain it: adadiffsr train regressor)")
        if self.pfj is not None:
            with torch.no_grad():
                channels = self.backbone.condition(torch.zeros(1, 3, 8, 8, device=self.device)).shape[1]
            if self.pfj.config.in_channels != channels:
                raise WeightsError(f"the PFJ file was trained for a condition of {self.pfj.config.in_channels} "
                                   f"channels; this backbone gives {channels} (retrain it: adadiffsr train pfj)")

    @classmethod
    def from_pretrained(
        cls, weights: str | os.PathLike[str] | None = None, device: str = "auto", dtype: str = "fp32",
        backbone: str = DEFAULT_BACKBONE, regressor: bool = True, pfj: bool = True, runtime: str = "torch",
        **pipeline_options: Any,
    ) -> Upscaler:
        """Load a weights file, or the shipped default model when ``weights`` is None, with its gain
        regressor (``NAME.regressor.safetensors``) and PFJ (``NAME.pfj.safetensors``) beside it when
        they are there. ``ldm-sr-x4`` and ``sd-x4-upscaler`` take a diffusers pipeline folder (their
        companions lie beside the folder: ``FOLDER.regressor.safetensors``); ``sd-x4-upscaler``
        takes ``prompt``, ``negative_prompt``, ``guidance_scale`` and ``noise_level`` options.
        ``regressor=False`` / ``pfj=False`` skip those files (what the commands that train them do).
        ``runtime="onnx"`` runs the networks from their exports beside the weights (``adadiffsr export
        onnx``) in ONNX Runtime, after checking each was exported from these weights. ``dtype="auto"``
        is bf16 where that was measured faster at equal quality (``auto_dtype``), fp32 elsewhere."""
        if backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        resolved = resolve_device(device)
        if dtype == "auto":
            dtype = auto_dtype(resolved, runtime, backbone)
        if runtime == "onnx" and dtype != "fp32":
            raise ConfigError(f"the onnx runtime runs the fp32 exports; dtype {dtype} is for the torch runtime")
        kind = BACKBONES[backbone]
        unknown = sorted(set(pipeline_options) - set(kind.options))
        if unknown:
            raise ConfigError(f"the {backbone} backbone takes no option {unknown[0]!r}"
                              + (f" (it takes {', '.join(kind.options)})" if kind.options else ""))
        weights = kind.resolve_weights(weights)
        model = kind.load(weights, resolved, **pipeline_options)
        regressor_file, pfj_file = regressor_path_for(weights), pfj_path_for(weights)
        gain_model = load_regressor(regressor_file, resolved) if regressor and regressor_file.is_file() else None
        injection = load_pfj(pfj_file, resolved) if pfj and pfj_file.is_file() else None
        files: dict[str, str | None] = {
            "weights": str(weights), "regressor": str(regressor_file) if gain_model is not None else None,
            "pfj": str(pfj_file) if injection is not None else None}
        student_file = student_path_for(weights) if backbone == DEFAULT_BACKBONE else None
        has_student = student_file is not None and student_file.is_file()
        files["student"] = str(student_file) if has_student else None  # loaded when a config asks for it
        student_t = read_metadata(student_file).get("adadiffsr.student_timestep") if has_student else None
        teacher = model  # the PyTorch refiner, whose prior the student shares (also under --runtime onnx)
        student = (lambda: load_student(student_file, teacher, resolved)) if has_student else None
        compact_file = compact_student_path_for(weights)
        compact_student = (lambda: load_student(compact_file, teacher, resolved, student_t)) \
            if has_student and runtime == "torch" and compact_file.is_file() else None  # no ONNX export of it yet
        files["compact_student"] = str(compact_file) if compact_student is not None else None
        if runtime == "onnx":
            from .runtime.onnx_export import onnx_path
            from .runtime.onnx_models import student_to_onnx, to_onnx

            exported = to_onnx(model, gain_model, injection, weights, resolved)
            model, gain_model, injection = exported.backbone, exported.regressor, exported.pfj
            files.update(exported.files)
            if student is not None:  # its export, opened and checked when a config asks for the student
                files["onnx_student"] = str(onnx_path(weights, "student"))
                student = (lambda load=student: student_to_onnx(load(), weights, resolved))
        return cls(model, resolved, dtype, gain_model, injection, files, runtime, student,
                   None if student_t is None else int(student_t), compact_student)

    def injection(self, config: UpscaleConfig) -> InjectFn | None:
        """PFJ at a resolved config's fidelity; None without a PFJ, at 0, and for a PFJ trained through the
        student's step (``PFJConfig.student``) where the student does not run."""
        off = self.pfj is None or config.fidelity == 0
        if off or (self.pfj.config.student and not (config.student or POLICIES[str(config.policy)].student_only)):  # type: ignore[union-attr]
            return None
        return injector(self.pfj, config.fidelity)  # type: ignore[arg-type]

    def _gain_needed(self, config: UpscaleConfig) -> bool:
        """Does PFJ need a gain along the way? Not one trained through the student's single step (its first gain is 0)."""
        return self.pfj is not None and not self.pfj.config.student and self.injection(config) is not None

    def gain_kind(self, kind: str, policy: str = PACED_POLICY, needed: bool = False) -> str:
        """The gain that runs for a requested ``kind``: ``auto`` is ``learned`` (``exact`` without a
        regressor) where the adaptive policy or PFJ needs a gain, and ``none`` (no gain runs) elsewhere."""
        if kind == "auto":
            needed = needed or (policy in POLICIES and POLICIES[policy].needs_gain)
            return ("learned" if self.regressor is not None else "exact") if needed else "none"
        return kind

    def gain_function(self, kind: str, policy: str = PACED_POLICY, needed: bool = False) -> PerformanceFn | None:
        """What the sampler's gain comes from (``gain_kind``): nothing, the exact metrics, or the
        learned regressor."""
        kind = self.gain_kind(kind, policy, needed)
        if kind == "none":
            return None
        if kind == "exact":
            return ExactPerformance(self.backbone)
        if self.regressor is None:
            raise WeightsError("the learned gain needs a regressor file beside the weights (NAME.regressor.safetensors)")
        return LearnedPerformance(self.backbone, self.regressor)

    def resolve(self, config: UpscaleConfig) -> UpscaleConfig:
        """``config`` with the model's defaults filled in (``resolve.resolve_config``): the policy, the
        model's sampling defaults, the student, the strength, interval and walk, and the prior."""
        facts = ModelFacts(spec=self.backbone.spec, name=type(self.backbone).__name__,
                           starts_from_estimate=self.backbone.starts_from_estimate, has_student=self.has_student,
                           student_timestep=self.student_timestep, priors=self.priors, device_type=self.device.type)
        return resolve_config(config, facts)

    @property
    def priors(self) -> tuple[str, ...]:
        """What ``UpscaleConfig.prior`` may name for this model, its default first (``PriorStages.names``).
        Routing is not the default: on a fully textured held-out photo whose compact estimate reads flat
        the texture signal gave every region to the compact prior and no refiner step (NIQE 13.0 against
        6.6; docs/benchmarks.md)."""
        return self.prior_stages.names

    def prior_stage(self, config: UpscaleConfig) -> PriorStage | None:
        """Stage 1 for a resolved config: None for the backbone's own prior over the whole image."""
        return self.prior_stages.stage(config.prior, config.routing, float(config.fidelity or 0.0))

    def run(self, lr: Tensor, config: UpscaleConfig, progress: ProgressFn | None = None) -> PipelineOutput:
        """The engine on a ``(1, 3, H, W)`` tensor in ``[-1, 1]`` on this device: sampler, gain, PFJ
        and tiling as ``config`` says (what ``__call__`` and the benchmark run)."""
        config = self.resolve(config)
        return self._sample(lr, config, POLICIES[str(config.policy)].build(config), progress)

    def _sample(self, lr: Tensor, config: UpscaleConfig, policy: Policy, progress: ProgressFn | None) -> PipelineOutput:
        """``run`` on a config ``resolve`` has already filled in, with its policy built once."""
        inject = self.injection(config)
        tiling = config.tiling
        batch = config.batch_tiles or auto_batch_tiles(self.backbone, resolve_tiling(self.backbone, tiling)[0], self.device)
        s = config.sampling
        settings = SamplerSettings(rule=s.rule, eta=s.eta, batch_tiles=batch, dtype=self.dtype,
                                   spacing=s.spacing, strength=float(s.strength),
                                   first_gain=POLICIES[str(config.policy)].first_gain)
        student = self.student if config.student or POLICIES[str(config.policy)].student_only else None
        stage = self.prior_stage(config)
        return upscale_tensor(
            self.backbone, lr, policy, settings, tiling, seed=config.seed,
            color_fix=config.color_fix,
            performance=self.gain_function(config.gain, config.policy, needed=self._gain_needed(config)),
            progress=progress, inject=inject, plan=POLICIES[str(config.policy)].plan(config),
            student=student, prior=stage,
            compact_student=self.compact_student if student is not None and stage is not None else None,
        )

    def __call__(
        self,
        image: Picture | Image.Image | str | os.PathLike[str],
        config: UpscaleConfig = UpscaleConfig(),
        progress: ProgressFn | None = None,
    ) -> UpscaleResult:
        """Upscale an image file, a PIL image or a decoded ``Picture``."""
        config = self.resolve(config)
        if isinstance(image, Image.Image):
            picture = Picture.from_pil(image)
        elif isinstance(image, Picture):
            picture = image
        else:
            picture = read_picture(image)
        kind = POLICIES[str(config.policy)]
        policy = kind.build(config)
        out = self._sample(picture_to_tensor(picture, self.device), config, policy, progress)
        outscale = None if config.outscale == self.backbone.spec.scale_factor else config.outscale
        result = output_picture(denormalize(out.image.float()), picture, outscale)
        settings_dict = {
            **config.options(),
            "gain": self.gain_kind(config.gain, str(config.policy), self._gain_needed(config)),
            "pfj": self.injection(config) is not None,  # whether PFJ ran (a fidelity above 0, where it applies)
            "device": str(self.device),
            "dtype": next(k for k, v in DTYPES.items() if v == self.dtype),
            "backbone": type(getattr(self.backbone, "inner", self.backbone)).__name__,
            "runtime": self.runtime,
            "prior": config.prior,  # as resolved: routed, or the one prior over the whole image
            "prior_tail_fidelity": self.prior_stages.tail_fidelity(config.prior, float(config.fidelity or 0.0)),  # its tail
            "prior_runtime": None if (own := self.backbone.prior) is None else own.runtime_at(config.fidelity or 0.0),
            "files": self.files,
        }
        tile, overlap = resolve_tiling(self.backbone, config.tiling)
        settings_dict.update(tile=tile, overlap=overlap)  # as resolved, not None
        total = self.backbone.spec.schedule.num_train_timesteps
        report = build_report(
            out, policy.intervals, total, settings_dict,
            start_timestep=strength_timestep(float(config.sampling.strength), total),
            walk_steps=len(walk) if (kind.walk or kind.paced) and (walk := config.sampling.timesteps) else None,
        )
        report["output_size"] = list(result.size)
        return UpscaleResult(picture=result, report=report, output=out)

