"""How many tiles fit in one backbone call, from the memory that is free now."""

from __future__ import annotations

import torch

from ..core.backbone import Backbone

# Peak bytes of one tile evaluation per working-space element. CompactSR in fp32 on CPU measured
# 45-80 (peak RSS growth of a warm call, batches of 1-8 tiles of 64x64x48); 400 leaves room for
# larger backbones and allocator slack.
BYTES_PER_ELEMENT = 400


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's own count, else the system's ``MemAvailable``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def auto_batch_tiles(backbone: Backbone, tile: int, device: torch.device, budget: float = 0.25, cap: int = 64) -> int:
    """Tiles per call so that one call takes at most ``budget`` of the free memory (1..``cap``)."""
    spec = backbone.spec
    side = tile * spec.latent_scale
    per_tile = side * side * spec.latent_channels * BYTES_PER_ELEMENT
    return max(1, min(cap, int(free_memory(device) * budget // per_tile)))
