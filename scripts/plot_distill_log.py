"""Loss curves of a training run's log.jsonl (`adadiffsr train distill`, `prior`, `pfj-student`) as one PNG, a panel per term.

    python scripts/plot_distill_log.py runs/distill/log.jsonl docs/distill-losses.png --mark 500 "adversarial loss on"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TERMS = (("distill", (31, 119, 180)), ("gt", (44, 160, 44)), ("fidelity", (44, 160, 44)),  # gt: "fidelity" until 2026-12-07
         ("adversarial", (214, 39, 40)), ("d", (148, 103, 189)),
         ("texture", (255, 127, 14)), ("detail_ratio", (23, 190, 207)),  # in logs since 2026-12-07
         ("detail_ratio_2x", (188, 189, 34)), ("detail_ratio_4x", (127, 127, 127)),  # since later that day
         ("loss", (31, 119, 180)), ("psnr_y", (44, 160, 44)))  # the prior's and PFJ's logs (train prior, pfj-student)


def plot(records: list[dict[str, float]], marks: list[tuple[int, str]], width: int = 760, height: int = 260) -> Image.Image:
    font = ImageFont.load_default()
    terms = [(term, colour) for term, colour in TERMS if any(term in r for r in records)]
    canvas = Image.new("RGB", (width, height * len(terms)), "white")
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = 44, 40, width - 44, height - 44
    last = max(r["step"] for r in records)
    for p, (term, colour) in enumerate(terms):
        oy = p * height
        points = [(r["step"], r[term]) for r in records if term in r and (term != "adversarial" or r[term] != 0.0)]
        if not points:
            continue
        low, high = min(v for _, v in points), max(v for _, v in points)
        span = (high - low) or 1.0

        def xy(step: float, value: float, oy: int = oy, low: float = low, span: float = span) -> tuple[float, float]:
            return left + (right - left) * step / last, oy + bottom - (bottom - top) * (value - low) / span

        draw.rectangle([left, oy + top, right, oy + bottom], outline=(120, 120, 120))
        draw.text((left, oy + 12), f"{term} (mean over each logged window)  {low:.4f} .. {high:.4f}", fill="black", font=font)
        for step, label in marks:
            x = xy(step, low)[0]
            draw.line([x, oy + top, x, oy + bottom], fill=(90, 90, 90))
            draw.text((x + 4, oy + top + 4), label, fill=(90, 90, 90), font=font)
        draw.line([xy(s, v) for s, v in points], fill=colour, width=2)
        for tick in range(0, last + 1, int(max(1, round(last / 4, -2)))):
            draw.text((xy(tick, low)[0] - 8, oy + bottom + 8), str(tick), fill="black", font=font)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mark", nargs=2, action="append", default=[], metavar=("STEP", "LABEL"))
    args = parser.parse_args()
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    plot(records, [(int(s), label) for s, label in args.mark]).save(args.out)


if __name__ == "__main__":
    main()
