"""A picture like the paper's Fig. 3: the normalised measures along the path, per tile."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .quality import GainConfig, normalise
from .traces import Trace

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127)]


def plot_traces(panels: list[tuple[str, Trace]], config: GainConfig, num_train_timesteps: int, width: int = 520,
                height: int = 300) -> Image.Image:
    """One panel per ``(title, trace)``: thin lines per measure, thick lines for R (FR and NR)."""
    font = ImageFont.load_default()
    legend_w = 130
    canvas = Image.new("RGB", (width + legend_w, height * len(panels)), "white")
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = 40, 24, width - 10, height - 30
    for p, (title, trace) in enumerate(panels):
        oy = p * height
        norm = normalise(config, trace.raw)
        steps = trace.t.tolist()
        n = len(steps)

        def xy(i: int, v: float, oy: int = oy, n: int = n) -> tuple[float, float]:
            return (left + (right - left) * i / max(1, n - 1), oy + bottom - (bottom - top) * float(v))

        draw.rectangle([left, oy + top, right, oy + bottom], outline="black")
        draw.text((left, oy + 4), title, fill="black", font=font)
        half = next((i for i, t in enumerate(steps) if t < config.nr_from * num_train_timesteps), n - 1)
        draw.line([xy(half, 0), xy(half, 1)], fill=(180, 180, 180), width=1)
        for label, v in (("1", 1.0), ("0", 0.0)):
            draw.text((left - 12, xy(0, v)[1] - 6), label, fill="black", font=font)
        draw.text((left, oy + bottom + 6), f"t={steps[0]}", fill="black", font=font)
        draw.text((right - 40, oy + bottom + 6), f"t={steps[-1]}", fill="black", font=font)
        draw.text((xy(half, 0)[0] - 20, oy + bottom + 6), "NR from here", fill=(120, 120, 120), font=font)
        series = [(name, norm[:, k], _COLOURS[k % len(_COLOURS)], 1) for k, name in enumerate(config.metrics)]
        series += [("R full-ref", trace.performance[:, 0], (0, 0, 120), 4),
                   ("R no-ref", trace.performance[:, 1], (200, 80, 0), 4)]
        for k, (name, values, colour, line) in enumerate(series):
            draw.line([xy(i, v) for i, v in enumerate(values.tolist())], fill=colour, width=line)
            draw.text((width + 4, oy + top + 14 * k), name, fill=colour, font=font)
    return canvas
