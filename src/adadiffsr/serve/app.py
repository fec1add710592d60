"""``adadiffsr serve``: one Gradio page over one loaded ``Upscaler``.

Upload images, pick a look and a speed (advanced settings folded away), run, compare before and
after with a slider, see the step map and the report in words, download PNGs or a zip. Jobs run
one at a time (``concurrency``) from a bounded queue; a closed tab or the Stop button ends its job
at the next sampler step; every upload and result lives in a private temporary folder that is
removed when the server stops. The page fetches nothing from outside the machine.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from ..api import UpscaleConfig, Upscaler
from ..color import COLOR_FIXES
from ..errors import AdaDiffSRError
from ..io import IMAGE_SUFFIXES
from .jobs import JobCancelled, JobTimedOut, Outcome, Workspace, upscale_uploads, zip_outputs
from .presets import DEFAULT_LOOK, DEFAULT_SPEED, LOOKS, preset_config, speeds_for
from .settings import ServeSettings


class Cancellations:
    """Browser sessions whose job should stop: a closed tab or the Stop button."""

    def __init__(self) -> None:
        self._sessions: set[str] = set()
        self._lock = threading.Lock()
        self.count = 0  # jobs stopped so far (the page's /status API reports it)

    def request(self, session: str) -> None:
        with self._lock:
            self._sessions.add(session)

    def clear(self, session: str) -> None:
        with self._lock:
            self._sessions.discard(session)

    def __contains__(self, session: str) -> bool:
        with self._lock:
            return session in self._sessions


def build_app(upscaler: Upscaler, settings: ServeSettings = ServeSettings(), workspace: Workspace | None = None,
              model_name: str = "") -> Any:
    """The Gradio Blocks of the page (not launched); ``model_name`` is shown in its header."""
    workspace = workspace or Workspace()
    cancellations = Cancellations()
    counts = {"finished": 0}
    suffixes = sorted(IMAGE_SUFFIXES)
    model = model_name or type(upscaler.backbone).__name__

    def run(files: list[str] | None, look: str, speed: str, seed: float, color_fix: str, tile: float,
            request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        session = request.session_hash or "anonymous"
        cancellations.clear(session)
        if not files:
            return _show([], "Upload one or more images first.")
        if len(files) > settings.max_files:
            return _show([], f"At most {settings.max_files} files per job; {len(files)} were uploaded.")
        uploads = [(Path(f).name, Path(f)) for f in files]
        base = UpscaleConfig(seed=int(seed), color_fix=color_fix, tile=int(tile) if tile else None)
        try:
            config = preset_config(upscaler, look, speed, base)
        except (ValueError, AdaDiffSRError) as e:
            return _show([], f"These settings cannot run: {e}")
        folder = workspace.job_folder(session)
        try:
            outcomes = upscale_uploads(
                upscaler, uploads, config, folder, max_pixels=settings.max_pixels,
                progress=lambda done, what: progress(done, desc=what),
                cancelled=lambda: session in cancellations, time_limit=settings.job_seconds,
            )
        except JobTimedOut as e:
            cancellations.count += 1
            return _show([], str(e))
        except JobCancelled:
            cancellations.count += 1
            return _show([], "The job was stopped.")
        counts["finished"] += 1
        done = [o for o in outcomes if o.output is not None]
        if len(done) > 1:
            downloads = [str(zip_outputs(done, folder / "adadiffsr-results.zip"))] + [str(o.output) for o in done]
        else:
            downloads = [str(o.output) for o in done]
        errors = [o.error for o in outcomes if o.error]
        message = f"Upscaled {len(done)} of {len(outcomes)} file{'s' if len(outcomes) != 1 else ''}."
        if errors:
            message += "\n\n" + "\n\n".join(f"**Could not upscale:** {e}" for e in errors)
        return _show(outcomes, message, downloads)

    def stop(request: gr.Request) -> None:
        cancellations.request(request.session_hash or "anonymous")

    def closed(request: gr.Request) -> None:
        session = request.session_hash or "anonymous"
        cancellations.request(session)
        workspace.drop_session(session)

    def pick(name: str | None, state: list[dict[str, str]]) -> tuple[Any, ...]:
        for item in state or []:
            if item["name"] == name:
                return (item["before"], item["after"]), item["step_map"], item["summary"]
        return None, None, ""

    with gr.Blocks(title="adadiffsr", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# adadiffsr\nDiffusion super-resolution, x{upscaler.backbone.spec.scale_factor:g}, "
                    f"model `{model}`. Upload images, run, compare, download.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images", file_count="multiple", file_types=suffixes, elem_id="uploads")
                look = gr.Radio([(v.label, k) for k, v in LOOKS.items()], value=DEFAULT_LOOK, label="Look",
                                info="; ".join(f"{v.label}: {v.help}" for v in LOOKS.values()), elem_id="look")
                speeds = speeds_for(upscaler)
                speed = gr.Radio([(v.label, k) for k, v in speeds.items()], value=DEFAULT_SPEED, label="Speed",
                                  info="; ".join(f"{v.label}: {v.help}" for v in speeds.values()), elem_id="speed")
                with gr.Accordion("Advanced settings", open=False):
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    color_fix = gr.Dropdown(list(COLOR_FIXES), value="none", label="Colour correction")
                    tile = gr.Number(value=0, precision=0, minimum=0, label="Tile side in input pixels (0 = the model's)")
                with gr.Row():
                    go = gr.Button("Upscale", variant="primary", elem_id="run")
                    halt = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=2):
                message = gr.Markdown(elem_id="message")
                shown = gr.Dropdown([], label="Showing", elem_id="shown", interactive=True)
                compare = gr.ImageSlider(label="Before (bicubic) / after", type="filepath", elem_id="compare")
                steps = gr.Image(label="Step map: steps spent per region", type="filepath", elem_id="step-map")
                summary = gr.Markdown(elem_id="summary")
                downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads", interactive=False)
        state = gr.State([])
        event = go.click(run, [files, look, speed, seed, color_fix, tile],
                         [message, shown, compare, steps, summary, downloads, state], api_name="upscale")
        halt.click(stop, None, None, cancels=[event], api_name="stop", queue=False)
        shown.change(pick, [shown, state], [compare, steps, summary], api_name=False)

        def status() -> dict[str, int]:
            """Jobs finished and stopped so far, and the bytes the workspace holds."""
            held = sum(f.stat().st_size for f in workspace.root.rglob("*") if f.is_file())
            return {"finished_jobs": counts["finished"], "stopped_jobs": cancellations.count, "workspace_bytes": held}

        gr.api(status, api_name="status")
        demo.unload(closed)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    return demo


def _show(outcomes: list[Outcome], message: str, downloads: list[str] | None = None) -> tuple[Any, ...]:
    """The page's outputs for a finished (or refused) job: the first result on display."""
    done = [o for o in outcomes if o.output is not None]
    state = [{"name": o.name, "before": str(o.before), "after": str(o.after), "step_map": str(o.step_map),
              "summary": o.summary} for o in done]
    first = done[0] if done else None
    return (
        message,
        gr.Dropdown(choices=[o.name for o in done], value=first.name if first else None),
        (str(first.before), str(first.after)) if first else None,
        str(first.step_map) if first else None,
        first.summary if first else "",
        downloads or None,
        state,
    )
