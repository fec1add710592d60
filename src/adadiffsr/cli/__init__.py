"""The command line: a thin layer per command group over the library.

``upscale``, ``bench``, ``serve`` (one file each), ``analyze``, ``data``, ``train``, ``export``
(a group each); ``options`` holds what they share, ``main`` the group and the error handling.
"""

from .main import cli, entry, main

__all__ = ["cli", "entry", "main"]
