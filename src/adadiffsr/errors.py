"""Exceptions a user can cause. The CLI prints their message as one line and exits non-zero.

A message names a setting in the API's terms, in backticks (`max_pixels`); the CLI shows it as its flag
(``--max-pixels``), so one message serves both.
"""


class AdaDiffSRError(Exception):
    """Base class: an error in what the user asked for, not a bug."""

    exit_code = 1


class InputImageError(AdaDiffSRError):
    """An input image is missing, unreadable, corrupt or unsupported."""


class OutputError(AdaDiffSRError):
    """An output cannot be written where asked."""


class WeightsError(AdaDiffSRError):
    """A weights file is missing, corrupt or does not fit the architecture."""


class ConfigError(AdaDiffSRError):
    """Settings that contradict each other or are out of range."""

    exit_code = 2


class NumericalError(AdaDiffSRError):
    """A model produced NaN or Inf."""


class DataError(AdaDiffSRError):
    """Training data (photos, traces) is missing, unreadable or does not fit the model."""
