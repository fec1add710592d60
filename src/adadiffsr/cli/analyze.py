"""``adadiffsr analyze``: the information gain along the denoising path (MMLE's inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..api import Upscaler
from ..core.pixels import normalize
from ..data.pairs import PairDataset
from ..data.photos import split_files
from ..errors import OutputError
from ..gain.plot import plot_traces
from ..gain.quality import GainConfig
from ..gain.traces import flat_and_textured, save_traces, trace_tile
from ..io import output_format, picture_to_tensor, read_picture, save_image
from ..policies.uniform import UniformPolicy
from .options import DEBUG, backbone_option, device_option

FR_DEFAULT, NR_DEFAULT = ",".join(GainConfig.fr_metrics), ",".join(GainConfig.nr_metrics)


def gain_config(fr: str, nr: str) -> GainConfig:
    def names(text: str) -> tuple[str, ...]:
        return tuple(m.strip() for m in text.split(",") if m.strip())

    return GainConfig(fr_metrics=names(fr), nr_metrics=names(nr))


@click.group()
def analyze() -> None:
    """Look inside the sampler: information gain along the denoising path."""


@analyze.command("gain")
@click.argument("image")
@click.option("-o", "--output", required=True, help="Plot (.png).")
@click.option("--interval", type=click.IntRange(min=1), default=UniformPolicy.interval, show_default=True)
@click.option("--fr", default=FR_DEFAULT, show_default=True, help="Full-reference measures.")
@click.option("--nr", default=NR_DEFAULT, show_default=True, help="No-reference measures.")
@click.option("--weights", help="Backbone weights (default: the shipped model).")
@click.option("--seed", type=int, default=0, show_default=True)
@DEBUG
def analyze_gain(image: str, output: str, interval: int, fr: str, nr: str, weights: str | None, seed: int,
                 debug: bool) -> None:
    """Plot the measures of a flat and a textured tile of IMAGE along the path (cf. the paper's Fig. 3)."""
    output_format(output)
    config = gain_config(fr, nr)
    backbone = Upscaler.from_pretrained(weights, device="cpu").backbone
    panels = []
    for label, box, tile in flat_and_textured(backbone, picture_to_tensor(read_picture(image))):
        trace = trace_tile(backbone, tile, config, interval, seed)
        panels.append((f"{label} tile at ({box.left}, {box.top}), {box.width}x{box.height} input px", trace))
        click.echo(f"{label} tile: R full-ref {trace.performance[0, 0]:.3f} -> {trace.performance[-1, 0]:.3f}, "
                   f"no-ref {trace.performance[0, 1]:.3f} -> {trace.performance[-1, 1]:.3f}", err=True)
    save_image(plot_traces(panels, config, backbone.spec.schedule.num_train_timesteps), output)


@analyze.command("traces")
@click.option("--photos", default="data/photos", show_default=True)
@click.option("--split", type=click.Choice(("train", "val")), default="train", show_default=True)
@click.option("--tiles", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--interval", type=click.IntRange(min=1), default=UniformPolicy.interval, show_default=True)
@click.option("--fr", default=FR_DEFAULT, show_default=True)
@click.option("--nr", default=NR_DEFAULT, show_default=True)
@click.option("--pool", type=click.IntRange(min=1), default=4, show_default=True,
              help="Statistics cell of the regressor inputs kept per step (the regressor's training data).")
@click.option("--weights", help="Backbone weights (default: the shipped model).")
@backbone_option()
@device_option()
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Traces file (.safetensors), rewritten every 16 tiles.")
@DEBUG
def analyze_traces(photos: str, split: str, tiles: int, interval: int, fr: str, nr: str, pool: int,
                   weights: str | None, backbone: str, device: str, seed: int, out: str, debug: bool) -> None:
    """Record every measure at every step for tiles of degraded photo crops (realesrgan-x4)."""
    config = gain_config(fr, nr)
    if not Path(out).parent.is_dir():  # said before the work, not after it
        raise OutputError(f"output folder does not exist: {Path(out).parent}")
    upscaler = Upscaler.from_pretrained(weights, device=device, backbone=backbone, regressor=False, pfj=False)
    model = upscaler.backbone
    tile = model.spec.tile_size
    dataset = PairDataset(split_files(Path(photos), split), crop=tile * model.spec.scale_factor, seed=seed)
    meta = {"photos_split": split, "seed": str(seed), "interval": str(interval), "pool": str(pool),
            "backbone": backbone}
    traces = []
    for k in range(tiles):
        lr, _ = dataset[k]
        traces.append(trace_tile(model, normalize(lr[None].to(upscaler.device)), config, interval, seed + k, pool=pool))
        click.echo(f"tile {k + 1}/{tiles}", err=True)
        if (k + 1) % 16 == 0 and k + 1 < tiles:
            save_traces(Path(out), traces, config, meta)
    ranges = save_traces(Path(out), traces, config, meta)
    click.echo("fitted ranges (worse, better): " + json.dumps(ranges), err=True)
