"""``adadiffsr bench``: every method on the same images, interleaved in one process, measured alike.

Fair timing: threads fixed, one warm-up call per method excluded, and the order of methods
rotated from image to image so that none always runs first on a machine whose load drifts.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.pixels import normalize
from ..data.degradations import DEGRADATIONS
from ..errors import ConfigError, InputImageError
from ..io import IMAGE_SUFFIXES, atomic_write, read_image, save_image, to_image
from ..metrics.registry import create_metric
from .methods import Method
from .tables import markdown_table, paired_differences, paired_table, pareto_plot, summarise


@dataclass
class Pair:
    name: str
    lr: torch.Tensor  # (1, 3, h, w) in [0, 1]
    hr: torch.Tensor  # (1, 3, 4h, 4w) in [0, 1]


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputImageError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputImageError(f"no images in {folder}")
    return files


def _center_crop(hr: torch.Tensor, crop: int | None) -> torch.Tensor:
    h, w = hr.shape[-2:]
    ch, cw = (min(crop, h), min(crop, w)) if crop else (h, w)
    ch, cw = ch // 4 * 4, cw // 4 * 4
    top, left = (h - ch) // 2, (w - cw) // 2
    return hr[..., top : top + ch, left : left + cw]


def load_pairs(
    hr_dir: Path, lr_dir: Path | None, degrade_name: str | None, seed: int, limit: int | None, crop: int | None
) -> list[Pair]:
    """Pairs matched by file name (``--lr``), or made with a named degradation (``--degrade``)."""
    if lr_dir is not None and crop:
        raise ConfigError("`crop` works with `degrade` only (paired inputs are used whole)")
    pairs = []
    for k, path in enumerate(_images(hr_dir)[:limit]):
        hr = _center_crop(_tensor(read_image(path)), crop)
        if lr_dir is not None:
            matches = [p for p in _images(lr_dir) if p.stem == path.stem]
            if not matches:
                raise InputImageError(f"no input in {lr_dir} named like {path.name}")
            lr = _tensor(read_image(matches[0]))
            if tuple(hr.shape[-2:]) != (lr.shape[-2] * 4, lr.shape[-1] * 4):
                hr = hr[..., : lr.shape[-2] * 4, : lr.shape[-1] * 4]
        elif degrade_name in DEGRADATIONS:
            lr = DEGRADATIONS[degrade_name](hr[0], seed * 100_003 + k)[None]
        else:
            raise ConfigError(f"give `lr` DIR or `degrade` one of {', '.join(DEGRADATIONS)}")
        pairs.append(Pair(path.stem, lr, hr))
    return pairs


class PeakRSS:
    """Peak resident memory above the starting level while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def megabytes(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_bench(
    pairs: list[Pair],
    methods: list[Method],
    metric_names: list[str],
    out: Path,
    save_images: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run, score and write ``results.json``, ``results.md`` and ``pareto.png`` under ``out``."""
    metrics = [create_metric(m) for m in metric_names]
    out.mkdir(parents=True, exist_ok=True)
    warm = pairs[0].lr[..., :32, :32]
    for method in methods:  # warm-up, excluded from timings
        method(warm)
    rows: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]
        for method in order:
            with PeakRSS() as mem:
                start = time.perf_counter()
                with torch.no_grad():
                    output, nfe = method(pair.lr)
                seconds = time.perf_counter() - start
            output = output.float().cpu()
            stages = getattr(method, "stage_seconds", {"prior": seconds})  # the engine's split of its time
            row: dict[str, Any] = {"image": pair.name, "method": method.label, "nfe": nfe,
                                   "seconds": seconds, "peak_mb": round(mem.megabytes, 1),
                                   "prior_s": stages.get("prior", 0.0), "sampling_s": stages.get("sampling", 0.0)}
            for spec in metrics:
                try:
                    row[spec.name] = float(spec.fn(output, pair.hr)[0]) if spec.fn else None
                except ValueError:  # image too small for this metric
                    row[spec.name] = None
            rows.append(row)
            log(f"{pair.name:>28} {method.label:<28} " + " ".join(
                f"{m.name}={row[m.name]:.4g}" for m in metrics if row[m.name] is not None
            ) + f" nfe={nfe} {seconds:.2f}s (sampling {row['sampling_s']:.2f}s)")
            if save_images:
                folder = out / "images" / method.label
                folder.mkdir(parents=True, exist_ok=True)
                save_image(to_image(normalize(output)), folder / f"{pair.name}.png")
        if save_images:
            _comparison_sheet(pair, out, [m.label for m in methods])
    summary = summarise(rows, [m.label for m in methods], [m.name for m in metrics])
    paired = paired_differences(rows, [m.label for m in methods], [m.name for m in metrics])
    results = {"methods": [m.label for m in methods], "metrics": metric_names, "images": [p.name for p in pairs],
               "output_megapixels": {p.name: p.hr.shape[-2] * p.hr.shape[-1] / 1e6 for p in pairs},
               "threads": torch.get_num_threads(), "rows": rows, "median": summary, "paired": paired}
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    table = markdown_table(summary, [m.name for m in metrics], len(pairs)) + paired_table(paired, [m.name for m in metrics])
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(table))
    save_image(pareto_plot(summary, [m.name for m in metrics]), out / "pareto.png")
    return results


def _comparison_sheet(pair: Pair, out: Path, labels: list[str], size: int = 128) -> None:
    """Side by side crops (centre ``size`` px of the output): HR, input (nearest), every method."""
    from PIL import ImageDraw, ImageFont

    hr = to_image(normalize(pair.hr))
    s = min(size, hr.width, hr.height)
    box = ((hr.width - s) // 2, (hr.height - s) // 2, (hr.width - s) // 2 + s, (hr.height - s) // 2 + s)
    lr = to_image(normalize(pair.lr)).resize(hr.size, Image.Resampling.NEAREST)
    tiles = [("ground truth", hr), ("input", lr)]
    tiles += [(label, Image.open(out / "images" / label / f"{pair.name}.png")) for label in labels]
    sheet = Image.new("RGB", (len(tiles) * (s + 4), s + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, image) in enumerate(tiles):
        sheet.paste(image.crop(box), (k * (s + 4), 16))
        draw.text((k * (s + 4) + 2, 2), label[:24], fill="black", font=ImageFont.load_default())
    (out / "sheets").mkdir(exist_ok=True)
    save_image(sheet, out / "sheets" / f"{pair.name}.png")
