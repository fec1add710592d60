"""Crop sheets from a benchmark run: the same region of the truth and of every method's output,
at 100% and at 200% (nearest), one row per zoom, labelled.

    python scripts/crop_sheet.py out/heldout-pfj/mild-x4 mate-Garden 600,300 --size 160 \
        --methods realesrgan-bf16,grouped-fidelity0-bf16,grouped-fidelity1-bf16 \
        --hr data/photos1536/test --out docs/sheet-pfj-garden-mild.png

``X,Y`` is the crop's top-left corner in output pixels. Needs a run made with ``--save-images``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def sheet(run: Path, name: str, corner: tuple[int, int], size: int, methods: list[str], hr_dir: Path) -> Image.Image:
    x, y = corner
    images = [(label, Image.open(run / "images" / label / f"{name}.png").convert("RGB")) for label in methods]
    truth = Image.open(hr_dir / f"{name}.png").convert("RGB").crop((0, 0, *images[0][1].size))
    tiles = [("ground truth", truth), *images]
    font = ImageFont.load_default()
    rows = []
    for zoom in (1, 2):
        side = size * zoom
        row = Image.new("RGB", (len(tiles) * (side + 4), side + 16), "white")
        draw = ImageDraw.Draw(row)
        for k, (label, image) in enumerate(tiles):
            crop = image.crop((x, y, x + size, y + size)).resize((side, side), Image.Resampling.NEAREST)
            row.paste(crop, (k * (side + 4), 16))
            draw.text((k * (side + 4) + 2, 2), f"{label[:30]} ({100 * zoom}%)", fill="black", font=font)
        rows.append(row)
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        out.paste(row, (0, top))
        top += row.height
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a bench output folder of one degradation (with images/)")
    parser.add_argument("name", help="the photo's name without extension")
    parser.add_argument("corner", help="X,Y of the crop's top-left corner, output pixels")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--methods", required=True, help="comma list of method labels (folders under images/)")
    parser.add_argument("--hr", type=Path, default=Path("data/photos1536/test"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    x, y = (int(v) for v in args.corner.split(","))
    sheet(args.run, args.name, (x, y), args.size, args.methods.split(","), args.hr).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
