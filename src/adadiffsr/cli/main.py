"""The ``adadiffsr`` command group, and the entry point that turns every expected failure into one
line ``error: ...`` on stderr and a non-zero exit (2 for bad flags); ``--debug`` shows the traceback."""

from __future__ import annotations

import signal
import sys
import threading
import traceback
import warnings

import click

from ..errors import AdaDiffSRError
from .analyze import analyze
from .bench import bench
from .data import data
from .export import export
from .options import as_flags
from .serve import serve
from .train import train
from .upscale import upscale


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adadiffsr", prog_name="adadiffsr")
def cli() -> None:
    """adadiffsr: fast region-adaptive diffusion super-resolution."""


for command in (upscale, bench, analyze, data, train, export, serve):
    cli.add_command(command)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup (temporary files) runs as for Ctrl-C."""


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: object = None, line: str | None = None) -> None:
    """A deprecation (``FutureWarning``) as one line on stderr; other warnings as Python shows them."""
    if issubclass(category, FutureWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every expected failure into one line on stderr; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    _stop_on_sigterm()
    warnings.showwarning = _one_line_warning
    try:
        code = cli.main(args=args, prog_name="adadiffsr", standalone_mode=False)
        return code if isinstance(code, int) else 0  # click returns Exit codes in this mode
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # click turns Ctrl-C into Abort
        if isinstance(e, Terminated) or isinstance(e.__cause__, Terminated):
            click.echo("error: terminated", err=True)
            return 143
        click.echo("error: interrupted", err=True)
        return 130
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except Exception as e:
        if debug:
            traceback.print_exc()
        if isinstance(e, AdaDiffSRError):
            click.echo(f"error: {as_flags(str(e))}", err=True)
            return e.exit_code
        if isinstance(e, MemoryError):
            click.echo("error: out of memory; try a smaller --tile or --batch-tiles", err=True)
            return 1
        click.echo(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback",
                   err=True)
        return 1



def entry() -> None:
    sys.exit(main())
