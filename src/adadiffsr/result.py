"""What an upscale returns: the output picture, its report, and the engine's record of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .engine.pipeline import PipelineOutput
from .io import Picture, picture_to_pil, save_picture
from .report import render_step_map


@dataclass
class UpscaleResult:
    picture: Picture  # the output: RGB float, alpha, bit depth and gray flag of the input
    report: dict[str, Any]
    output: PipelineOutput

    @property
    def image(self) -> Image.Image:
        """The output as an 8-bit PIL image (RGB, RGBA, L or LA, as the input was)."""
        return picture_to_pil(self.picture)

    def save(self, path: str | os.PathLike[str]) -> list[str]:
        """Write atomically, at 16 bits where the input had them and the format allows."""
        return save_picture(self.picture, path)

    def step_map(self) -> Image.Image:
        """Steps spent per region, drawn over the output."""
        return render_step_map(self.output, self.image.convert("RGB"))
