"""``adadiffsr train fidelity-tail``: the faithful end of ``--fidelity`` for the Real-ESRGAN x4plus prior."""

from __future__ import annotations

from pathlib import Path

import click

from ..train.fidelity_tail import TailTrainConfig, train_fidelity_tail
from .options import DEBUG, device_option, learning_rate_option

T = TailTrainConfig  # the defaults below are its fields'


@click.command("fidelity-tail")
@click.option("--cache", default=T.cache, show_default=True,
              help="A cache of Real-ESRGAN x4plus outputs on the training photos (`adadiffsr data cache`).")
@click.option("--run", "run_dir", default=T.run, show_default=True,
              help="Run folder: x4plus's trunk features, checkpoints, log (resumes from it).")
@click.option("--out", help="Also copy the EMA tail here, e.g. weights/realesrgan-x4plus.fidelity-tail.safetensors.")
@click.option("--steps", type=click.IntRange(min=1), default=T.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=T.batch_size, show_default=True)
@click.option("--crop", type=click.IntRange(min=16), default=T.crop, show_default=True,
              help="Ground-truth sub-crop side (a multiple of 4).")
@learning_rate_option(T.learning_rate)
@device_option(T.device)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop and save after this long.")
@click.option("--seed", type=int, default=T.seed, show_default=True)
@DEBUG
def train_fidelity_tail_cmd(cache: str, run_dir: str, out: str | None, steps: int, batch_size: int, crop: int,
                            learning_rate: float, device: str, max_minutes: float | None, seed: int,
                            debug: bool) -> None:
    """Fine-tune Real-ESRGAN x4plus's tail (the layers after its trunk) toward the truth, its trunk frozen:
    --fidelity then interpolates the prior's tail from x4plus's own (0) to this one (1). Resumable."""
    cfg = TailTrainConfig(cache=cache, run=run_dir, steps=steps, batch_size=batch_size, crop=crop,
                          learning_rate=learning_rate, device=device, max_minutes=max_minutes, seed=seed)
    path = train_fidelity_tail(cfg, log=lambda line: click.echo(line, err=True))
    if out is not None:
        from ..io import atomic_write

        atomic_write(out, lambda tmp: tmp.write_bytes(path.read_bytes()))
        path = Path(out)
    click.echo(f"EMA tail: {path}", err=True)
