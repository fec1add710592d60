"""What an upscale returns: the output picture, its report, and the engine's record of it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .engine.pipeline import PipelineOutput
from .io import Picture, atomic_write, picture_to_pil, save_image, save_picture
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

    def write(self, output: str | os.PathLike[str], *, source: str, output_name: str | None = None,
              report: str | os.PathLike[str] | None = None,
              step_map: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], list[str]]:
        """What the CLI and the page write for one file: the image (``save``), and where asked the report
        as JSON, headed by the input's and the output's names, and the step map, each written whole or
        not at all. Returns the report as written and the save's notes."""
        notes = self.save(output)
        record = {"input": source, "output": output_name or str(output), **self.report}
        if report is not None:
            text = json.dumps(record, indent=2)
            atomic_write(report, lambda tmp: tmp.write_text(text))
        if step_map is not None:
            save_image(self.step_map(), step_map)
        return record, notes
