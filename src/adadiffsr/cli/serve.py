"""``adadiffsr serve``: the web page over one loaded model."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import click

from ..io import MAX_INPUT_PIXELS
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
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_INPUT_PIXELS, show_default=True,
              help="Refuse larger input images.")
@click.option("--max-file-size", default="100mb", show_default=True, help="Refuse larger uploads (e.g. 20mb).")
@DEBUG
def serve(host: str, port: int, device: str, dtype: str, weights: str | None, backbone: str, runtime: str, prompt: str,
          negative_prompt: str, guidance_scale: float, noise_level: int, concurrency: int, queue_size: int,
          max_pixels: int, max_file_size: str, debug: bool) -> None:
    """A web page (Gradio) over one loaded model: upload, compare, download."""
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
                             max_pixels=max_pixels, max_file_size=max_file_size)
    name = Path(weights).name if weights else default_weights_path().name
    click.echo(f"adadiffsr serve: http://{host}:{port} (model {name}; Ctrl-C stops)", err=True)
    launch(upscaler, settings, model_name=name)
