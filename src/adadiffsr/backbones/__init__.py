"""Diffusion backbones behind the engine's contract (``core/backbone.py``), named in ``BACKBONES``."""

from .compact import CompactConfig, CompactSR
from .registry import (
    ARCHITECTURES,
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneKind,
    compact_student_path_for,
    load_backbone,
    load_student,
    save_backbone,
    student_path_for,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneKind",
    "CompactConfig",
    "CompactSR",
    "compact_student_path_for",
    "load_backbone",
    "load_student",
    "save_backbone",
    "student_path_for",
]
