"""An ONNX Runtime inference session called with PyTorch tensors, opened with one-line errors.

Inputs go to ONNX Runtime as float32 (int64 for integer tensors) NumPy arrays; outputs come back
as tensors on the device and in the float dtype of the first input. The CPU provider runs here;
the CUDA provider is used on a CUDA device when the installed ONNX Runtime has it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, WeightsError

INSTALL_HINT = "pip install 'adadiffsr[onnx]' (onnx and onnxruntime)"
SOURCE_KEY = "adadiffsr.source_sha256"  # metadata: the weights file an ONNX file was exported from
KIND_KEY = "adadiffsr.kind"  # metadata: refiner, prior, regressor or pfj


def onnx_available() -> bool:
    """ONNX Runtime is importable (what ``--runtime onnx`` needs; exporting needs ``onnx`` too)."""
    return importlib.util.find_spec("onnxruntime") is not None


def require_onnxruntime() -> Any:
    if not onnx_available():
        raise ConfigError(f"the onnx runtime needs ONNX Runtime, which is not installed: {INSTALL_HINT}")
    import onnxruntime

    return onnxruntime


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime's execution providers for a torch device: CUDA where asked for and present."""
    ort = require_onnxruntime()
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSession:
    """``session(*tensors) -> list[Tensor]`` over one ONNX file."""

    def __init__(self, path: str | os.PathLike[str], device: torch.device | str = "cpu",
                 threads: int | None = None) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"ONNX file not found: {self.path} (write it with: adadiffsr export onnx)")
        self.device = torch.device(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ONNX Runtime's warnings are not the user's business
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers_for(self.device))
        except Exception as e:  # ONNX Runtime raises its own classes (InvalidProtobuf, Fail, ...)
            text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise WeightsError(f"{self.path}: not a valid ONNX file ({text[:160]})") from e
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def check_source(self, kind: str, digest: str, weights: str | os.PathLike[str]) -> None:
        """Fail in one line when this file was exported for another kind of network, or from other
        weights than those loaded (``digest``: ``state_sha256`` of the loaded network)."""
        if self.metadata.get(KIND_KEY) != kind:
            raise WeightsError(f"{self.path}: not an adadiffsr {kind} export (rerun: adadiffsr export onnx)")
        if self.metadata.get(SOURCE_KEY) != digest:
            raise WeightsError(f"{self.path}: exported from another model than {weights} "
                               f"(rerun: adadiffsr export onnx --weights {weights})")

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} inputs, got {len(inputs)}")
        feeds = {name: _to_numpy(t) for name, t in zip(self.input_names, inputs, strict=True)}
        outputs = self.session.run(self.output_names, feeds)
        reference = next((t for t in inputs if t.is_floating_point()), inputs[0])
        dtype = reference.dtype if reference.is_floating_point() else torch.float32
        return [torch.from_numpy(o).to(device=reference.device, dtype=dtype) for o in outputs]


def _to_numpy(t: Tensor) -> np.ndarray:
    t = t.detach()
    t = t.float() if t.is_floating_point() else t.long()
    return np.ascontiguousarray(t.cpu().numpy())
