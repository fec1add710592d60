"""``adadiffsr bench``: methods side by side on the same images."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..bench.methods import build_methods, split_methods
from ..bench.runner import load_pairs, markdown_table, run_bench
from ..data.degradations import DEGRADATIONS
from ..devices import DTYPE_CHOICES
from ..metrics.registry import create_metric
from ..runtime import RUNTIMES
from .options import DEBUG, RUNTIME_HELP, device_option, say_to_stderr


@click.command()
@click.option("--hr", "hr_dir", required=True, help="Folder of ground-truth images.")
@click.option("--lr", "lr_dir", help="Folder of inputs matched to --hr by file name.")
@click.option("--degrade", help=f"Make inputs from --hr with these degradations (comma list of {', '.join(DEGRADATIONS)}); "
              "each is reported on its own, in OUT/NAME/ when there are several.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --degrade.")
@click.option("--methods", default="bicubic,realesrgan,uniform:interval=20", show_default=True,
              help="Comma list: bicubic, realesrgan, or a policy with settings (uniform:interval=5,rule=ddpm; "
                   "weights=FILE runs a candidate model, its student and companions beside it, against --weights).")
@click.option("--metrics", "metric_names", default="psnr,ssim,gmsd,niqe,brisque,piqe,detail_1,detail_2,detail_4",
              show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Use the first N images.")
@click.option("--crop", type=click.IntRange(min=16), help="Centre-crop ground truth to N px (with --degrade).")
@click.option("--out", required=True, help="Folder for results.json, results.md, pareto.png.")
@click.option("--weights", help="Backbone for the engine methods (default: the shipped model).")
@device_option()
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help="As upscale's --dtype; a method's own dtype=... setting overrides it.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
              help=RUNTIME_HELP + " A method's own runtime=... setting overrides it.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@click.option("--save-images", is_flag=True, help="Also write outputs and comparison sheets.")
@click.option("-q", "--quiet", is_flag=True)
@DEBUG
def bench(
    hr_dir: str, lr_dir: str | None, degrade: str | None, seed: int, methods: str, metric_names: str,
    limit: int | None, crop: int | None, out: str, weights: str | None, device: str, dtype: str, runtime: str,
    threads: int | None, save_images: bool, quiet: bool, debug: bool,
) -> None:
    """Compare methods on the same images: quality, NFE, seconds and memory, side by side."""
    if (lr_dir is None) == (degrade is None):
        raise click.UsageError("give exactly one of --lr DIR or --degrade NAME")
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    names = [m.strip() for m in metric_names.split(",") if m.strip()]
    for name in names:
        create_metric(name)
    degradations: list[str | None] = [None]
    if degrade is not None:
        degradations = [d.strip() for d in degrade.split(",") if d.strip()]
        unknown = [d for d in degradations if d not in DEGRADATIONS]
        if unknown or not degradations:
            raise click.BadParameter(f"{unknown[0] if unknown else degrade!r} is not one of {', '.join(DEGRADATIONS)}",
                                     param_hint="--degrade")
    all_pairs = {d: load_pairs(Path(hr_dir), Path(lr_dir) if lr_dir else None, d, seed, limit, crop) for d in degradations}
    chosen = build_methods(split_methods(methods), weights, device, dtype, runtime)
    log = say_to_stderr(quiet)
    for name, pairs in all_pairs.items():
        folder = Path(out) / name if len(all_pairs) > 1 and name else Path(out)
        results = run_bench(pairs, chosen, names, folder, save_images=save_images, log=log)
        if not quiet:
            click.echo(f"\n{name or 'paired inputs'}:\n" + markdown_table(results["median"], names, len(pairs)))
