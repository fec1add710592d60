"""Where does Real-ESRGAN x4plus beat the compact prior? Per region of validation photos.

    python scripts/prior_routing_study.py --photos data/photos1536/val --degrade realesrgan-x4,mild-x4

For every 64-pixel region (overlap 8) of every photo: the squared error of each prior's output
against the ground truth, and candidate difficulty signals that can be read before x4plus runs:
the texture of the compact estimate (``tile_texture``, what routing uses), the input's noise
(Immerkaer's estimate on the luma), and the two combined. Prints, per signal, the Spearman
correlation with x4plus's advantage (compact MSE minus x4plus MSE) and how much of the total
advantage the top 10 / 25 / 50% of regions by that signal capture.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from adadiffsr.core.pixels import luma
from adadiffsr.data.degradations import DEGRADATIONS
from adadiffsr.data.pairs import load_rgb
from adadiffsr.engine.tiling import TileGrid
from adadiffsr.policies.groups import tile_texture
from adadiffsr.prior import COMPACT_PRIOR, load_prior

LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def noise_sigma(tiles: torch.Tensor) -> torch.Tensor:
    """Immerkaer's fast noise estimate of ``(n, 3, h, w)`` tiles in ``[-1, 1]``, on the luma in [0, 1] units."""
    y = luma(tiles) / 2
    response = F.conv2d(y, LAPLACE.view(1, 1, 3, 3).to(y))
    h, w = response.shape[-2:]
    return response.abs().sum(dim=(1, 2, 3)) * math.sqrt(math.pi / 2) / (6 * h * w)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/photos1536/val"))
    parser.add_argument("--degrade", default="realesrgan-x4,mild-x4")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    torch.set_num_threads(2)
    full, compact = load_prior("realesrgan-x4plus", runtime="torch"), load_prior(COMPACT_PRIOR)
    full.use_dtype(torch.bfloat16)
    compact.use_dtype(torch.bfloat16)
    for name in args.degrade.split(","):
        rows = []
        for k, path in enumerate(sorted(args.photos.glob("*.png"))[: args.limit]):
            hr = load_rgb(path)
            hr = hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4]
            lr = DEGRADATIONS[name](hr, k)[None] * 2 - 1
            truth = hr[None] * 2 - 1
            a, b = compact(lr), full(lr)
            grid = TileGrid.build(lr.shape[-2], lr.shape[-1], 64, 8)
            hr_grid = grid.scaled(4)
            for i in range(len(grid)):
                ca, cb, ct = (hr_grid.crop(x, range(i, i + 1)) for x in (a, b, truth))
                rows.append((float(((ca - ct) ** 2).mean()), float(((cb - ct) ** 2).mean()),
                             float(tile_texture(ca)), float(noise_sigma(grid.crop(lr, range(i, i + 1))))))
        mse_a, mse_b, texture, noise = (torch.tensor(c) for c in zip(*rows, strict=True))
        advantage = mse_a - mse_b
        print(f"\n{name}: {len(rows)} regions; x4plus better on {int((advantage > 0).sum())}; "
              f"PSNR over all regions compact {10 * math.log10(4 / float(mse_a.mean())):.2f} dB, "
              f"x4plus {10 * math.log10(4 / float(mse_b.mean())):.2f} dB")
        signals = {"texture": texture, "noise": noise, "texture+noise": texture / texture.median() + noise / noise.median()}
        total = float(advantage.clamp(min=0).sum())
        for label, signal in signals.items():
            order = signal.argsort(descending=True)
            captured = [float(advantage[order[: max(1, round(f * len(order)))]].sum()) / total for f in (0.1, 0.25, 0.5)]
            print(f"  {label:>14}: Spearman {spearman(signal, advantage):+.2f}; top 10/25/50% of regions capture "
                  + " / ".join(f"{c:.0%}" for c in captured) + " of x4plus's total advantage")


if __name__ == "__main__":
    main()
