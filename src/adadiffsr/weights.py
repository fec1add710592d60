"""Networks as safetensors files with their architecture and config inside, and where the shipped
default model lives. Backbones (``backbones/registry.py``), the gain regressor and PFJ are all
written and read through ``save_module`` / ``load_module``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import WeightsError
from .io import atomic_write

FORMAT_VERSION = "1"
DEFAULT_WEIGHTS_NAME = "realesrgan-refiner-x4.safetensors"

def default_weights_path() -> Path:
    """Where the shipped default model lives: ``$ADADIFFSR_WEIGHTS_DIR`` or the repository's ``weights/``."""
    folder = os.environ.get("ADADIFFSR_WEIGHTS_DIR")
    base = Path(folder) if folder else Path(__file__).resolve().parents[2] / "weights"
    return base / DEFAULT_WEIGHTS_NAME


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({_first_line(e)})") from e


def save_module(
    module: torch.nn.Module, path: str | os.PathLike[str], architecture: str, config: dict[str, Any],
    metadata: dict[str, str] | None = None, dtype: torch.dtype | None = None,
) -> None:
    """Write a network with its architecture and config, atomically. ``dtype=torch.float16`` halves
    the file (floating tensors are cast back to the model's dtype on load)."""
    meta = {"adadiffsr.format": FORMAT_VERSION, "adadiffsr.architecture": architecture,
            "adadiffsr.config": json.dumps(config), **(metadata or {})}
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


M = TypeVar("M", bound=torch.nn.Module)


def load_module(
    path: str | os.PathLike[str], architecture: str, build: Callable[[dict[str, Any]], M],
    device: torch.device | str = "cpu", retrain_hint: str = "",
) -> M:
    """Load what ``save_module`` wrote: check the architecture, build from the config, load strictly."""
    path = _existing(path)
    meta = read_metadata(path)
    if meta.get("adadiffsr.architecture") != architecture:
        raise WeightsError(f"{path}: not a {architecture} file{retrain_hint}")
    try:
        module = build(json.loads(meta.get("adadiffsr.config", "{}")))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its {architecture} config is invalid ({_first_line(e)})") from e
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: corrupt or truncated weights ({_first_line(e)})") from e
    _load_strict(module, state, path)
    return module.to(device).eval()


def companion_path(backbone_weights: str | os.PathLike[str], kind: str) -> Path:
    """``weights/compact-x4.safetensors`` -> ``weights/compact-x4.KIND.safetensors``."""
    p = Path(backbone_weights)
    return p.with_name(p.name.removesuffix(".safetensors") + f".{kind}.safetensors")


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {wrong[0]})")
        raise WeightsError(f"{path}: weights do not fit the architecture: {'; '.join(parts)} tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensors hold NaN or Inf (e.g. {bad[0]})")
    model.load_state_dict(state, strict=True)


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
