"""What several commands share: the model flags, list parsing, the progress bar.

Choices and defaults come from the registries and config dataclasses (``BACKBONES``, ``POLICIES``,
``DEGRADATIONS``, ``UpscaleConfig``), never written here a second time.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..api import Upscaler
from ..backbones import BACKBONES, DEFAULT_BACKBONE
from ..config import deprecated
from ..devices import DEVICES, DTYPE_CHOICES
from ..runtime import RUNTIMES

RUNTIME_HELP = "What runs the networks: PyTorch, or their ONNX exports (adadiffsr export onnx) in ONNX Runtime."
DEBUG = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")


def device_option(default: str = "auto") -> Callable[[Any], Any]:
    return click.option("--device", type=click.Choice(DEVICES), default=default, show_default=True)


def backbone_option(name: str = "backbone") -> Callable[[Any], Any]:
    return click.option("--backbone", name, type=click.Choice(tuple(BACKBONES)), default=DEFAULT_BACKBONE, show_default=True)


def model_options(command: Any) -> Any:
    """The flags that pick and load a model, shared by ``upscale`` and ``serve``."""
    options = [
        device_option(),
        click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
                     help="auto: bf16 for the shipped model on a CPU with AMX- or AVX512-BF16 (measured 1.4-2.9x "
                          "faster at equal quality), fp32 elsewhere; the report says which ran."),
        click.option("--weights", help="Backbone weights (.safetensors; a pipeline folder or cached Hugging Face "
                     "id for ldm-sr-x4). Default: the shipped model."),
        backbone_option(),
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


def load_upscaler(weights: str | None, device: str, dtype: str, backbone: str, runtime: str, prompt: str,
                  negative_prompt: str, guidance_scale: float, noise_level: int) -> Upscaler:
    """The model ``model_options`` describe; the pipeline options go only to the backbone that takes them."""
    given = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": guidance_scale,
             "noise_level": noise_level}
    options = {k: v for k, v in given.items() if k in BACKBONES[backbone].options}
    return Upscaler.from_pretrained(weights, device=device, dtype=dtype, backbone=backbone, runtime=runtime, **options)


def int_list(text: str, hint: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma list of integers", param_hint=hint) from e


def float_list(text: str, hint: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma list of numbers", param_hint=hint) from e


def joined(values: tuple[Any, ...]) -> str:
    """A tuple default as the comma list a flag takes."""
    return ",".join(str(v) for v in values)


def say_to_stderr(quiet: bool) -> Callable[[str], None]:
    return (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))


def progress_factory(quiet: bool) -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """A context manager per image yielding the engine's progress callback: a bar on stderr, shown
    from the first step on, so that an error found before sampling prints alone."""

    @contextlib.contextmanager
    def bar(label: str) -> Iterator[Any]:
        if quiet:
            yield None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"), TextColumn("NFE {task.fields[nfe]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
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


def as_flags(message: str) -> str:
    """A library message in the CLI's terms: each setting it names in backticks as its flag
    (`max_pixels` -> --max-pixels; ``errors.py``)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m[1].replace("_", "-"), message)


def learning_rate_option(default: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--learning-rate`` (diffusers' training scripts' name), passed as ``learning_rate``; ``--lr``, its
    old spelling (``lr`` is the low-resolution image), is read with a warning until it goes."""
    rate = click.FloatRange(min=0, min_open=True)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, learning_rate: float, old_lr: float | None = None, **kwargs: Any) -> Any:
            if old_lr is not None:
                deprecated("--lr", "--learning-rate")
                learning_rate = old_lr
            return command(*args, learning_rate=learning_rate, **kwargs)

        run = click.option("--lr", "old_lr", type=rate, default=None, hidden=True)(run)
        return click.option("--learning-rate", "learning_rate", type=rate, default=default, show_default=True)(run)

    return decorate
