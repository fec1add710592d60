"""Where the networks run: PyTorch (``torch``) or exported ONNX files in ONNX Runtime (``onnx``).

The sampler, tiling and policy are the same either way; only the networks' forward passes change
hands. ``adadiffsr export onnx`` writes the files (``onnx_export.py``), ``onnx_models.py`` puts
them behind the same module interfaces, ``onnx_session.py`` calls ONNX Runtime with tensors.
"""

RUNTIMES: tuple[str, ...] = ("torch", "onnx")

__all__ = ["RUNTIMES"]
