"""How much detail a method's outputs have against a reference method's, image by image and scale by scale.

Reads the images a benchmark saved (`adadiffsr bench --save-images`: OUT/DEGRADATION/images/METHOD/*.png)
and prints, per image, the geometric mean over 16x16 windows of each method's local detail energy over
the reference's (`adadiffsr.train.texture.detail_ratio`) at 1, 2 and 4 pixel scales, then the medians.
Below 1: smoother than the reference at that scale.

    python scripts/detail_by_scale.py out/bench/realesrgan-x4/images grouped-studentfalse-bf16 \\
        grouped-studenttrue-bf16 uniform-steps0-bf16
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from adadiffsr.io import read_image, to_tensor
from adadiffsr.train.texture import detail_ratio

LEVELS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, help="a benchmark's images folder (one subfolder per method)")
    parser.add_argument("reference", help="the method the others are measured against")
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    names = sorted(p.name for p in (args.images / args.reference).glob("*.png"))
    columns = [f"{m}@{2**level}px" for m in args.methods for level in LEVELS]
    print("image".ljust(20), *columns)
    rows = []
    for name in names:
        reference = to_tensor(read_image(args.images / args.reference / name))
        row = [float(detail_ratio(to_tensor(read_image(args.images / m / name)), reference, level=level))
               for m in args.methods for level in LEVELS]
        rows.append(row)
        print(name[:20].ljust(20), *(f"{v:.3f}".ljust(len(c)) for v, c in zip(row, columns, strict=True)))
    print("median".ljust(20), *(f"{statistics.median(col):.3f}".ljust(len(c))
                                for col, c in zip(zip(*rows, strict=True), columns, strict=True)))


if __name__ == "__main__":
    main()
