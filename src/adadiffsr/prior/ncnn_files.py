"""Reading ncnn model files: the layer list of a ``.param`` and the weights of a ``.bin``.

A ``.param`` starts with the magic ``7767517`` and a line of counts, then one layer per line:
``type name n_in n_out inputs... outputs... k=v...``. A ``.bin`` holds each weighted layer's data in
layer order: a Convolution's weights behind a 4-byte tag (``0x01306B47`` fp16, padded to 4 bytes;
``0`` fp32), then its fp32 bias; a PReLU's slopes as raw fp32.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import WeightsError

FP16_TAG = 0x01306B47


def parse_layers(text: str) -> list[tuple[str, dict[str, str]]]:
    """``(type, params)`` of every layer of an ncnn ``.param`` file, in order."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise WeightsError("not an ncnn .param file (bad magic number)")
    layers = []
    for line in lines[2:]:
        tokens = line.split()
        if len(tokens) < 4:
            continue
        n_in, n_out = int(tokens[2]), int(tokens[3])
        layers.append((tokens[0], dict(t.split("=", 1) for t in tokens[4 + n_in + n_out :] if "=" in t)))
    return layers


def read_tagged(blob: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """``count`` weights behind a type tag at ``offset`` (float32), and the offset after them."""
    (tag,) = struct.unpack_from("<I", blob, offset)
    offset += 4
    if tag == FP16_TAG:
        values = np.frombuffer(blob, dtype="<f2", count=count, offset=offset).astype(np.float32)
        return values, offset + (count * 2 + 3) // 4 * 4
    if tag == 0:
        return np.frombuffer(blob, dtype="<f4", count=count, offset=offset).copy(), offset + count * 4
    raise WeightsError(f"unknown ncnn weight tag {tag:#x} at byte {offset - 4}")


def read_raw(blob: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """``count`` raw fp32 values at ``offset`` (biases, PReLU slopes), and the offset after them."""
    return np.frombuffer(blob, dtype="<f4", count=count, offset=offset).copy(), offset + count * 4
