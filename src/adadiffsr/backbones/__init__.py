"""Diffusion backbones behind the engine's contract."""

from ..core.backbone import Backbone, BackboneSpec
from .compact import CompactConfig, CompactSR

__all__ = ["Backbone", "BackboneSpec", "CompactConfig", "CompactSR"]
