"""``python -m adadiffsr``: the command line."""

from .cli import entry

entry()
