"""Local weight files of the learned metrics (LPIPS, DISTS, MUSIQ). Nothing is downloaded.

Files lie in ``$ADADIFFSR_METRIC_WEIGHTS`` (default ``~/.cache/adadiffsr/metrics``), each as
``NAME.safetensors`` or as a PyTorch state dict ``NAME.pth`` (read with
``torch.load(weights_only=True)``, which loads tensors only and never runs pickled code).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from ..errors import WeightsError


def weights_dir() -> Path:
    return Path(os.environ.get("ADADIFFSR_METRIC_WEIGHTS", Path.home() / ".cache" / "adadiffsr" / "metrics"))


def find(name: str) -> Path | None:
    for ext in (".safetensors", ".pth"):
        path = weights_dir() / (name + ext)
        if path.is_file():
            return path
    return None


def missing(names: dict[str, str]) -> str:
    """Empty when every file is there; otherwise which are missing (``name -> where it comes from``)."""
    absent = [f"{name}.safetensors or .pth ({origin})" for name, origin in names.items() if find(name) is None]
    if not absent:
        return ""
    return f"needs {'; '.join(absent)} in {weights_dir()} ($ADADIFFSR_METRIC_WEIGHTS); nothing is downloaded"


def read(path: Path) -> dict[str, Tensor]:
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(
            path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, corrupt or truncated file
        why = "corrupt, truncated, or holds more than tensors" if path.suffix != ".safetensors" else (
            str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise WeightsError(f"{path}: not a readable state dict ({why})") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict")
    return state
