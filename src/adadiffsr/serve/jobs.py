"""One job of the web page: uploaded files in, upscaled files, previews and plain-sentence reports out.

No Gradio here: the page (``serve.app``) hands this module paths and callbacks, so everything
the page does with an image is tested without a browser. Every file a job writes lies in its own
folder inside the server's private workspace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..api import UpscaleConfig, Upscaler
from ..errors import AdaDiffSRError, InputImageError
from ..io import IMAGE_SUFFIXES, MAX_INPUT_PIXELS, Picture, atomic_write, picture_to_pil, read_picture, save_image
from ..policies.registry import ADAPTIVE_POLICIES, GROUPED_POLICIES, WALK_POLICIES

PREVIEW_SIDE = 2048  # longest side of the pictures shown on the page; downloads are full size
PageProgress = Callable[[float, str], None]  # (fraction of the job done, what is running)


class JobCancelled(Exception):
    """The tab was closed or the job stopped: the sampler stops at its next step."""


class JobTimedOut(JobCancelled):
    """The job ran past the page's time limit: stopped like a cancelled one, with its own message."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The job ran longer than this page allows ({seconds:g} s) and was stopped; "
                         "try a smaller image or fewer files.")


@dataclass
class Outcome:
    """What became of one uploaded file."""

    name: str  # the file name as uploaded
    output: Path | None = None  # the full upscaled file (PNG: 16-bit and alpha kept)
    before: Path | None = None  # previews at the same size: the input resized (bicubic) and the output
    after: Path | None = None
    step_map: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # the report in words
    error: str | None = None  # one plain sentence when the file could not be upscaled


class Workspace:
    """The server's private temporary folder: uploads and results, removed on ``close``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="adadiffsr-serve-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def job_folder(self, session: str) -> Path:
        """A new empty folder for one job of one browser session."""
        self._count += 1
        folder = self.root / "results" / _safe(session) / f"job-{self._count:05d}"
        folder.mkdir(parents=True)
        return folder

    def drop_session(self, session: str) -> None:
        shutil.rmtree(self.root / "results" / _safe(session), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _safe(session: str) -> str:
    return "".join(c for c in session if c.isalnum() or c in "-_")[:64] or "anonymous"


def output_name(upload_name: str, scale: float) -> str:
    factor = f"{scale:g}"
    return f"{Path(upload_name).stem}_x{factor}.png"


def upscale_uploads(
    upscaler: Upscaler,
    uploads: list[tuple[str, Path]],
    config: UpscaleConfig,
    folder: Path,
    *,
    progress: PageProgress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    max_pixels: int | None = MAX_INPUT_PIXELS,
    time_limit: float | None = None,
) -> list[Outcome]:
    """Upscale ``(name, path)`` uploads one after another into ``folder``; a bad file becomes an
    ``Outcome`` with an error sentence and the others go on. Raises ``JobCancelled`` when
    ``cancelled()`` turns true and ``JobTimedOut`` after ``time_limit`` seconds (both checked before
    each file and at every sampler step); a stopped job's files are removed."""
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def check() -> None:
        if cancelled():
            raise JobCancelled()
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimedOut(float(time_limit))  # type: ignore[arg-type]

    try:
        outcomes = _run_uploads(upscaler, uploads, config, folder, check, progress, max_pixels)
    except JobCancelled:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        raise
    if progress is not None:
        progress(1.0, "done")
    return outcomes


