"""Start the page: a private workspace first (Gradio's uploads go there too), then Gradio."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AdaDiffSRError
from ..io import MAX_INPUT_PIXELS
from .jobs import Workspace

if TYPE_CHECKING:
    from ..api import Upscaler


class ServeError(AdaDiffSRError):
    """The server cannot start (the port is taken, say)."""


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 1  # jobs at once; 1 on a CPU (more on a GPU with memory to spare)
    queue_size: int = 16  # jobs waiting beyond this are refused with "queue is full"
    max_pixels: int = MAX_INPUT_PIXELS  # larger inputs are refused on the page
    max_file_size: str = "100mb"  # larger uploads are refused by the page before they reach the model
    max_files: int = 16  # uploads per job


def serve(upscaler: Upscaler, settings: ServeSettings = ServeSettings(), model_name: str = "",
          block: bool = True) -> Any:
    """Launch the page on ``settings.host:port``; the workspace is removed when the server stops."""
    workspace = Workspace()
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.root)  # set before Gradio loads: uploads land there too
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from .app import build_app

    try:
        demo = build_app(upscaler, settings, workspace, model_name)
        demo.launch(server_name=settings.host, server_port=settings.port, share=False, inbrowser=False,
                    ssr_mode=False, max_file_size=settings.max_file_size, show_error=False, quiet=True,
                    prevent_thread_lock=not block, enable_monitoring=False, mcp_server=False,
                    allowed_paths=[str(workspace.root)], pwa=False)
    except OSError as e:
        workspace.close()
        raise ServeError(f"cannot serve on {settings.host}:{settings.port}: {str(e).splitlines()[0]}") from e
    except BaseException:
        workspace.close()
        raise
    if block:  # the server stopped (Ctrl-C, SIGTERM)
        workspace.close()
    return demo, workspace

