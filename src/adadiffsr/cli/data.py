"""``adadiffsr data``: ground-truth photos and the prior cache for training."""

from __future__ import annotations

from pathlib import Path

import click

from ..data.cache import CacheConfig, build_cache
from ..data.degradations import parse_mix
from ..data.photos import prepare, split_files
from ..prior import PRIORS
from .options import DEBUG

C = CacheConfig  # the defaults below are its fields'


@click.group()
def data() -> None:
    """Assemble training and validation data."""


@data.command("photos")
@click.option("--out", default="data/photos", show_default=True, help="Folder for train/ and val/ ground truth.")
@click.option("--max-side", type=click.IntRange(min=64), default=1024, show_default=True)
@DEBUG
def data_photos(out: str, max_side: int, debug: bool) -> None:
    """Write ground truth of the real photos listed in the manifest (Debian wallpaper packages)."""
    files = prepare(Path(out), max_side=max_side)
    click.echo(f"{len(files)} photos under {out}", err=True)


@data.command("cache")
@click.option("--photos", default="data/photos", show_default=True, help="Ground truth from `adadiffsr data photos`.")
@click.option("--out", default="data/cache", show_default=True, help="Cache folder (a rerun resumes or extends it).")
@click.option("--count", type=click.IntRange(min=1), default=512, show_default=True, help="Crops in the cache.")
@click.option("--crop", type=click.IntRange(min=16), default=C.crop, show_default=True, help="Ground-truth crop side.")
@click.option("--mix", default=",".join(f"{name}:{w:g}" for name, w in C.mix), show_default=True,
              help="Degradations and their weights.")
@click.option("--prior", type=click.Choice(tuple(PRIORS)), default=C.prior, show_default=True)
@click.option("--fidelity", type=click.FloatRange(0, 1), default=C.fidelity, show_default=True,
              help="Run the prior at this --fidelity (its faithful tail where it has one): PFJ trained on such a "
                   "cache learns the student's step over the faithful estimate.")
@click.option("--seed", type=int, default=C.seed, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@DEBUG
def data_cache(photos: str, out: str, count: int, crop: int, mix: str, prior: str, fidelity: float, seed: int,
               threads: int | None, debug: bool) -> None:
    """Cache (input, prior output, ground truth) crops of the training photos for `train backbone --cache`."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    cfg = CacheConfig(prior=prior, crop=crop, mix=parse_mix(mix), seed=seed, fidelity=fidelity)
    written = build_cache(split_files(Path(photos), "train"), Path(out), count, cfg,
                          log=lambda m: click.echo(m, err=True))
    click.echo(f"{written} new crops under {out}", err=True)
