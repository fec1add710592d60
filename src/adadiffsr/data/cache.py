"""The refiner's training cache: ``(input, prior output, ground truth)`` crops, computed once.

Running the prior (Real-ESRGAN, about 2 s per 96x96 input on a 2-core CPU) at every training step
would cost more than the refiner itself, so crops are degraded and passed through the prior once
and stored as 8-bit shards (``shard-NNNNN.safetensors``, ``shard_size`` crops each). Crop ``i``
depends only on ``(seed, i)``; a rerun skips finished shards, so an interrupted build resumes, and
a larger ``count`` extends the cache. ``cache.json`` records the settings; a rerun with other
settings is refused. Training draws random sub-crops of these crops (``CacheDataset``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from ..core.pixels import denormalize, normalize
from ..devices import cpu_runs_bf16
from ..errors import ConfigError, InputImageError
from ..io import atomic_write
from .degradations import DEGRADATIONS
from .pairs import load_rgb, random_crop


@dataclass(frozen=True)
class CacheConfig:
    prior: str = "realesrgan-x4plus"
    crop: int = 384  # ground-truth crop side; the input is crop / 4
    mix: tuple[tuple[str, float], ...] = (("realesrgan-x4", 0.7), ("bicubic-x4", 0.3))  # degradation weights
    seed: int = 0
    shard_size: int = 32
    scale: int = 4
    fidelity: float = 0.0  # the prior's --fidelity (its faithful tail, prior/fidelity_tail.py); 0: the prior itself

    def to_json(self) -> dict[str, object]:
        """The settings as ``cache.json`` holds them (a fidelity of 0 left out, as caches made before it were)."""
        settings = asdict(self) | {"mix": [list(m) for m in self.mix]}
        return settings if self.fidelity else {k: v for k, v in settings.items() if k != "fidelity"}


def _to_u8(x: Tensor) -> Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def make_crop(files: list[Path], images: dict[int, Tensor], cfg: CacheConfig, i: int) -> tuple[Tensor, Tensor, str]:
    """Crop ``i`` of the cache: ``(hr (3, c, c) in [0, 1], lr, degradation name)``; depends on ``(seed, i)``."""
    rng = np.random.default_rng([cfg.seed, i])
    index = int(rng.integers(len(files)))
    if index not in images:
        images[index] = load_rgb(files[index])
    hr = random_crop(images[index], rng, cfg.crop, cfg.scale)
    names, weights = zip(*cfg.mix, strict=True)
    name = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
    return hr, DEGRADATIONS[name](hr, int(rng.integers(2**62))), name


def build_cache(
    files: list[Path], out: Path, count: int, cfg: CacheConfig = CacheConfig(),
    prior: Callable[..., Tensor] | None = None, log: Callable[[str], None] = print,
) -> int:
    """Write shards until the cache holds ``count`` crops (rounded up to whole shards); returns
    the number of crops written in this call. ``prior`` maps ``(1, 3, h, w)`` in ``[-1, 1]`` to x4
    (called with ``fidelity=`` when ``cfg.fidelity`` is not 0)."""
    if not files:
        raise InputImageError("no training photos for the cache")
    unknown = [n for n, _ in cfg.mix if n not in DEGRADATIONS]
    if unknown:
        raise ConfigError(f"unknown degradation {unknown[0]!r}; choose from {', '.join(DEGRADATIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "cache.json"
    meta = {"config": cfg.to_json(), "files": [p.name for p in files]}
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("config") != meta["config"] or old.get("files") != meta["files"]:
            raise ConfigError(f"{out} holds a cache built with other settings or photos; use another `out`")
    else:
        atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    if prior is None:
        from ..prior import load_prior

        loaded = load_prior(cfg.prior)
        if cfg.fidelity and cpu_runs_bf16():  # the moved tail runs in PyTorch: bf16 where the CPU has it (4x fp32)
            loaded.use_dtype(torch.bfloat16)
        prior = loaded
    images: dict[int, Tensor] = {}
    written, start = 0, time.perf_counter()
    for shard in range((count + cfg.shard_size - 1) // cfg.shard_size):
        path = out / f"shard-{shard:05d}.safetensors"
        if path.is_file():
            continue
        lrs, priors, hrs, names = [], [], [], []
        for i in range(shard * cfg.shard_size, (shard + 1) * cfg.shard_size):
            hr, lr, name = make_crop(files, images, cfg, i)
            with torch.no_grad():
                moved = prior(normalize(lr[None]), fidelity=cfg.fidelity) if cfg.fidelity else prior(normalize(lr[None]))
                estimate = denormalize(moved[0].float())
            lrs.append(_to_u8(lr))
            priors.append(_to_u8(estimate))
            hrs.append(_to_u8(hr))
            names.append(name)
        tensors = {"lr": torch.stack(lrs), "prior": torch.stack(priors), "hr": torch.stack(hrs)}
        atomic_write(path, lambda tmp, t=tensors, n=names: save_file(t, str(tmp), metadata={"degradations": ",".join(n)}))
        written += cfg.shard_size
        log(f"{path.name}: {written} crops in {time.perf_counter() - start:.0f} s")
    return written


def read_cache_config(root: Path) -> dict[str, object]:
    """The settings a cache was built with (``cache.json``)."""
    path = Path(root) / "cache.json"
    if not path.is_file():
        raise InputImageError(f"{root} is not a prior cache (no cache.json); build one with: adadiffsr data cache")
    return dict(json.loads(path.read_text())["config"])


class CacheDataset(Dataset[tuple[Tensor, Tensor, Tensor]]):
    """Random ``crop``-sided sub-crops ``(lr, prior, hr)`` in ``[0, 1]`` of a cache; item ``i``
    depends only on ``(seed, i)``. All shards are held in memory (8-bit)."""

    def __init__(self, root: Path, crop: int = 256, seed: int = 0, length: int = 10**9, scale: int = 4) -> None:
        shards = sorted(Path(root).glob("shard-*.safetensors"))
        if not shards:
            raise InputImageError(f"no cache shards under {root}; build them with: adadiffsr data cache --out {root}")
        parts = [load_file(str(p)) for p in shards]
        self.lr = torch.cat([p["lr"] for p in parts])
        self.prior = torch.cat([p["prior"] for p in parts])
        self.hr = torch.cat([p["hr"] for p in parts])
        if crop % scale or crop > self.hr.shape[-1]:
            raise ConfigError(f"crop must be a multiple of {scale} and at most {self.hr.shape[-1]}, got {crop}")
        self.crop, self.seed, self.length, self.scale, self.root = crop, seed, length, scale, Path(root)

    def hold_out(self, count: int, what: str) -> tuple[Tensor, Tensor, Tensor]:
        """Take the last ``count`` crops (the cache's last shard) out of training; returns them as stored,
        ``(lr, prior, hr)`` in 8 bits. ``what`` names the training for the message when too few remain."""
        if len(self.hr) < 2 * count:
            raise ConfigError(f"{self.root} holds {len(self.hr)} crops; {what} needs at least two shards "
                              "(the last one is held out)")
        held_out = (self.lr[-count:], self.prior[-count:], self.hr[-count:])
        self.lr, self.prior, self.hr = self.lr[:-count], self.prior[:-count], self.hr[:-count]
        return held_out

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, 1, i])
        k = int(rng.integers(len(self.hr)))
        lc = self.crop // self.scale
        span = self.lr.shape[-1] - lc
        top, left = int(rng.integers(span + 1)), int(rng.integers(span + 1))
        s = self.scale
        lr = self.lr[k, :, top : top + lc, left : left + lc]
        prior = self.prior[k, :, top * s : (top + lc) * s, left * s : (left + lc) * s]
        hr = self.hr[k, :, top * s : (top + lc) * s, left * s : (left + lc) * s]
        return lr.float() / 255, prior.float() / 255, hr.float() / 255
