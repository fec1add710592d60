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

from .runtime import RUNTIMES

SAMPLER_NAMES = ("uniform", "adaptive", "timesteps", "grouped")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
BACKBONE_NAMES = ("compact", "ldm-sr-x4", "sd-x4-upscaler")
DTYPE_NAMES = ("fp32", "fp16", "bf16")
COLOR_FIX_NAMES = ("none", "wavelet", "adain")
RUNTIME_HELP = "What runs the networks: PyTorch, or their ONNX exports (adadiffsr export onnx) in ONNX Runtime."


def model_options(command: Any) -> Any:
    """The flags that pick and load a model, shared by ``upscale`` and ``serve``."""
    options = [
        click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True),
        click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="fp32", show_default=True),
        click.option("--weights", help="Backbone weights (.safetensors; a pipeline folder or cached Hugging Face "
                     "id for ldm-sr-x4). Default: the shipped model."),
        click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default="compact", show_default=True),
        click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True, help=RUNTIME_HELP),
        click.option("--prompt", default="", help="sd-x4-upscaler: text prompt (default empty)."),
        click.option("--negative-prompt", default="", help="sd-x4-upscaler: negative prompt, with --guidance-scale > 1."),
        click.option("--guidance-scale", type=click.FloatRange(min=0), default=1.0, show_default=True,
                     help="sd-x4-upscaler: classifier-free guidance (> 1 runs the UNet twice per tile; diffusers uses 9)."),
        click.option("--noise-level", type=click.IntRange(min=0), default=20, show_default=True,
                     help="sd-x4-upscaler: noise added to the input (the pipeline's noise_level)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_upscaler(weights: str | None, device: str, dtype: str, backbone: str, runtime: str, prompt: str,
                   negative_prompt: str, guidance_scale: float, noise_level: int) -> Any:
    from .api import Upscaler

    options: dict[str, Any] = {}
    if backbone == "sd-x4-upscaler":
        options = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": guidance_scale,
                   "noise_level": noise_level}
    return Upscaler.from_pretrained(weights, device=device, dtype=dtype, backbone=backbone, runtime=runtime, **options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adadiffsr", prog_name="adadiffsr")
def cli() -> None:
    """adadiffsr: fast region-adaptive diffusion super-resolution."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", required=True,
              help="Output file (one input) or folder (several inputs, a folder or a glob).")
@click.option("--scale", type=click.FloatRange(0, 16, min_open=True), help="Final scale (default: the model's, 4).")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES),
              help="grouped: each region joins the walk where its difficulty says (0 steps for flat ones); "
                   "adaptive: DTSS, each region at its own pace; timesteps: one walk for all; uniform: one fixed "
                   "interval. [default: the model's]")
@click.option("--interval", type=click.IntRange(1, 1000), help="DDPM steps per jump (uniform). [default: 20]")
@click.option("--steps", type=click.IntRange(0, 1000),
              help="Uniform sampling in N steps instead of --interval; 0 = the prior's output alone.")
@click.option("--strength", type=click.FloatRange(0, 1),
              help="Start at timestep strength*1000 from the noised prior estimate (default: the model's).")
@click.option("--timesteps", "timestep_list", help="A fixed walk for every tile, e.g. 399,149,29 (the timesteps sampler).")
@click.option("--budget", type=click.FloatRange(min=0),
              help="Mean diffusion steps per region, met on every image (the grouped sampler): the steps go "
                   "where the prior's estimate is most textured; 0 = the prior alone.")
@click.option("--group-thresholds",
              help="The grouped sampler without --budget: the difficulty (mean luma gradient of the prior's "
                   "estimate) at which a region gets its 1st, 2nd, 3rd step. [default: 0.010,0.012,0.014]")
@click.option("--intervals", default="20,50,100", show_default=True,
              help="The adaptive sampler's interval set (the paper's: 5,10,15,20).")
@click.option("--tau", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="DTSS gain threshold (the paper's: 5e-3).")
@click.option("--fr-change", type=click.Choice(("any", "rise")), default="any", show_default=True,
              help="DTSS: does a falling FR gain count as information arriving (any) or only a rising one (rise, the paper's)?")
@click.option("--drop", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="DTSS: NR fall below its best that makes a region saturated (exit early).")
@click.option("--scheduler", type=click.Choice(("ddim", "ddpm")),
              help="Update rule through the skip-step codebook. [default: the model's]")
@click.option("--eta", type=click.FloatRange(0, 1), help="DDIM stochasticity. [default: the model's, 0]")
@click.option("--tile", type=click.IntRange(min=1), help="Tile side in input pixels (default: the model's).")
@click.option("--overlap", type=click.IntRange(min=0), help="Tile overlap in input pixels (default: tile/4).")
@click.option("--batch-tiles", default="8", show_default=True,
              help="Tiles per backbone call, or 'auto' to size batches from free memory.")
@click.option("--seed", type=int, default=0, show_default=True)
@model_options
@click.option("--spacing", type=click.Choice(("trailing", "leading")), default="trailing", show_default=True,
              help="First timestep: T-1, or diffusers' default (the largest multiple of the interval below T).")
@click.option("--color-fix", type=click.Choice(COLOR_FIX_NAMES), default="none", show_default=True)
@click.option("--gain", type=click.Choice(("none", "exact", "learned")), default="none", show_default=True,
              help="Information gain per step (MMLE): exact metrics or the learned regressor.")
@click.option("--fidelity", type=click.FloatRange(0, 4), default=0.5, show_default=True,
              help="PFJ strength: 0 = the backbone alone (grainier, most generative), 1 = as trained "
                   "(cleaner, slightly more faithful); 0.5 was picked on training photos.")
@click.option("--ext", type=click.Choice(("png", "jpg", "webp", "tif", "bmp")), default="png", show_default=True,
              help="Output format in folder mode.")
@click.option("--suffix", default="", help="Appended to output names in folder mode (photo -> photo_SUFFIX.png).")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists (resume a run).")
@click.option("--max-pixels", type=click.IntRange(min=0), default=64 * 1024 * 1024, show_default=True,
              help="Refuse larger inputs (decompression bombs); 0 = no limit.")
@click.option("--report", "report_path", help="JSON report (NFE, seconds, tiles); a folder in folder mode.")
@click.option("--step-map", "step_map_path", help="Picture of steps per region; a folder in folder mode.")
@click.option("--force", is_flag=True, help="Allow an output to replace an input file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def upscale(
    inputs: tuple[str, ...], output: str, scale: float | None, sampler: str, interval: int | None,
    steps: int | None, strength: float | None, timestep_list: str | None, budget: float | None,
    group_thresholds: str | None, intervals: str, tau: float, fr_change: str, drop: float, scheduler: str, eta: float, tile: int | None, overlap: int | None, batch_tiles: str,
    seed: int, device: str, dtype: str, weights: str | None, backbone: str, runtime: str, prompt: str,
    negative_prompt: str, guidance_scale: float, noise_level: int, spacing: str, color_fix: str, gain: str, fidelity: float, ext: str,
    suffix: str,
    skip_existing: bool, max_pixels: int, report_path: str | None, step_map_path: str | None, force: bool,
    quiet: bool, debug: bool,
) -> None:
    """Super-resolve INPUT files, folders or globs into OUTPUT with the diffusion engine."""
    if interval is not None and steps is not None:
        raise click.UsageError("give --interval or --steps, not both")
    if (interval is not None or steps is not None) and sampler is None:
        sampler = "uniform"  # --interval / --steps without --sampler: a fixed interval is what was asked
    if batch_tiles != "auto" and not (batch_tiles.isdigit() and int(batch_tiles) >= 1):
        raise click.BadParameter(f"{batch_tiles!r} is not a positive integer or 'auto'", param_hint="--batch-tiles")
    from .files import plan_jobs, run_jobs, summary_line
    from .distributed import current_rank, gather_counts, rank_device, shard, share_cpu

    rank = current_rank()
    jobs, folder_mode = plan_jobs(list(inputs), output, ext, suffix, report_path, step_map_path, force)
    if rank.distributed:  # torchrun / accelerate launch: file i to rank i mod world size
        jobs, folder_mode = shard(jobs, rank), True
        share_cpu(rank)
        device = rank_device(device, rank)
    from .api import UpscaleConfig

    config = UpscaleConfig(
        sampler=sampler,
        interval=interval,
        steps=steps,
        strength=strength,
        timesteps=_int_list(timestep_list, "--timesteps") if timestep_list else None,
        budget=budget,
        group_thresholds=(_float_list(group_thresholds, "--group-thresholds") if group_thresholds
                          else UpscaleConfig.group_thresholds),
        rule=scheduler,  # type: ignore[arg-type]
        eta=eta,
        tile=tile,
        overlap=overlap,
        batch_tiles=int(batch_tiles) if batch_tiles != "auto" else 0,
        seed=seed,
        color_fix=color_fix,
        outscale=scale,
        gain=gain,
        spacing=spacing,
        intervals=_int_list(intervals, "--intervals"),
        tau=tau,
        fr_change=fr_change,
        drop=drop,
        fidelity=fidelity,
    )
    config.validate()
    upscaler = _load_upscaler(weights, device, dtype, backbone, runtime, prompt, negative_prompt, guidance_scale,
                              noise_level)
    fidelity_source = click.get_current_context().get_parameter_source("fidelity")
    if upscaler.pfj is None and fidelity_source != click.core.ParameterSource.DEFAULT:
        click.echo("warning: no PFJ file beside the weights (NAME.pfj.safetensors): --fidelity has no effect", err=True)
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    counts = run_jobs(
        jobs, upscaler, config, skip_existing=skip_existing, max_pixels=max_pixels or None,
        folder_mode=folder_mode, say=say, warn=lambda line: click.echo(line, err=True),
        progress=_progress_factory(quiet or rank.distributed),  # one bar per rank would interleave
    )
    counts = gather_counts(counts, rank)
    if folder_mode and rank.is_main:
        say(summary_line(counts) + (f" ({rank.world_size} processes)" if rank.distributed else ""))
    if counts["failed"]:
        raise click.exceptions.Exit(1)
    resolved = upscaler.resolve(config)
    if resolved.sampler == "adaptive" and resolved.gain == "none" and upscaler.regressor is None and not quiet:
        click.echo("note: no gain regressor beside the weights (NAME.regressor.safetensors), so the adaptive "
                   "sampler computed the metrics themselves, which is slow; see `adadiffsr train regressor`", err=True)


@cli.command()
@click.option("--hr", "hr_dir", required=True, help="Folder of ground-truth images.")
@click.option("--lr", "lr_dir", help="Folder of inputs matched to --hr by file name.")
@click.option("--degrade", help="Make inputs from --hr with these degradations (comma list of realesrgan-x4, "
              "mild-x4, bicubic-x4); each is reported on its own, in OUT/NAME/ when there are several.")
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
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
              help=RUNTIME_HELP + " A method's own runtime=... setting overrides it.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@click.option("--save-images", is_flag=True, help="Also write outputs and comparison sheets.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def bench(
    hr_dir: str, lr_dir: str | None, degrade: str | None, seed: int, methods: str, metric_names: str,
    limit: int | None, crop: int | None, out: str, weights: str | None, device: str, dtype: str, runtime: str,
    threads: int | None, save_images: bool, quiet: bool, debug: bool,
) -> None:
    """Compare methods on the same images: quality, NFE, seconds and memory, side by side."""
    if (lr_dir is None) == (degrade is None):
        raise click.UsageError("give exactly one of --lr DIR or --degrade NAME")
    import os

    import torch

    from .bench.methods import build_methods, split_methods
    from .bench.runner import load_pairs, markdown_table, run_bench

    torch.set_num_threads(threads or os.cpu_count() or 1)
    names = [m.strip() for m in metric_names.split(",") if m.strip()]
    from .metrics.registry import create_metric

    for name in names:
        create_metric(name)
    from .data.degradations import DEGRADATIONS

    degradations: list[str | None] = [None]
    if degrade is not None:
        degradations = [d.strip() for d in degrade.split(",") if d.strip()]
        unknown = [d for d in degradations if d not in DEGRADATIONS]
        if unknown or not degradations:
            raise click.BadParameter(f"{unknown[0] if unknown else degrade!r} is not one of {', '.join(DEGRADATIONS)}",
                                     param_hint="--degrade")
    all_pairs = {d: load_pairs(Path(hr_dir), Path(lr_dir) if lr_dir else None, d, seed, limit, crop) for d in degradations}
    chosen = build_methods(split_methods(methods), weights, device, dtype, runtime)
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    for name, pairs in all_pairs.items():
        folder = Path(out) / name if len(all_pairs) > 1 and name else Path(out)
        results = run_bench(pairs, chosen, names, folder, save_images=save_images, log=log)
        if not quiet:
            click.echo(f"\n{name or 'paired inputs'}:\n" + markdown_table(results["median"], names, len(pairs)))


@cli.group()
def analyze() -> None:
    """Look inside the sampler: information gain along the denoising path."""


def _gain_config(fr: str, nr: str) -> Any:
    from .gain.quality import GainConfig

    names = lambda text: tuple(m.strip() for m in text.split(",") if m.strip())
    return GainConfig(fr_metrics=names(fr), nr_metrics=names(nr))


@analyze.command("gain")
@click.argument("image")
@click.option("-o", "--output", required=True, help="Plot (.png).")
@click.option("--interval", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--fr", default="psnr,ssim,nlpd", show_default=True, help="Full-reference measures.")
@click.option("--nr", default="niqe,piqe", show_default=True, help="No-reference measures.")
@click.option("--weights", help="Backbone weights (default: the shipped model).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def analyze_gain(image: str, output: str, interval: int, fr: str, nr: str, weights: str | None, seed: int,
                 debug: bool) -> None:
    """Plot the measures of a flat and a textured tile of IMAGE along the path (cf. the paper's Fig. 3)."""
    from .io import output_format

    output_format(output)
    config = _gain_config(fr, nr)
    from .api import Upscaler
    from .engine.pipeline import pad_to_multiple
    from .engine.tiling import TileGrid
    from .gain.plot import plot_traces
    from .gain.traces import trace_tile
    from .io import picture_to_tensor, read_picture, save_image

    upscaler = Upscaler.from_pretrained(weights, device="cpu")
    backbone = upscaler.backbone
    lr = pad_to_multiple(picture_to_tensor(read_picture(image)), backbone.spec.size_multiple)
    tile = backbone.spec.tile_size
    grid = TileGrid.build(lr.shape[-2], lr.shape[-1], tile, tile // 4)
    tiles = grid.crop(lr)
    detail = (tiles[..., 1:, :] - tiles[..., :-1, :]).abs().mean((1, 2, 3)) + (
        tiles[..., 1:] - tiles[..., :-1]).abs().mean((1, 2, 3))
    panels = []
    for label, index in (("flat", int(detail.argmin())), ("textured", int(detail.argmax()))):
        box = grid.boxes[index]
        trace = trace_tile(backbone, tiles[index : index + 1], config, interval, seed)
        panels.append((f"{label} tile at ({box.left}, {box.top}), {box.width}x{box.height} input px", trace))
        click.echo(f"{label} tile {index}: R full-ref {trace.performance[0, 0]:.3f} -> {trace.performance[-1, 0]:.3f}, "
                   f"no-ref {trace.performance[0, 1]:.3f} -> {trace.performance[-1, 1]:.3f}", err=True)
    save_image(plot_traces(panels, config), output)


@analyze.command("traces")
@click.option("--photos", default="data/photos", show_default=True)
@click.option("--split", type=click.Choice(("train", "val")), default="train", show_default=True)
@click.option("--tiles", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--interval", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--fr", default="psnr,ssim,nlpd", show_default=True)
@click.option("--nr", default="niqe,piqe", show_default=True)
@click.option("--pool", type=click.IntRange(min=1), default=4, show_default=True,
              help="Statistics cell of the regressor inputs kept per step (the regressor's training data).")
@click.option("--weights", help="Backbone weights (default: the shipped model).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default="compact", show_default=True)
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Traces file (.safetensors), rewritten every 16 tiles.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def analyze_traces(photos: str, split: str, tiles: int, interval: int, fr: str, nr: str, pool: int,
                   weights: str | None, backbone: str, device: str, seed: int, out: str, debug: bool) -> None:
    """Record every measure at every step for tiles of degraded photo crops (realesrgan-x4)."""
    config = _gain_config(fr, nr)
    from .api import Upscaler
    from .data.pairs import PairDataset
    from .data.photos import split_files
    from .errors import OutputError
    from .gain.traces import save_traces, trace_tile

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
        lr = lr[None].to(upscaler.device) * 2 - 1
        traces.append(trace_tile(model, lr, config, interval, seed + k, pool=pool))
        click.echo(f"tile {k + 1}/{tiles}", err=True)
        if (k + 1) % 16 == 0 and k + 1 < tiles:
            save_traces(Path(out), traces, config, meta)
    ranges = save_traces(Path(out), traces, config, meta)
    click.echo("fitted ranges (worse, better): " + json.dumps(ranges), err=True)


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


@data.command("cache")
@click.option("--photos", default="data/photos", show_default=True, help="Ground truth from `adadiffsr data photos`.")
@click.option("--out", default="data/cache", show_default=True, help="Cache folder (a rerun resumes or extends it).")
@click.option("--count", type=click.IntRange(min=1), default=512, show_default=True, help="Crops in the cache.")
@click.option("--crop", type=click.IntRange(min=16), default=384, show_default=True, help="Ground-truth crop side.")
@click.option("--mix", default="realesrgan-x4:0.7,bicubic-x4:0.3", show_default=True,
              help="Degradations and their weights.")
@click.option("--prior", default="realesrgan-x4plus", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all cores).")
def data_cache(photos: str, out: str, count: int, crop: int, mix: str, prior: str, seed: int,
               threads: int | None) -> None:
    """Cache (input, prior output, ground truth) crops of the training photos for `train backbone --cache`."""
    import torch

    from .data.cache import CacheConfig, build_cache
    from .data.photos import split_files
    from .errors import ConfigError

    if threads:
        torch.set_num_threads(threads)
    try:
        pairs = tuple((name.strip(), float(w)) for name, _, w in (m.partition(":") for m in mix.split(",") if m))
    except ValueError as e:
        raise ConfigError(f"--mix: expected NAME:WEIGHT,... ({e})") from e
    cfg = CacheConfig(prior=prior, crop=crop, mix=pairs, seed=seed)
    written = build_cache(split_files(Path(photos), "train"), Path(out), count, cfg,
                          log=lambda m: click.echo(m, err=True))
    click.echo(f"{written} new crops under {out}", err=True)


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
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True,
              help="EMA of the weights (lower for short runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "model_json", default="{}", help='CompactConfig overrides as JSON, e.g. \'{"tile_size": 64}\'.')
@click.option("--cache", help="A prior cache (`adadiffsr data cache`): train a refiner over its prior.")
@click.option("--max-timestep", type=click.IntRange(0, 999), help="Train on timesteps 0..N only (a refiner's range).")
@click.option("--init", help="Weights file to warm-start from (tensors that fit are copied).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def train_backbone_cmd(
    photos: str, out: str, steps: int, batch_size: int, learning_rate: float, crop: int, degradation: str,
    workers: int, device: str, max_minutes: float | None, val_every: int, save_every: int, ema_decay: float,
    seed: int, model_json: str, cache: str | None, max_timestep: int | None, init: str | None, debug: bool,
) -> None:
    """Train the compact backbone, or a refiner over a prior with --cache (resumable, EMA, safetensors)."""
    try:
        model = json.loads(model_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e.msg})", param_hint="--model") from e
    from .train.backbone import BackboneTrainConfig, train_backbone

    cfg = BackboneTrainConfig(
        photos=photos, out=out, steps=steps, batch_size=batch_size, lr=learning_rate, crop=crop,
        degradation=degradation, workers=workers, device=device,
        max_minutes=max_minutes, val_every=val_every, save_every=save_every, ema_decay=ema_decay, seed=seed,
        model=model, cache=cache, max_timestep=max_timestep, init=init,
    )
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("train", total=steps, loss="-")

    def on_step(step: int, loss: float) -> None:
        if not bar.live.is_started:  # shown from the first step, so set-up errors print alone
            bar.start()
        bar.update(task, completed=step, loss=f"{loss:.5f}")

    try:
        path = train_backbone(cfg, log=lambda line: bar.console.print(line, highlight=False), on_step=on_step)
    finally:
        if bar.live.is_started:
            bar.stop()
    click.echo(f"EMA weights: {path}", err=True)


@train.command("regressor")
@click.option("--traces", default="data/traces/train-i50.safetensors", show_default=True,
              help="Traces of training photos (`adadiffsr analyze traces --split train`).")
@click.option("--val-traces", default="data/traces/val-i50.safetensors", show_default=True,
              help="Traces of validation photos, for the agreement report.")
@click.option("--out", default="weights/compact-x4.regressor.safetensors", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=80, show_default=True)
@click.option("--weights", help="Backbone weights the traces were made with (default: the shipped model).")
@click.option("--backbone", "backbone_name", type=click.Choice(BACKBONE_NAMES), default="compact", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def train_regressor_cmd(traces: str, val_traces: str, out: str, epochs: int, weights: str | None, backbone_name: str,
                        seed: int, debug: bool) -> None:
    """Train the MMLE gain regressor on traced exact gains; report agreement and cost."""
    from .api import Upscaler
    from .train.regressor import RegressorTrainConfig, train_regressor

    backbone = Upscaler.from_pretrained(weights, device="cpu", backbone=backbone_name, regressor=False, pfj=False).backbone
    cfg = RegressorTrainConfig(traces=traces, val_traces=val_traces, out=out, epochs=epochs, seed=seed)
    report = train_regressor(backbone, cfg, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps({k: report[k] for k in ("train", "val", "overhead")}, indent=2))


@train.command("pfj")
@click.option("--photos", default="data/photos", show_default=True)
@click.option("--out", default="weights/compact-x4.pfj.safetensors", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=256, show_default=True, help="Ground-truth crop side.")
@click.option("--objective", type=click.Choice(("chain", "step")), default="chain", show_default=True,
              help="chain: loss on the final output of a sampled walk; step: one backbone call.")
@click.option("--chain-interval", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Uniform interval of the training walk (chain objective).")
@click.option("--intervals", default="20,50,100", show_default=True,
              help="Intervals the previous estimates are drawn at (step objective).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--weights", help="Backbone weights, with its regressor beside it (default: the shipped model).")
@click.option("--backbone", type=click.Choice(BACKBONE_NAMES), default="compact", show_default=True)
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def train_pfj_cmd(photos: str, out: str, steps: int, batch_size: int, crop: int, objective: str, chain_interval: int,
                  intervals: str, learning_rate: float, weights: str | None, backbone: str, device: str, seed: int,
                  debug: bool) -> None:
    """Train PFJ (progressive feature injection) with the backbone and regressor frozen."""
    from .api import Upscaler
    from .errors import WeightsError
    from .train.pfj import PFJTrainConfig, train_pfj

    upscaler = Upscaler.from_pretrained(weights, device="cpu", backbone=backbone, pfj=False)
    if upscaler.regressor is None:
        raise WeightsError("PFJ is trained on the learned gain: train the regressor first (adadiffsr train regressor)")
    cfg = PFJTrainConfig(photos=photos, out=out, steps=steps, batch_size=batch_size, crop=crop,
                         objective=objective, chain_interval=chain_interval,
                         intervals=_int_list(intervals, "--intervals"), lr=learning_rate, device=device, seed=seed)
    report = train_pfj(upscaler.backbone, upscaler.regressor, cfg, log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


@cli.group()
def export() -> None:
    """Write the model's networks in other formats, beside its weights."""


@export.command("onnx")
@click.option("--weights", help="Backbone weights (default: the shipped model); its regressor and PFJ go too.")
@click.option("--image", help="The real photo the exports are checked on (default: assets/coffee-lr.png).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Largest |ONNX Runtime - PyTorch| allowed on any output.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def export_onnx_cmd(weights: str | None, image: str | None, tolerance: float, quiet: bool, debug: bool) -> None:
    """Export the refiner, prior, gain regressor and PFJ as ONNX files beside the weights (NAME.onnx,
    NAME.prior.onnx, ...), each checked against PyTorch; then pass --runtime onnx."""
    from .api import Upscaler
    from .runtime.onnx_export import export_onnx

    upscaler = Upscaler.from_pretrained(weights, device="cpu")
    checks = export_onnx(upscaler, upscaler.files["weights"], image, tolerance,
                         log=None if quiet else (lambda line: click.echo(line, err=True)))
    if not quiet:
        click.echo(f"wrote {len(checks)} ONNX files, each within {tolerance:g} of PyTorch; "
                   f"upscale with --runtime onnx", err=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@model_options
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs run at once (1 on a CPU; more on a GPU with memory to spare).")
@click.option("--queue-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Jobs that may wait; more are refused with 'queue is full'.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=64 * 1024 * 1024, show_default=True,
              help="Refuse larger input images.")
@click.option("--max-file-size", default="100mb", show_default=True, help="Refuse larger uploads (e.g. 20mb).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def serve(host: str, port: int, device: str, dtype: str, weights: str | None, backbone: str, runtime: str, prompt: str,
          negative_prompt: str, guidance_scale: float, noise_level: int, concurrency: int, queue_size: int,
          max_pixels: int, max_file_size: str, debug: bool) -> None:
    """A web page (Gradio) over one loaded model: upload, compare, download."""
    import importlib.util
    import socket

    if importlib.util.find_spec("gradio") is None:
        raise click.ClickException("the web page needs Gradio: pip install 'adadiffsr[serve]'")
    from .serve.server import ServeSettings
    from .serve.server import serve as launch
    from .weights import default_weights_path

    try:  # a taken port fails here, before the model loads
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e})") from e

    upscaler = _load_upscaler(weights, device, dtype, backbone, runtime, prompt, negative_prompt, guidance_scale,
                              noise_level)
    settings = ServeSettings(host=host, port=port, concurrency=concurrency, queue_size=queue_size,
                             max_pixels=max_pixels, max_file_size=max_file_size)
    name = Path(weights).name if weights else default_weights_path().name
    click.echo(f"adadiffsr serve: http://{host}:{port} (model {name}; Ctrl-C stops)", err=True)
    launch(upscaler, settings, model_name=name)


def _int_list(text: str, hint: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma list of integers", param_hint=hint) from e


def _float_list(text: str, hint: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma list of numbers", param_hint=hint) from e


def _progress_factory(quiet: bool) -> Any:
    """A context manager per image yielding the engine's progress callback: a bar on stderr, shown
    from the first step on, so that an error found before sampling prints alone."""
    import contextlib

    @contextlib.contextmanager
    def bar(label: str) -> Any:
        if quiet:
            yield None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("NFE {task.fields[nfe]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        task = progress.add_task(label, total=1.0, nfe=0)

        def update(done: float, nfe: int) -> None:
            if not progress.live.is_started:
                progress.start()
            progress.update(task, completed=done, nfe=nfe)

        try:
            yield update
        finally:
            if progress.live.is_started:
                progress.stop()

    return bar


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup (temporary files) runs as for Ctrl-C."""


def _stop_on_sigterm() -> None:
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line on stderr."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    _stop_on_sigterm()
    try:
        code = cli.main(args=args, prog_name="adadiffsr", standalone_mode=False)
        return code if isinstance(code, int) else 0  # click returns Exit codes in this mode
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # click turns Ctrl-C into Abort
        if isinstance(e, Terminated) or isinstance(e.__cause__, Terminated):
            click.echo("error: terminated", err=True)
            return 143
        click.echo("error: interrupted", err=True)
        return 130
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except Exception as e:
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
