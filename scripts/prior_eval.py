"""A compact prior alone against Real-ESRGAN x4plus on whole photos: PSNR-Y to the truth, paired.

    python scripts/prior_eval.py --photos data/photos1536/val runs/prior-D/ema.safetensors weights/compact-prior-x4.safetensors

x4plus's outputs (bf16, as the pipeline runs it) are cached under ``--cache`` per photo and
degradation, so candidates can be compared quickly. Prints, per degradation and candidate, the
mean PSNR-Y of x4plus and of the candidate in fp32 and bf16, and the per-photo median difference.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from adadiffsr.data.degradations import DEGRADATIONS
from adadiffsr.data.pairs import load_rgb
from adadiffsr.metrics.psnr import psnr_y
from adadiffsr.prior import load_prior
from adadiffsr.prior.runner import prior_from_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--photos", type=Path, default=Path("data/photos1536/val"))
    parser.add_argument("--degrade", default="realesrgan-x4,mild-x4")
    parser.add_argument("--cache", type=Path, default=Path("out/prior-eval-x4plus"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    full = None
    candidates = {weights: prior_from_file(weights) for weights in args.weights}
    for name in args.degrade.split(","):
        rows: dict[str, list[float]] = {}
        for k, path in enumerate(sorted(args.photos.glob("*.png"))):
            hr = load_rgb(path)
            hr = hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4]
            lr = DEGRADATIONS[name](hr, k)[None] * 2 - 1
            truth = (hr[None] * 2 - 1)
            cached = args.cache / name / f"{path.stem}.pt"
            if not cached.is_file():
                if full is None:
                    full = load_prior("realesrgan-x4plus", runtime="torch")
                    full.use_dtype(torch.bfloat16)
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save(full(lr).to(torch.float16), cached)
            ref = torch.load(cached).float()
            rows.setdefault("x4plus", []).append(float(psnr_y((ref + 1) / 2, (truth + 1) / 2)))
            for weights, prior in candidates.items():
                for dt in args.dtypes.split(","):
                    prior.use_dtype(dtypes[dt])
                    out = prior(lr)
                    rows.setdefault(f"{weights} {dt}", []).append(float(psnr_y((out + 1) / 2, (truth + 1) / 2)))
        base = rows["x4plus"]
        print(f"\n{name} ({len(base)} photos): x4plus mean PSNR-Y {statistics.mean(base):.3f} dB")
        for label, values in rows.items():
            if label != "x4plus":
                diff = [a - b for a, b in zip(values, base, strict=True)]
                print(f"  {label}: mean {statistics.mean(values):.3f} dB, vs x4plus median {statistics.median(diff):+.3f}, "
                      f"mean {statistics.mean(diff):+.3f} dB, better on {sum(d > 0 for d in diff)}/{len(diff)}")


if __name__ == "__main__":
    main()
