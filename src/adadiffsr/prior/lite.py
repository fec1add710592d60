"""The lite prior: Real-ESRGAN x4plus cut to its first few RRDB blocks, then fine-tuned (ours).

x4plus spends 92% of its multiply-adds in its 23 RRDB blocks (0.72M per input pixel each) and the
rest in its upsampling tail (1.4M). Keeping the first ``num_blocks`` blocks and the whole tail gives
a network with x4plus's own features and upsampler at a fraction of the cost (4 blocks: about 0.24x),
which ``adadiffsr train prior --init x4plus:4`` fine-tunes against the truth. Between the compact prior
(0.03x) and x4plus: PCSR's idea of an upsampler sized to what a region needs, one size up.
"""

from __future__ import annotations

import os
from pathlib import Path

from .rrdbnet import RRDBNet, load_realesrgan

ARCHITECTURE = "rrdbnet"  # what the weights file's metadata names
DEFAULT_FILE = "lite-prior-x4.safetensors"  # the shipped one, in the repository's weights/
FULL_BLOCKS = 23  # x4plus's


def truncated_x4plus(num_blocks: int) -> RRDBNet:
    """x4plus with its first ``num_blocks`` RRDB blocks and its whole tail: where ``--init x4plus:N`` starts."""
    from ..errors import ConfigError

    if not 1 <= num_blocks <= FULL_BLOCKS:
        raise ConfigError(f"x4plus has {FULL_BLOCKS} blocks; keep 1 to {FULL_BLOCKS}, not {num_blocks}")
    full = load_realesrgan().state_dict()
    model = RRDBNet(num_blocks=num_blocks)
    model.load_state_dict({k: v for k, v in full.items() if not k.startswith("body.") or int(k.split(".")[1]) < num_blocks})
    return model.eval()


def lite_config(model: RRDBNet) -> dict[str, int]:
    """What a lite prior's weights file records of its shape."""
    first = model.body[0].rdb1.conv1  # type: ignore[union-attr]
    return {"num_blocks": len(model.body), "nf": model.conv_first.out_channels, "gc": first.out_channels}


def _build(config: dict[str, int]) -> RRDBNet:
    return RRDBNet(nf=int(config.get("nf", 64)), gc=int(config.get("gc", 32)), num_blocks=int(config["num_blocks"]))


def default_file() -> Path:
    """The shipped lite prior: ``$ADADIFFSR_WEIGHTS_DIR`` or the repository's ``weights/``."""
    from ..weights import default_weights_path

    return default_weights_path().with_name(DEFAULT_FILE)


def load_lite_prior(path: str | os.PathLike[str] | None = None) -> RRDBNet:
    """A lite prior's weights file (the shipped one when ``path`` is None), on the CPU, in eval mode."""
    from ..weights import load_module

    return load_module(path or default_file(), ARCHITECTURE, _build,
                       retrain_hint=" (train one: adadiffsr train prior --init x4plus:4)").eval()
