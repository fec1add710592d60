"""The command line: a thin layer that parses flags into ``UpscaleConfig`` and calls the library.

Every failure a user can cause ends as one line ``error: ...`` on stderr and a non-zero exit
(2 for bad flags); ``--debug`` shows the traceback instead. Heavy imports happen inside commands.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

SAMPLER_NAMES = ("uniform",)
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
DTYPE_NAMES = ("fp32", "fp16", "bf16")
COLOR_FIX_NAMES = ("none", "wavelet", "adain")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adadiffsr", prog_name="adadiffsr")
def cli() -> None:
    """adadiffsr: fast region-adaptive diffusion super-resolution."""


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output image (.png, .jpg, .webp, .tif, .bmp).")
@click.option("--scale", type=click.FloatRange(0, 16, min_open=True), help="Final scale (default: the model's, 4).")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="uniform", show_default=True)
@click.option("--interval", type=click.IntRange(1, 1000), help="DDPM steps per jump (uniform). [default: 20]")
@click.option("--steps", type=click.IntRange(1, 1000), help="Number of steps instead of --interval (1000/N).")
@click.option("--scheduler", type=click.Choice(("ddim", "ddpm")), default="ddim", show_default=True,
              help="Update rule through the skip-step codebook.")
@click.option("--eta", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="DDIM stochasticity.")
@click.option("--tile", type=click.IntRange(min=1), help="Tile side in input pixels (default: the model's).")
@click.option("--overlap", type=click.IntRange(min=0), help="Tile overlap in input pixels (default: tile/4).")
@click.option("--batch-tiles", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tiles per backbone call.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="fp32", show_default=True)
@click.option("--weights", help="Backbone weights (.safetensors). Default: the shipped model.")
@click.option("--color-fix", type=click.Choice(COLOR_FIX_NAMES), default="none", show_default=True)
@click.option("--report", "report_path", help="Write a JSON report (NFE, seconds, tiles) here.")
@click.option("--step-map", "step_map_path", help="Write a picture of steps spent per region here.")
@click.option("--force", is_flag=True, help="Allow the output to replace the input file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def upscale(
    input_path: str,
    output: str,
    scale: float | None,
    sampler: str,
    interval: int | None,
    steps: int | None,
    scheduler: str,
    eta: float,
    tile: int | None,
    overlap: int | None,
    batch_tiles: int,
    seed: int,
    device: str,
    dtype: str,
    weights: str | None,
    color_fix: str,
    report_path: str | None,
    step_map_path: str | None,
    force: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Super-resolve INPUT into OUTPUT with the diffusion engine."""
    if interval is not None and steps is not None:
        raise click.UsageError("give --interval or --steps, not both")
    if steps is not None:
        interval = max(1, round(1000 / steps))
    _check_outputs(input_path, [output, report_path, step_map_path], force)

    from .api import Upscaler, UpscaleConfig
    from .io import atomic_write, read_image, save_image

    config = UpscaleConfig(
        sampler=sampler,
        interval=interval if interval is not None else UpscaleConfig.interval,
        rule=scheduler,  # type: ignore[arg-type]
        eta=eta,
        tile=tile,
        overlap=overlap,
        batch_tiles=batch_tiles,
        seed=seed,
        color_fix=color_fix,
        outscale=scale,
    )
    config.validate()
    image = read_image(input_path)
    upscaler = Upscaler.from_pretrained(weights, device=device, dtype=dtype)
    result = _run_with_progress(upscaler, image, config, quiet)

    save_image(result.image, output)
    if report_path:
        report = {"input": str(input_path), "output": str(output), **result.report}
        text = json.dumps(report, indent=2)
        atomic_write(report_path, lambda tmp: tmp.write_text(text))
    if step_map_path:
        save_image(result.step_map(), step_map_path)
    if not quiet:
        r = result.report
        click.echo(
            f"wrote {output} ({r['output_size'][0]}x{r['output_size'][1]}) in {r['seconds']['total']:.1f} s: "
            f"{r['nfe']} tile evaluations over {r['num_tiles']} tiles",
            err=True,
        )


@cli.command()
@click.option("--hr", "hr_dir", required=True, help="Folder of ground-truth images.")
@click.option("--lr", "lr_dir", help="Folder of inputs matched to --hr by file name.")
@click.option("--degrade", type=click.Choice(("bicubic-x4", "realesrgan-x4")), help="Make inputs from --hr.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --degrade.")
@click.option("--methods", default="bicubic,realesrgan,uniform:interval=20", show_default=True,
              help="Comma list: bicubic, realesrgan, or a sampler with settings (uniform:interval=5,rule=ddpm).")
