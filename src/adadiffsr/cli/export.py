"""``adadiffsr export``: the model's networks in other formats, beside its weights."""

from __future__ import annotations

import click

from ..api import Upscaler
from ..runtime.onnx_export import TOLERANCE, export_onnx
from .options import DEBUG


@click.group()
def export() -> None:
    """Write the model's networks in other formats, beside its weights."""


@export.command("onnx")
@click.option("--weights", help="Backbone weights (default: the shipped model); its regressor, PFJ and student go too.")
@click.option("--image", help="The real photo the exports are checked on (default: assets/coffee-lr.png).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=TOLERANCE, show_default=True,
              help="Largest |ONNX Runtime - PyTorch| allowed on any output.")
@click.option("-q", "--quiet", is_flag=True)
@DEBUG
def export_onnx_cmd(weights: str | None, image: str | None, tolerance: float, quiet: bool, debug: bool) -> None:
    """Export the refiner, prior, gain regressor, PFJ and distilled student as ONNX files beside the
    weights (NAME.onnx, NAME.prior.onnx, ...), each checked against PyTorch; then pass --runtime onnx."""
    upscaler = Upscaler.from_pretrained(weights, device="cpu")
    checks = export_onnx(upscaler, upscaler.files["weights"], image, tolerance,
                         log=None if quiet else (lambda line: click.echo(line, err=True)))
    if not quiet:
        click.echo(f"wrote {len(checks)} ONNX files, each within {tolerance:g} of PyTorch; "
                   f"upscale with --runtime onnx", err=True)
