"""Local weight files of the learned metrics (LPIPS, DISTS, MUSIQ). Nothing is downloaded.

Files lie in ``$ADADIFFSR_METRIC_WEIGHTS`` (default ``~/.cache/adadiffsr/metrics``), each as
``NAME.safetensors`` or as a PyTorch state dict ``NAME.pth`` (read with
``torch.load(weights_only=True)``, which loads tensors only and never runs pickled code).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file
from torch import Tensor

from ..errors import WeightsError

T = TypeVar("T")
_LOADED: dict[tuple[Callable[[], object], str], object] = {}


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


def read_named(name: str) -> tuple[Path, dict[str, Tensor]]:
    """The file called ``name`` (callers check ``missing`` first) and its state dict."""
    path = find(name)
    if path is None:
        raise WeightsError(missing({name: "a local weights file"}))
    return path, read(path)


def loaded(loader: Callable[[], T]) -> T:
    """``loader()`` once per weights folder: metrics run per image, their networks load once."""
    key = (loader, str(weights_dir()))
    if key not in _LOADED:
        _LOADED[key] = loader()
    return _LOADED[key]  # type: ignore[return-value]
