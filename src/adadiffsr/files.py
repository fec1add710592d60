"""Many inputs in one run: expand files, folders and globs, map them to outputs, upscale each.

A bad file is reported and the run goes on; ``--skip-existing`` resumes an interrupted run; every
output is written atomically, so an interruption never leaves a partial image.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AdaDiffSRError, InputImageError, OutputError
from .io import IMAGE_SUFFIXES, check_output, output_format, read_picture

ProgressFactory = Callable[[str], AbstractContextManager[Any]]


@dataclass
class Job:
    input: Path
    output: Path
    report: Path | None = None
    step_map: Path | None = None
    error: str | None = None  # a problem found while planning, reported when the job's turn comes


def expand_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], bool]:
    """Files, folders (their images, subfolders included, sorted) and globs -> ``(path, subfolder)``
    pairs, the subfolder relative to the folder given (``.`` elsewhere), so that outputs keep the
    structure; True when more than one may come."""
    paths: list[tuple[Path, Path]] = []
    many = len(inputs) > 1
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            paths += [(p, p.parent.relative_to(path)) for p in found]
            many = True
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not matches:
                raise InputImageError(f"no files match {item}")
            paths += [(p, Path(".")) for p in matches]
            many = True
        else:
            paths.append((path, Path(".")))
    if not paths:
        raise InputImageError(f"no image files in {', '.join(inputs)}")
    return paths, many


def plan_jobs(
    inputs: list[str], output: str, ext: str, suffix: str, report: str | None, step_map: str | None, force: bool
) -> tuple[list[Job], bool]:
    """Jobs for every input; folder mode when several inputs may come or ``output`` is a folder."""
    sources, many = expand_inputs(inputs)
    out = Path(output)
    if out.is_dir():  # an output folder inside an input folder: its files are results, not inputs
        inside = out.resolve()
        sources = [(p, sub) for p, sub in sources if inside not in p.resolve().parents]
        if not sources:
            raise InputImageError(f"no image files in {', '.join(inputs)} outside the output folder {out}")
    paths = [p for p, _ in sources]
    folder_mode = many or out.is_dir()
    if not folder_mode:
        check_output(out, has_alpha=False)
        if out.resolve() == paths[0].resolve() and not force:
            raise OutputError(f"output {out} is the input file; pass `force` to replace it")
        for extra in (report, step_map):
            if extra and not Path(extra).parent.resolve().is_dir():
                raise OutputError(f"output folder does not exist: {Path(extra).parent}")
        if step_map:
            output_format(step_map)
        if not out.parent.resolve().is_dir():
            raise OutputError(f"output folder does not exist: {out.parent}")
        return [Job(paths[0], out, Path(report) if report else None, Path(step_map) if step_map else None)], False
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} is a file; several inputs need an output folder")
    for folder in (out, Path(report) if report else None, Path(step_map) if step_map else None):
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create folder {folder}: {e.strerror or e}") from e
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}
    for path, sub in sources:
        name = f"{path.stem}_{suffix}" if suffix else path.stem
        target = out / sub / f"{name}.{ext}"
        job = Job(path, target, Path(report) / sub / f"{name}.json" if report else None,
                  Path(step_map) / sub / f"{name}.png" if step_map else None)
        if target.resolve() in taken:
            job.error = f"{path}: its output {target} would replace the output of {taken[target.resolve()]}"
        elif target.resolve() == path.resolve() and not force:
            job.error = f"{path}: the output would replace the input; pass `force`, or another `output` or `suffix`"
        taken.setdefault(target.resolve(), path)
        jobs.append(job)
    return jobs, True


def run_jobs(
    jobs: list[Job],
    upscaler: Any,
    config: Any,
    *,
    skip_existing: bool,
    max_pixels: int | None,
    folder_mode: bool,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    progress: ProgressFactory,
) -> dict[str, int]:
    """Upscale every job; returns the counts (``upscaled``, ``skipped``, ``failed``, ``total``).
    Outside folder mode errors propagate."""
    done = skipped = failed = 0
    for k, job in enumerate(jobs, 1):
        if skip_existing and job.output.exists():
            skipped += 1
            continue
        try:
            if job.error:
                raise InputImageError(job.error)
            picture = read_picture(job.input, max_pixels)
            for target in (job.output, job.report, job.step_map):  # a subfolder of the input's
                if target is not None and folder_mode:
                    target.parent.mkdir(parents=True, exist_ok=True)
            check_output(job.output, picture.alpha is not None)
            for note in picture.notes:
                warn(f"warning: {job.input}: {note}")
            label = f"{job.input.name} ({k}/{len(jobs)})" if folder_mode else "upscaling"
            with progress(label) as callback:
                result = upscaler(picture, config, progress=callback)
            _, notes = result.write(job.output, source=str(job.input), report=job.report, step_map=job.step_map)
            for note in notes:
                warn(f"warning: {job.output}: {note}")
            r = result.report
            say(f"wrote {job.output} ({r['output_size'][0]}x{r['output_size'][1]}) in {r['seconds']['total']:.1f} s: "
                f"{r['nfe']} tile evaluations over {r['num_tiles']} tiles")
            done += 1
        except AdaDiffSRError as e:
            if not folder_mode:
                raise
            warn(f"error: {e}")
            failed += 1
    return {"upscaled": done, "skipped": skipped, "failed": failed, "total": len(jobs)}


def summary_line(counts: dict[str, int]) -> str:
    return f"{counts['upscaled']} upscaled, {counts['skipped']} skipped, {counts['failed']} failed, of {counts['total']}"
