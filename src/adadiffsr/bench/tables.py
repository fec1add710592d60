"""The benchmark's results as tables and plots: medians, paired differences, markdown, a Pareto plot."""

from __future__ import annotations

import math
import statistics
from typing import Any

from PIL import Image

from ..metrics.registry import METRICS


def summarise(rows: list[dict[str, Any]], labels: list[str], metric_names: list[str]) -> dict[str, dict[str, Any]]:
    summary = {}
    for label in labels:
        mine = [r for r in rows if r["method"] == label]
        entry = {}
        for key in [*metric_names, "nfe", "seconds", "prior_s", "sampling_s", "peak_mb"]:
            values = [r[key] for r in mine if r.get(key) is not None and math.isfinite(r[key])]
            entry[key] = statistics.median(values) if values else None
        summary[label] = entry
    return summary


def paired_differences(rows: list[dict[str, Any]], labels: list[str], metric_names: list[str]) -> dict[str, Any]:
    """Every method against the first, image by image: the median of the per-image differences of
    each metric (in its units, and relative in %) and on how many images it did better. Medians of
    differences, unlike differences of medians, compare each method on the same photos."""
    reference = labels[0]
    mine = {(r["image"], r["method"]): r for r in rows}
    images = sorted({r["image"] for r in rows})
    out: dict[str, Any] = {"reference": reference, "methods": {}}
    for label in labels[1:]:
        entry = {}
        for key in metric_names:
            pairs = [(mine[(i, label)][key], mine[(i, reference)][key]) for i in images
                     if mine[(i, label)].get(key) is not None and mine[(i, reference)].get(key) is not None]
            if not pairs:
                continue
            lower = METRICS[key].lower_is_better
            entry[key] = {
                "median_difference": statistics.median(a - b for a, b in pairs),
                "median_relative_percent": statistics.median(100 * (a / b - 1) for a, b in pairs if b),
                "better_on": sum(1 for a, b in pairs if (a < b if lower else a > b)),
                "images": len(pairs),
            }
        times = [mine[(i, label)]["seconds"] / mine[(i, reference)]["seconds"] for i in images
                 if mine[(i, reference)]["seconds"] > 0]
        if times:  # time against the reference's, photo by photo (both timed in the same run)
            entry["seconds"] = {"median_ratio": statistics.median(times), "images": len(times)}
        out["methods"][label] = entry
    return out


def paired_table(paired: dict[str, Any], metric_names: list[str]) -> str:
    """``paired_differences`` as markdown: median difference (median relative change), better on k of n."""
    if not paired["methods"]:
        return ""
    head = ["method", *(m.upper() for m in metric_names), "time ratio"]
    title = (f"Against {paired['reference']}, image by image: median difference (median relative change), "
             "better on k of n images; time ratio: the median of the per-image ratios of seconds.")
    lines = ["", title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, entry in paired["methods"].items():
        cells = [label]
        for m in metric_names:
            e = entry.get(m)
            cells.append("-" if e is None else f"{e['median_difference']:+.4g} ({e['median_relative_percent']:+.1f}%), "
                                                f"{e['better_on']}/{e['images']}")
        cells.append(f"{entry['seconds']['median_ratio']:.2f}x" if "seconds" in entry else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(summary: dict[str, dict[str, Any]], metric_names: list[str], n: int) -> str:
    arrows = {m: ("↓" if METRICS[m].lower_is_better else "↑") for m in metric_names}
    head = ["method", *(f"{m.upper()} {arrows[m]}" for m in metric_names), "NFE", "seconds", "sampling s", "peak MB"]
    lines = [f"Medians over {n} images.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, entry in summary.items():
        cells = [label] + [_fmt(entry[m]) for m in metric_names]
        cells += [_fmt(entry["nfe"], 0), _fmt(entry["seconds"], 2), _fmt(entry.get("sampling_s"), 2),
                  _fmt(entry["peak_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits != 4 else f"{value:.4g}"


def pareto_plot(summary: dict[str, dict[str, Any]], metric_names: list[str]) -> Image.Image:
    """Quality (each metric) against NFE and against seconds, one small panel each."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    xs = ["nfe", "seconds"]
    panel_w, panel_h, pad = 320, 220, 46
    canvas = Image.new("RGB", (len(xs) * panel_w, max(1, len(metric_names)) * panel_h), "white")
    draw = ImageDraw.Draw(canvas)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    labels = list(summary)
    for row, metric in enumerate(metric_names):
        for col, xkey in enumerate(xs):
            ox, oy = col * panel_w, row * panel_h
            points = [(summary[m][xkey], summary[m][metric]) for m in labels]
            valid = [(x, y) for x, y in points if x is not None and y is not None]
            draw.rectangle([ox + pad, oy + 10, ox + panel_w - 10, oy + panel_h - pad + 10], outline="black")
            arrow = "lower" if METRICS[metric].lower_is_better else "higher"
            draw.text((ox + 4, oy + 2), f"{metric} ({arrow} is better) vs {xkey}", fill="black", font=font)
            if not valid:
                continue
            x_lo, x_hi = min(v[0] for v in valid), max(v[0] for v in valid)
            y_lo, y_hi = min(v[1] for v in valid), max(v[1] for v in valid)
            x_hi, y_hi = (x_hi if x_hi > x_lo else x_lo + 1), (y_hi if y_hi > y_lo else y_lo + 1e-6)
            for k, (x, y) in enumerate(points):
                if x is None or y is None:
                    continue
                px = ox + pad + 10 + (x - x_lo) / (x_hi - x_lo) * (panel_w - pad - 130)  # room for labels
                py = oy + panel_h - pad - (y - y_lo) / (y_hi - y_lo) * (panel_h - pad - 30)
                c = colours[k % len(colours)]
                draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=c)
                draw.text((px + 6, py - 6), labels[k][:22], fill=c, font=font)
            draw.text((ox + pad, oy + panel_h - pad + 14), f"{x_lo:.3g}", fill="black", font=font)
            draw.text((ox + panel_w - 130, oy + panel_h - pad + 14), f"{x_hi:.3g}", fill="black", font=font)
            draw.text((ox + 2, oy + panel_h - pad - 4), f"{y_lo:.3g}", fill="black", font=font)
            draw.text((ox + 2, oy + 14), f"{y_hi:.3g}", fill="black", font=font)
    return canvas
