"""adadiffsr: region-adaptive diffusion super-resolution (AdaDiffSR, ECCV 2024)."""

from .api import UpscaleConfig, Upscaler
from .errors import AdaDiffSRError
from .result import UpscaleResult

__version__ = "0.1.0"
__all__ = ["AdaDiffSRError", "UpscaleConfig", "UpscaleResult", "Upscaler", "__version__"]