@click.option("--metrics", "metric_names", default="psnr,ssim,gmsd,niqe", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Use the first N images.")
@click.option("--crop", type=click.IntRange(min=16), help="Centre-crop ground truth to N px (with --degrade).")
@click.option("--out", required=True, help="Folder for results.json, results.md, pareto.png.")
@click.option("--weights", help="Backbone for the engine methods (default: the shipped model).")
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="fp32", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@click.option("--save-images", is_flag=True, help="Also write outputs and comparison sheets.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def bench(
    hr_dir: str, lr_dir: str | None, degrade: str | None, seed: int, methods: str, metric_names: str,
    limit: int | None, crop: int | None, out: str, weights: str | None, device: str, dtype: str,
    threads: int | None, save_images: bool, quiet: bool, debug: bool,
) -> None:
    """Compare methods on the same images: quality, NFE, seconds and memory, side by side."""
    if (lr_dir is None) == (degrade is None):
        raise click.UsageError("give exactly one of --lr DIR or --degrade NAME")
    import os

    import torch

    from .bench.methods import build_methods, split_methods
    from .bench.runner import load_pairs, run_bench

    torch.set_num_threads(threads or os.cpu_count() or 1)
    names = [m.strip() for m in metric_names.split(",") if m.strip()]
    from .metrics.registry import create_metric

    for name in names:
        create_metric(name)
    pairs = load_pairs(Path(hr_dir), Path(lr_dir) if lr_dir else None, degrade, seed, limit, crop)
    chosen = build_methods(split_methods(methods), weights, device, dtype)
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    results = run_bench(pairs, chosen, names, Path(out), save_images=save_images, log=log)
    if not quiet:
        from .bench.runner import markdown_table

        click.echo(markdown_table(results["median"], names, len(pairs)))


@cli.group()
def data() -> None:
    """Assemble training and validation data."""


@data.command("photos")
@click.option("--out", default="data/photos", show_default=True, help="Folder for train/ and val/ ground truth.")
@click.option("--max-side", type=click.IntRange(min=64), default=1024, show_default=True)
def data_photos(out: str, max_side: int) -> None:
    """Write ground truth of the real photos listed in the manifest (Debian wallpaper packages)."""
    from .data.photos import prepare

    files = prepare(Path(out), max_side=max_side)
    click.echo(f"{len(files)} photos under {out}", err=True)


@cli.group()
def train() -> None:
    """Train the parts of the model."""


@train.command("backbone")
@click.option("--photos", default="data/photos", show_default=True)
@click.option("--out", default="runs/backbone", show_default=True, help="Run folder (resumes from it).")
@click.option("--steps", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=256, show_default=True)
@click.option("--degradation", type=click.Choice(("realesrgan", "bicubic")), default="realesrgan", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--val-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--save-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "model_json", default="{}", help='CompactConfig overrides as JSON, e.g. \'{"tile_size": 64}\'.')
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def train_backbone_cmd(
    photos: str, out: str, steps: int, batch_size: int, learning_rate: float, crop: int, degradation: str,
    workers: int, device: str, max_minutes: float | None, val_every: int, save_every: int, seed: int,
    model_json: str, debug: bool,
) -> None:
    """Train the compact backbone on degraded real photos (resumable, EMA, safetensors)."""
    try:
        model = json.loads(model_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e.msg})", param_hint="--model") from e
    from .train.backbone import BackboneTrainConfig, train_backbone

    cfg = BackboneTrainConfig(
        photos=photos, out=out, steps=steps, batch_size=batch_size, lr=learning_rate, crop=crop,
        degradation=degradation, workers=workers, device=device,
        max_minutes=max_minutes, val_every=val_every, save_every=save_every, seed=seed, model=model,
    )
    path = train_backbone(cfg, log=lambda line: click.echo(line, err=True))
    click.echo(f"EMA weights: {path}", err=True)


def _check_outputs(input_path: str, outputs: list[str | None], force: bool) -> None:
    """Refuse, before any work, outputs that would replace the input or cannot be written."""
    from .errors import OutputError
    from .io import output_format

    source = Path(input_path).resolve()
    for i, out in enumerate(outputs):
        if out is None:
            continue
        path = Path(out)
        if i != 1:  # the report is JSON; images need a known suffix
            output_format(path)
        if path.resolve() == source and not force:
            raise OutputError(f"output {out} is the input file; pass --force to replace it")
        if path.is_dir():
            raise OutputError(f"output {out} is a folder; give a file name")
        if not path.parent.resolve().is_dir():
            raise OutputError(f"output folder does not exist: {path.parent}")


def _run_with_progress(upscaler: Any, image: Any, config: Any, quiet: bool) -> Any:
    """Run the upscale with a progress bar on stderr, shown from the first step on (so that an
    error found before sampling starts prints alone)."""
    if quiet:
        return upscaler(image, config)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("NFE {task.fields[nfe]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("upscaling", total=1.0, nfe=0)

    def update(done: float, nfe: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, nfe=nfe)

    try:
        return upscaler(image, config, progress=update)
    finally:
        if bar.live.is_started:
            bar.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line on stderr."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="adadiffsr", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("error: interrupted", err=True)
        return 130
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into exit codes
        from .errors import AdaDiffSRError

        if debug:
            traceback.print_exc()
        if isinstance(e, AdaDiffSRError):
            click.echo(f"error: {e}", err=True)
            return e.exit_code
        if isinstance(e, MemoryError):
            click.echo("error: out of memory; try a smaller --tile or --batch-tiles", err=True)
            return 1
        click.echo(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback",
                   err=True)
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
