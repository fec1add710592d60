"""Start the page: a private workspace first (Gradio's uploads go there too), then Gradio."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import AdaDiffSRError
from .jobs import Workspace
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..api import Upscaler


class ServeError(AdaDiffSRError):
    """The server cannot start (the port is taken, say)."""


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
                    allowed_paths=[str(workspace.root)], pwa=False, auth=list(settings.auth) or None,
                    auth_message="adadiffsr: sign in with the user and password the server was started with.")
    except OSError as e:
        workspace.close()
        raise ServeError(f"cannot serve on {settings.host}:{settings.port}: {str(e).splitlines()[0]}") from e
    except BaseException:
        workspace.close()
        raise
    if block:  # the server stopped (Ctrl-C, SIGTERM)
        workspace.close()
    return demo, workspace