def _run_uploads(upscaler: Upscaler, uploads: list[tuple[str, Path]], config: UpscaleConfig, folder: Path,
                 check: Callable[[], None], progress: PageProgress | None, max_pixels: int | None) -> list[Outcome]:
    """``upscale_uploads``'s loop; ``check()`` raises to stop the job."""
    outcomes: list[Outcome] = []
    used: set[str] = set()
    for k, (name, path) in enumerate(uploads):
        check()
        outcome = Outcome(name=name)
        outcomes.append(outcome)
        try:
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                raise InputImageError(f"{name} is not an image file this tool reads "
                                      f"({', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))})")
            if path.stat().st_size == 0:
                raise InputImageError(f"{name} is empty")
            picture = read_picture(path, max_pixels)

            def step(done: float, nfe: int, k: int = k, name: str = name) -> None:
                check()
                if progress is not None:
                    progress((k + done) / len(uploads), f"{name} ({k + 1}/{len(uploads)}): {nfe} tile evaluations")

            if progress is not None:
                progress(k / len(uploads), f"{name} ({k + 1}/{len(uploads)}): restoration prior")
            result = upscaler(picture, config, progress=step)
            scale = result.report["output_size"][0] / picture.size[0]
            target = output_name(name, round(scale, 3))
            while target in used:
                target = f"{Path(target).stem}-{len(used)}.png"
            used.add(target)
            stem = folder / Path(target).stem
            outcome.output, outcome.step_map = folder / target, Path(f"{stem}-steps.png")
            outcome.report, notes = result.write(outcome.output, source=name, output_name=target,
                                                 report=Path(f"{stem}.json"), step_map=outcome.step_map)
            outcome.before, outcome.after = _previews(picture, result.picture, stem)
            outcome.summary = describe(outcome.report, [*picture.notes, *notes])
        except JobCancelled:
            raise
        except AdaDiffSRError as e:
            outcome.error = _plain(str(e), path, name)
        except MemoryError:
            outcome.error = f"{name}: out of memory while upscaling; try a smaller image"
        except Exception as e:  # noqa: BLE001  (a failure inside the model: one sentence on the page, the server goes on)
            outcome.error = f"{name}: the upscale failed inside the model ({type(e).__name__}: {_plain(str(e), path, name)})"
    return outcomes


def _plain(message: str, path: Path, name: str) -> str:
    """The message with the upload's temporary path replaced by the name the user gave it."""
    text = message.replace(str(path), name).strip()
    text = text.splitlines()[0] if text else "unknown error"
    return text.replace(" (raise it with `max_pixels`)", "")


def _previews(before: Picture, after: Picture, stem: Path) -> tuple[Path, Path]:
    """The input resized to the output's size and the output, both 8-bit and at most
    ``PREVIEW_SIDE`` on their longest side, so the comparison shows them at the same zoom."""
    out = picture_to_pil(after)
    w, h = out.size
    shrink = min(1.0, PREVIEW_SIDE / max(w, h))
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    if size != out.size:
        out = out.resize(size, Image.Resampling.LANCZOS)
    inp = picture_to_pil(before).resize(size, Image.Resampling.BICUBIC)
    paths = (Path(f"{stem}-before.png"), Path(f"{stem}-after.png"))
    for image, path in zip((inp, out), paths, strict=True):
        save_image(image, path)
    return paths


def describe(report: dict[str, Any], notes: list[str] | None = None) -> str:
    """The report in words: sizes, tile evaluations spent and saved, seconds, what ran."""
    w, h = report["input_size"]
    ow, oh = report["output_size"]
    seconds = report["seconds"]
    settings = report.get("settings", {})
    nfe, uniform, tiles = report["nfe"], report["nfe_uniform"], report["num_tiles"]
    parts = [f"{w}x{h} -> {ow}x{oh} in {seconds['total']:.1f} s"]
    prior = settings.get("prior")
    if prior:
        parts.append(f"the prior ({prior}, {settings.get('prior_runtime')}) took {seconds.get('prior', 0.0):.1f} s")
    if nfe == 0:
        parts.append(f"no diffusion step over {tiles} tile{'s' if tiles != 1 else ''}" + (
            ": all flat, each kept the prior's estimate" if settings.get("policy") in GROUPED_POLICIES else ""))
    else:
        saved = uniform - nfe
        spent = f"{nfe} tile evaluations over {tiles} tile{'s' if tiles != 1 else ''} ({seconds.get('backbone', 0):.1f} s)"
        if saved > 0 and settings.get("policy") in ADAPTIVE_POLICIES:  # regions that stopped early or skipped
            spent += f", {saved} fewer than uniform sampling's {uniform}"
        parts.append(spent)
        flat = sum(1 for tile in report.get("tiles", []) if tile.get("steps") == 0)
        if flat and settings.get("policy") in GROUPED_POLICIES:
            parts.append(f"{flat} flat tile{'s' if flat != 1 else ''} kept the prior's estimate")
        parts.append(f"sampler {settings.get('policy')}" + (
            f", walk {' -> '.join(str(t) for t in settings['timesteps'])}" if settings.get("policy") in WALK_POLICIES
            and settings.get("timesteps") else f", strength {settings.get('strength')}"))
    text = "; ".join(parts) + "."
    for note in notes or []:
        text += f" Note: {note}."
    return text


def zip_outputs(outcomes: list[Outcome], path: Path) -> Path:
    """Every upscaled file of a job in one zip (written atomically)."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for outcome in outcomes:
                if outcome.output is not None:
                    archive.write(outcome.output, arcname=outcome.output.name)

    atomic_write(path, write)
    return path
