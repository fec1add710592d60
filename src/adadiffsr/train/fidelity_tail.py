"""Fine-tune Real-ESRGAN x4plus's tail toward the truth on its frozen trunk: the faithful end of ``--fidelity``.

x4plus's trunk never changes, so its features are computed once per crop of a prior cache
(``adadiffsr data cache``) and stored beside the run (``RUN/features/``, one file per cache shard,
resumable): 0.8 s per 96x96 input on a 2-core CPU, where a training step on them costs 0.3 s. Batches
are random sub-crops of those features and of the truth; the loss is L1 to the truth away from a
margin where the sub-crop's zero padding differs from the whole image's (the PSNR-oriented loss of
ESRGAN's RRDB_PSNR). The cache's last shard is held out and scored every ``val_every`` steps
(PSNR-Y against the truth, x4plus's beside it). State lives in ``RUN/last.safetensors``;
``RUN/tail.safetensors`` is the EMA tail with the run's recipe in its metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..data.cache import read_cache_config
from ..devices import training_dtype
from ..errors import ConfigError, InputImageError
from ..io import atomic_write
from ..metrics.psnr import psnr_y
from ..prior.fidelity_tail import ARCHITECTURE, FidelityTail
from ..prior.rrdbnet import RRDBNet, load_realesrgan
from ..weights import save_module
from .checkpoint import load_training_state, optimizer_step, save_or_stop, save_training_state, training_device
from .log import TrainingLog


@dataclass
class TailTrainConfig:
    """Everything a run depends on; saved in every checkpoint and, as the recipe, in the weights."""

    cache: str = "data/cache-mix3"  # a prior cache of x4plus outputs (adadiffsr data cache)
    run: str = "runs/fidelity-tail"
    steps: int = 1500
    batch_size: int = 16
    learning_rate: float = 2e-4
    crop: int = 96  # ground-truth sub-crop side (the input is crop / 4)
    margin: int = 8  # ground-truth pixels at each sub-crop edge left out of the loss
    ema_decay: float = 0.99
    seed: int = 0
    log_every: int = 50
    val_every: int = 500
    save_every: int = 250
    max_minutes: float | None = None
    device: str = "auto"
    bf16: bool = True  # autocast in bf16 on CUDA and on a CPU with bf16 instructions

    def __post_init__(self) -> None:
        if self.crop % 4 or self.crop <= 2 * self.margin:
            raise ConfigError(f"crop must be a multiple of 4 above twice the margin ({self.margin}), got {self.crop}")


@torch.no_grad()
def trunk_features(cache: Path, folder: Path, network: RRDBNet, device: torch.device, dtype: torch.dtype,
                   log: Callable[[str], None] = print) -> list[Path]:
    """x4plus's ``conv_first`` output and trunk output for every crop of every shard of ``cache``, as fp16
    files ``folder/features-NNNNN.safetensors``; finished files are kept (a rerun resumes)."""
    shards = sorted(Path(cache).glob("shard-*.safetensors"))
    if not shards:
        raise InputImageError(f"no cache shards under {cache}; build them with: adadiffsr data cache --out {cache}")
    folder.mkdir(parents=True, exist_ok=True)
    fast = torch.channels_last if dtype != torch.float32 else torch.contiguous_format  # oneDNN's bf16 kernels
    network = network.to(device, memory_format=fast).eval()
    files = []
    for shard in shards:
        path = folder / shard.name.replace("shard-", "features-")
        files.append(path)
        if path.is_file():
            continue
        lr = load_file(str(shard))["lr"]
        first, trunk = [], []
        for chunk in lr.split(4):
            x = chunk.to(device).float().div(255).contiguous(memory_format=fast)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                feat = network.conv_first(x)
                body = network.body(feat)
            first.append(feat.half().cpu())
            trunk.append(body.half().cpu())
        tensors = {"features": torch.cat(first).contiguous(), "trunk": torch.cat(trunk).contiguous()}
        atomic_write(path, lambda tmp, t=tensors: save_file(t, str(tmp)))
        log(f"{path.name}: trunk features of {len(lr)} crops")
    return files


def _load(cache: Path, files: list[Path]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(features, trunk, truth, x4plus output)`` of the shards ``files`` came from, stacked."""
    parts = [(load_file(str(f)), load_file(str(cache / f.name.replace("features-", "shard-")))) for f in files]
    return (torch.cat([p[0]["features"] for p in parts]), torch.cat([p[0]["trunk"] for p in parts]),
            torch.cat([p[1]["hr"] for p in parts]), torch.cat([p[1]["prior"] for p in parts]))


