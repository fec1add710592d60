"""Every method of an ``adadiffsr bench`` run against any reference, photo by photo, from its results.json.

    python scripts/paired_report.py out/bench/realesrgan-x4/results.json --reference realesrgan-bf16

The bench's own table pairs every method with its first one; this re-pairs the same rows with
another reference (medians of per-photo differences and of per-photo time ratios, both methods
timed in the same run), and prints each photo's seconds per output megapixel, so that the time of
a flat photo can be compared with that of a textured one whatever their sizes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adadiffsr.bench.runner import paired_differences, paired_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--reference", required=True, help="A method label of the run.")
    parser.add_argument("--per-photo", action="store_true", help="Also print seconds per output megapixel per photo.")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    labels = results["methods"]
    if args.reference not in labels:
        raise SystemExit(f"no method {args.reference!r} in this run; it has {', '.join(labels)}")
    order = [args.reference, *(m for m in labels if m != args.reference)]
    print(paired_table(paired_differences(results["rows"], order, results["metrics"]), results["metrics"]))
    if args.per_photo:
        sizes = results.get("output_megapixels", {})
        print("| photo | " + " | ".join(labels) + " |")
        print("|" + "---|" * (len(labels) + 1))
        for image in results["images"]:
            rows = {r["method"]: r for r in results["rows"] if r["image"] == image}
            mp = sizes.get(image)
            cells = [f"{rows[m]['seconds']:.2f}" + (f" ({rows[m]['seconds'] / mp:.2f}/MP)" if mp else "") for m in labels]
            print(f"| {image} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
