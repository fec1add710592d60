"""Resumable training state in one safetensors file: model, EMA, optimizer, step and config; and what
every training loop shares: its device, its autocast dtype, the optimiser step."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .. import devices
from ..io import atomic_write


def save_training_state(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict[str, Any],
) -> None:
    """Write everything needed to resume; tensors as safetensors, the rest as JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    meta = {"step": str(step), "config": json.dumps(config), "param_groups": json.dumps(opt["param_groups"])}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_training_state(
    path: str | os.PathLike[str], model: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    """Restore what ``save_training_state`` wrote; returns the step to continue from."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(Path(path)))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"])


def save_or_stop(step: int, save_every: int, max_minutes: float | None, start: float,
                 checkpoint: Callable[[], None], log: Callable[[str], None]) -> bool:
    """The end of a training step: ``checkpoint()`` every ``save_every`` steps; True (stop, the caller
    saves once more) when the run has used its ``max_minutes`` since ``start`` (``time.perf_counter``)."""
    if step % save_every == 0:
        checkpoint()
    if max_minutes is not None and time.perf_counter() - start > max_minutes * 60:
        log(f"time limit of {max_minutes} min reached at step {step}")
        return True
    return False


def optimizer_step(model: torch.nn.Module, ema: Any, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   clip: float = 1.0) -> None:
    """One step of a training loop: backward, gradients clipped to ``clip``, the optimiser, the EMA."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    ema.update_parameters(model)


def training_device(name: str) -> torch.device:
    """``devices.resolve_device`` without MPS for ``auto``: training is measured on CUDA and CPUs only."""
    return devices.resolve_device(name, mps=False)
