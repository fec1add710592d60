"""How many tiles fit in one backbone call, from the memory that is free now."""

from __future__ import annotations

import torch

from ..core.backbone import Backbone
from ..errors import ConfigError


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


def tile_bytes(backbone: Backbone, tile: int, device: torch.device) -> int:
    """Peak bytes of one tile evaluation: measured on a CUDA device (one call on one tile), else the
    backbone's declared ``bytes_per_element`` times the tile's working-space elements."""
    spec = backbone.spec
    side = tile * spec.latent_scale
    if device.type == "cuda":
        lr = torch.zeros(1, 3, tile, tile, device=device)
        with torch.no_grad():
            cond = backbone.condition(lr, None if backbone.prior is None else backbone.prior(lr))
            x = torch.zeros(1, spec.latent_channels, side, side, device=device)
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            backbone.predict(x, torch.zeros(1, dtype=torch.long, device=device), cond)
            torch.cuda.synchronize(device)
        return max(1, torch.cuda.max_memory_allocated(device) - before)
    if spec.bytes_per_element is None:
        raise ConfigError(f"automatic batch sizes (batch_tiles=0) on {device.type} need the memory per tile of "
                          f"{type(backbone).__name__}, which it does not declare; give a number of tiles")
    return side * side * spec.latent_channels * spec.bytes_per_element


def auto_batch_tiles(backbone: Backbone, tile: int, device: torch.device, memory_fraction: float = 0.25,
                     cap: int = 64) -> int:
    """Tiles per call so that one call takes at most ``memory_fraction`` of the free memory (1..``cap``)."""
    return max(1, min(cap, int(free_memory(device) * memory_fraction // tile_bytes(backbone, tile, device))))
