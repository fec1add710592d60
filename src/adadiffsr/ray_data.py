"""A photo archive on a Ray cluster: Ray Data's ``map_batches`` over a class that holds an ``Upscaler``.

    import ray
    from adadiffsr.ray_data import RayUpscaler, archive_rows

    rows = archive_rows(["photos/"], "photos_x4/")                # one row per file: input, output
    results = (ray.data.from_items(rows)
               .map_batches(RayUpscaler, fn_constructor_kwargs={"device": "auto"},
                            batch_size=1, concurrency=4, num_gpus=1)  # 4 workers, a GPU each
               .take_all())

Each worker loads the model once (the class's constructor) and upscales its rows through the
batch CLI's ``run_jobs``: outputs written atomically, ``skip_existing`` resuming an interrupted run,
a bad file one line in its row's ``message`` instead of a failed job. ``upscale_with_ray`` is that
recipe as one call (``examples/ray_data_upscale.py`` runs it). Ray is an optional dependency
(``pip install "adadiffsr[ray]"``); nothing here imports it until a run starts.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from .api import UpscaleConfig, Upscaler
from .errors import ConfigError, OutputError
from .files import Job, plan_jobs, run_jobs

STATUSES: tuple[str, ...] = ("upscaled", "skipped", "failed")


def archive_rows(inputs: list[str], output: str, ext: str = "png", suffix: str = "") -> list[dict[str, str]]:
    """One row per input file (folders keep their subfolders under ``output``, as the CLI's folder
    mode does): ``input``, ``output`` and ``error`` (a problem found while planning, else empty)."""
    try:
        Path(output).mkdir(parents=True, exist_ok=True)  # an output folder, even for one input
    except OSError as e:
        raise OutputError(f"cannot create folder {output}: {e.strerror or e}") from e
    jobs, _ = plan_jobs(inputs, output, ext, suffix, None, None, force=False)
    return [{"input": str(job.input), "output": str(job.output), "error": job.error or ""} for job in jobs]


class RayUpscaler:
    """For ``Dataset.map_batches``: a batch of rows (``input``, ``output``, ``error``) in, the same rows
    with ``status`` (upscaled, skipped or failed) and ``message`` (what the CLI would print) out."""

    def __init__(self, weights: str | None = None, device: str = "auto", dtype: str = "auto",
                 config: UpscaleConfig | None = None, skip_existing: bool = True, max_pixels: int | None = None,
                 **options: Any) -> None:
        self.upscaler = Upscaler.from_pretrained(weights, device=device, dtype=dtype, **options)
        self.config = config or UpscaleConfig()
        self.skip_existing = skip_existing
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        statuses, messages = [], []
        errors = batch.get("error", [""] * len(batch["input"]))
        for source, target, error in zip(batch["input"], batch["output"], errors, strict=True):
            lines: list[str] = []
            job = Job(Path(str(source)), Path(str(target)), error=str(error) or None)
            counts = run_jobs([job], self.upscaler, self.config, skip_existing=self.skip_existing,
                              max_pixels=self.max_pixels, folder_mode=True, say=lines.append, warn=lines.append,
                              progress=lambda label: nullcontext(None))
            statuses.append(next(s for s in STATUSES if counts[s]))
            messages.append(" / ".join(lines))
        return {**batch, "status": np.array(statuses), "message": np.array(messages)}


def upscale_with_ray(inputs: list[str], output: str, *, concurrency: int = 2, num_gpus: float = 0,
                     batch_size: int = 1, ext: str = "png", suffix: str = "", **upscaler_options: Any) -> list[dict[str, Any]]:
    """Upscale every file of ``inputs`` into ``output`` on the Ray cluster ``ray.init`` connected to
    (a local one when none was): ``concurrency`` workers, each with ``num_gpus`` GPUs and its own
    model; ``upscaler_options`` go to ``RayUpscaler``. Returns one result row per file."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError('Ray is not installed; pip install "adadiffsr[ray]" (or "ray[data]")') from e
    if concurrency < 1 or num_gpus < 0 or batch_size < 1:
        raise ConfigError("concurrency and batch_size must be at least 1, num_gpus at least 0")
    rows = archive_rows(inputs, output, ext, suffix)
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), concurrency * 4))
    results = dataset.map_batches(RayUpscaler, fn_constructor_kwargs=upscaler_options, batch_size=batch_size,
                                  concurrency=concurrency, num_gpus=num_gpus, batch_format="numpy")
    return sorted(results.take_all(), key=lambda row: str(row["input"]))
