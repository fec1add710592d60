"""``adadiffsr serve``: the web page over one loaded model."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import click

from ..io import MAX_INPUT_PIXELS
from ..serve.settings import JOB_SECONDS, PAGE_MAX_PIXELS
from ..weights import default_weights_path
from .options import DEBUG, load_upscaler, model_options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@model_options
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs run at once (1 on a CPU; more on a GPU with memory to spare).")
@click.option("--queue-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Jobs that may wait; more are refused with 'queue is full'.")
@click.option("--max-pixels", type=click.IntRange(1, MAX_INPUT_PIXELS), default=PAGE_MAX_PIXELS, show_default=True,
              help="Refuse larger input images (the page's limit; upscale's is higher).")
@click.option("--max-file-size", default="100mb", show_default=True, help="Refuse larger uploads (e.g. 20mb).")
@click.option("--job-time-limit", type=click.FloatRange(min=0), default=JOB_SECONDS, show_default=True,
              help="Stop a job after this many seconds, with a message on the page (0: no limit).")
@click.option("--auth", "auth", multiple=True, envvar="ADADIFFSR_AUTH", metavar="USER:PASSWORD",
              help="Ask for a login (repeat for more users; or set ADADIFFSR_AUTH, space-separated).")
@DEBUG
def serve(host: str, port: int, device: str, dtype: str, weights: str | None, backbone: str, runtime: str, prompt: str,
          negative_prompt: str, guidance_scale: float, noise_level: int, concurrency: int, queue_size: int,
          max_pixels: int, max_file_size: str, job_time_limit: float, auth: tuple[str, ...], debug: bool) -> None:
    """A web page (Gradio) over one loaded model: upload, compare, download."""
    logins = tuple(_login(entry) for entry in auth)
    if importlib.util.find_spec("gradio") is None:
        raise click.ClickException("the web page needs Gradio: pip install 'adadiffsr[serve]'")
    from ..serve.server import ServeSettings
    from ..serve.server import serve as launch

    try:  # a taken port fails here, before the model loads
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e})") from e

    upscaler = load_upscaler(weights, device, dtype, backbone, runtime, prompt, negative_prompt, guidance_scale,
                             noise_level)
    settings = ServeSettings(host=host, port=port, concurrency=concurrency, queue_size=queue_size,
                             max_pixels=max_pixels, max_file_size=max_file_size,
                             job_seconds=job_time_limit or None, auth=logins)
    name = Path(weights).name if weights else default_weights_path().name
    click.echo(f"adadiffsr serve: http://{host}:{port} (model {name}; Ctrl-C stops)", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not logins:
        click.echo(f"warning: anyone who can reach {host}:{port} can use this page; --auth USER:PASSWORD asks for a login",
                   err=True)
    launch(upscaler, settings, model_name=name)


def _login(entry: str) -> tuple[str, str]:
    user, sep, password = entry.partition(":")
    if not sep or not user or not password:
        raise click.BadParameter("give USER:PASSWORD, both not empty", param_hint="--auth")
    return user, password
