"""The backbones a user picks by name (``--backbone``), and the architectures a weights file names.

``BACKBONES`` is the one list the CLI, the API and the page read. ``compact`` loads an adadiffsr
safetensors file (the shipped default when none is given); the diffusers adapters load a pipeline
folder, imported only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import Backbone
from ..errors import WeightsError
from ..weights import companion_path, default_weights_path, load_module, read_metadata, save_module
from .compact import CompactConfig, CompactSR

# architecture name in a weights file -> (class, config class)
ARCHITECTURES: dict[str, tuple[type[Backbone], Any]] = {"compact": (CompactSR, CompactConfig)}


def save_backbone(
    backbone: Backbone, path: str | os.PathLike[str], metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write the backbone's weights and config (``config.to_dict()``) to a safetensors file.
    ``dtype=torch.float16`` halves the file; weights are cast back to the model's dtype on load."""
    config = getattr(backbone, "config", None)
    name = getattr(backbone, "architecture", None)
    if name not in ARCHITECTURES or config is None:
        raise WeightsError(f"{type(backbone).__name__} cannot be saved as an adadiffsr weights file")
    save_module(backbone, path, name, config.to_dict(), metadata, dtype)


def load_backbone(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Backbone:
    """Build the architecture the file names, load its weights strictly, return it in eval mode."""
    name = read_metadata(path).get("adadiffsr.architecture")
    if name is None:
        raise WeightsError(f"{path}: not an adadiffsr weights file (no architecture in its metadata)")
    if name not in ARCHITECTURES:
        raise WeightsError(f"{path}: unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    cls, config_cls = ARCHITECTURES[name]
    return load_module(path, name, lambda config: cls(config_cls.from_dict(config)), device)


def student_path_for(backbone_weights: str | os.PathLike[str]) -> Path:
    """``weights/NAME.safetensors`` -> ``weights/NAME.student.safetensors``: the one-step student
    distilled from that refiner (``adadiffsr train distill``), loaded beside it."""
    return companion_path(backbone_weights, "student")


def compact_student_path_for(backbone_weights: str | os.PathLike[str]) -> Path:
    """``weights/NAME.safetensors`` -> ``weights/NAME.compact-student.safetensors``: the student distilled
    on the compact prior's estimate (``train distill --student-estimate``), for the tiles whose estimate
    is the compact prior's (``--prior compact-prior-x4``, ``--prior routed``)."""
    return companion_path(backbone_weights, "compact-student")


def load_student(path: str | os.PathLike[str], teacher: Backbone, device: torch.device | str = "cpu",
                 timestep: str | None = None) -> Backbone:
    """The student beside ``teacher``'s weights, sharing the teacher's prior (one copy, one pass);
    ``timestep``: the one it must start from (another student's, as its metadata says), if any."""
    student = load_backbone(path, device)
    if not isinstance(student, CompactSR) or not isinstance(teacher, CompactSR) or \
            student.config.prior != teacher.config.prior or student.spec.latent_channels != teacher.spec.latent_channels:
        raise WeightsError(f"{path}: not a student of this refiner (retrain it: adadiffsr train distill)")
    own = read_metadata(path).get("adadiffsr.student_timestep")
    if timestep is not None and own != timestep:
        raise WeightsError(f"{path}: a student from timestep {own}, not {timestep} as the student beside it")
    object.__setattr__(student, "prior", teacher.prior)
    return student


@dataclass(frozen=True)
class BackboneKind:
    """A backbone a user can name: how it loads and what its weights are."""

    name: str
    load: Callable[..., Backbone]  # (weights, device, **options) -> the backbone in eval mode
    weights: str  # what --weights takes, for messages
    default_weights: Callable[[], Path] | None = None  # used when --weights is not given
    options: tuple[str, ...] = ()  # the keyword options ``load`` takes besides weights and device

    def resolve_weights(self, weights: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
        if weights is not None:
            return weights
        if self.default_weights is None:
            raise WeightsError(f"the {self.name} backbone needs weights: {self.weights}")
        path = self.default_weights()
        if not path.is_file():
            raise WeightsError(f"no default model at {path}; give a weights file (see the README)")
        return path


def _load_ldm_sr(weights: str | os.PathLike[str], device: torch.device | str) -> Backbone:
    from .ldm_sr import load_ldm_sr

    return load_ldm_sr(weights, device)


def _load_sd_upscale(weights: str | os.PathLike[str], device: torch.device | str, **options: Any) -> Backbone:
    from .sd_upscale import load_sd_upscale

    return load_sd_upscale(weights, device, **options)


DEFAULT_BACKBONE = "compact"  # what --backbone and Upscaler.from_pretrained load when not told
BACKBONES: dict[str, BackboneKind] = {
    "compact": BackboneKind("compact", load_backbone, "an adadiffsr .safetensors file", default_weights_path),
    "ldm-sr-x4": BackboneKind("ldm-sr-x4", _load_ldm_sr, "the pipeline folder or its cached Hugging Face id"),
    "sd-x4-upscaler": BackboneKind("sd-x4-upscaler", _load_sd_upscale,
                                   "the pipeline folder or its cached Hugging Face id",
                                   options=("prompt", "negative_prompt", "guidance_scale", "noise_level")),
}