def sub_crops(features: Tensor, trunk: Tensor, hr: Tensor, size: int, count: int,
              generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` random aligned sub-crops: ``size / 4`` of features and trunk, ``size`` of the truth in ``[0, 1]``."""
    lc, side = size // 4, features.shape[-1]
    index = torch.randint(len(features), (count,), generator=generator).tolist()
    tops = torch.randint(side - lc + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(side - lc + 1, (count,), generator=generator).tolist()
    crops = [(features[k, :, t : t + lc, x : x + lc], trunk[k, :, t : t + lc, x : x + lc],
              hr[k, :, 4 * t : 4 * (t + lc), 4 * x : 4 * (x + lc)]) for k, t, x in zip(index, tops, lefts, strict=True)]
    f, b, h = (torch.stack(c) for c in zip(*crops, strict=True))
    return f.float(), b.float(), h.float() / 255


@torch.no_grad()
def validate(tail: FidelityTail, held_out: tuple[Tensor, Tensor, Tensor, Tensor], device: torch.device,
             dtype: torch.dtype) -> dict[str, float]:
    """Mean PSNR-Y of the tail's output on the held-out crops (whole) and of x4plus's own, against the truth."""
    features, trunk, hr, prior = held_out
    outs = []
    for f, b in zip(features.split(8), trunk.split(8), strict=True):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            outs.append(tail(f.to(device).float(), b.to(device).float()).float().clamp(0, 1).cpu())
    truth = hr.float() / 255
    return {"psnr_y": float(psnr_y(torch.cat(outs), truth).mean()),
            "psnr_y_x4plus": float(psnr_y(prior.float() / 255, truth).mean())}


def train_fidelity_tail(cfg: TailTrainConfig, log: Callable[[str], None] = print,
                        network: RRDBNet | None = None) -> Path:
    """Train (or resume) and return the path of the EMA tail's weights file. ``network``: the x4plus to
    fine-tune the tail of (default: the installed one; tests pass a tiny RRDBNet)."""
    device = training_device(cfg.device)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    cache_config = read_cache_config(Path(cfg.cache))
    network = network if network is not None else load_realesrgan()
    dtype = training_dtype("auto" if cfg.bf16 else "fp32", device)
    files = trunk_features(Path(cfg.cache), run / "features", network, device, dtype, log)
    if len(files) < 2:
        raise ConfigError(f"{cfg.cache} holds one shard; the tail needs at least two (the last one is held out)")
    held_out = _load(Path(cfg.cache), files[-1:])
    features, trunk, hr, _ = _load(Path(cfg.cache), files[:-1])
    if cfg.crop // 4 > features.shape[-1]:
        raise ConfigError(f"crop {cfg.crop} is larger than the cache's crops ({features.shape[-1] * 4})")
    tail = FidelityTail.of(network).to(device).train()
    ema = AveragedModel(tail, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.Adam(tail.parameters(), lr=cfg.learning_rate)
    state_path = run / "last.safetensors"
    step = load_training_state(state_path, tail, ema, optimizer) if state_path.is_file() else 0
    if step:
        log(f"resumed from {state_path} at step {step}")
    recipe = asdict(cfg) | {"cache_config": cache_config, "bf16": dtype == torch.bfloat16}
    run_log = TrainingLog(run, cfg.steps, cfg.log_every, log)
    if step == 0:
        scores = validate(ema.module.eval(), held_out, device, dtype)
        run_log.write({"step": 0, **scores})
        log(f"step 0 held-out PSNR-Y {scores['psnr_y']:.2f} dB (x4plus {scores['psnr_y_x4plus']:.2f})")

    def checkpoint() -> None:
        save_training_state(state_path, tail, ema, optimizer, step, recipe)
        save_module(ema.module, run / "tail.safetensors", ARCHITECTURE, {"nf": tail.conv_body.in_channels},
                    {"adadiffsr.train_steps": str(step), "adadiffsr.recipe": json.dumps(recipe)})

    generator, m = torch.Generator(), cfg.margin
    while step < cfg.steps:
        generator.manual_seed(cfg.seed * 1_000_003 + step)  # batch ``step`` depends on (seed, step) alone: resumable
        f, b, truth = (t.to(device) for t in sub_crops(features, trunk, hr, cfg.crop, cfg.batch_size, generator))
        decay = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))  # cosine to 0.1x over the run
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * (0.1 + 0.9 * decay)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = tail(f, b).float()
        loss = F.l1_loss(out[..., m:-m, m:-m], truth[..., m:-m, m:-m])
        optimizer_step(tail, ema, optimizer, loss)
        step += 1
        run_log.loss(step, loss.item())
        if step % cfg.val_every == 0 or step == cfg.steps:
            scores = validate(ema.module.eval(), held_out, device, dtype)
            run_log.write({"step": step, **scores})
            log(f"step {step} held-out PSNR-Y {scores['psnr_y']:.2f} dB (x4plus {scores['psnr_y_x4plus']:.2f})")
        if save_or_stop(step, cfg.save_every, cfg.max_minutes, run_log.start, checkpoint, log):
            break
    checkpoint()
    run_log.close()
    return run / "tail.safetensors"
