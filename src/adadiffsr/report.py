"""What an upscale cost and where: the JSON report and the step map picture."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .engine.pipeline import PipelineOutput
from .engine.sampler import uniform_nfe
from .engine.tiling import dominant_tile
from .policies.dtss import CATEGORY_NAMES

# A few stops of matplotlib's viridis, interpolated linearly (dark = few steps, yellow = many).
_VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def build_report(
    out: PipelineOutput, intervals: tuple[int, ...], num_train_timesteps: int, settings: dict[str, Any],
    start_timestep: int | None = None, walk_steps: int | None = None,
) -> dict[str, Any]:
    """The ``--report`` JSON: NFE against uniform sampling, timings, tiles. Uniform sampling is every
    tile through the same walk (``walk_steps`` steps) for the samplers that follow one, else every
    tile at the finest interval from the same start timestep."""
    run, grid = out.run, out.grid
    h, w = out.input_size
    if walk_steps is not None:
        nfe_uniform = len(grid) * walk_steps
    else:
        nfe_uniform = uniform_nfe(len(grid), min(intervals), num_train_timesteps, start_timestep)
    tiles = []
    for box, steps, exit_t, cat in zip(grid.boxes, run.steps.tolist(), run.exit_t.tolist(), run.category.tolist(),
                                       strict=True):
        bw, bh = min(box.width, w - box.left), min(box.height, h - box.top)
        tile = {"box": [box.left, box.top, bw, bh], "steps": steps, "exit_t": exit_t}
        if cat >= 0:
            tile["category"] = CATEGORY_NAMES[cat]
        tiles.append(tile)
    if out.difficulty is not None:
        for tile, value in zip(tiles, out.difficulty.tolist(), strict=True):
            tile["difficulty"] = round(value, 5)
    if out.by_student is not None:
        compact = [False] * len(tiles) if out.by_compact_student is None else out.by_compact_student.tolist()
        for tile, routed, own in zip(tiles, out.by_student.tolist(), compact, strict=True):
            tile["network"] = "compact-student" if own else "student" if routed else ("refiner" if tile["steps"] else "prior")
    route = out.prior_route
    if route is not None:  # stage 1 was routed: the prior that dominates each tile, and its weight there
        for tile, fraction in zip(tiles, route.full_fraction(grid).tolist(), strict=True):
            tile["prior"] = "full" if fraction >= 0.5 else "compact"
            tile["prior_full_weight"] = round(fraction, 3)
    return {
        "nfe": run.nfe,
        "nfe_student": run.nfe_student,  # of nfe: the distilled student's evaluations
        "student_tiles": 0 if out.by_student is None else int(out.by_student.sum()),
        # of student_tiles: those the compact prior's own student took (their estimate was the compact prior's)
        "compact_student_tiles": 0 if out.by_compact_student is None else int(out.by_compact_student.sum()),
        "nfe_uniform": nfe_uniform,
        "nfe_saved": nfe_uniform - run.nfe,
        "tiles_exited_early": int((run.exit_t >= 0).sum()),
        "prior_regions": None if route is None else {
            "count": len(route.grid), "full": int(route.full.sum()), "region": list(reversed(route.grid.tile_shape)),
            "full_boxes": [[b.left, b.top, b.width, b.height]
                           for b, chosen in zip(route.grid.boxes, route.full.tolist(), strict=True) if chosen]},
        "speedup_nfe": nfe_uniform / run.nfe if run.nfe else None,
        "seconds": {k: round(v, 6) for k, v in out.seconds.items()},
        "seconds_per_tile_evaluation": out.seconds["backbone"] / run.nfe if run.nfe else None,
        "input_size": [w, h],
        "output_size": [int(out.image.shape[-1]), int(out.image.shape[-2])],
        "num_tiles": len(grid),
        "tile_size": list(reversed(grid.tile_shape)),
        "intervals": list(intervals),
        "settings": settings,
        "tiles": tiles,
    }


def colormap(values: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats -> ``uint8`` RGB through viridis stops."""
    pos = np.clip(values, 0, 1) * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)


def render_step_map(out: PipelineOutput, image: Image.Image | None = None, min_side: int = 512) -> Image.Image:
    """Steps spent per region over the image: each pixel shows its dominant tile's step count.

    Drawn over a grey copy of ``image`` (the output) when given, with a legend underneath.
    """
    h, w = out.input_size
    index = dominant_tile(out.grid)[:h, :w]
    steps = out.run.steps.cpu()[index].numpy().astype(np.float64)
    lo, hi = float(steps.min()), float(steps.max())
    rgb = colormap((steps - lo) / (hi - lo) if hi > lo else np.full_like(steps, 0.5))
    factor = max(1, -(-min_side // max(h, w)))
    picture = Image.fromarray(rgb).resize((w * factor, h * factor), Image.Resampling.NEAREST)
    if image is not None:
        grey = image.convert("L").convert("RGB").resize(picture.size, Image.Resampling.BILINEAR)
        picture = Image.blend(picture, grey, 0.35)
    legend_h = 28
    canvas = Image.new("RGB", (picture.width, picture.height + legend_h), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for box, exit_t in zip(out.grid.boxes, out.run.exit_t.tolist(), strict=True):
        if exit_t >= 0:  # tiles that exited early (saturated): mark their centres
            cx, cy = (box.left + box.width / 2) * factor, (box.top + box.height / 2) * factor
            if cx < picture.width and cy < picture.height:
                draw.line([cx - 5, cy - 5, cx + 5, cy + 5], fill=(255, 255, 255), width=2)
                draw.line([cx - 5, cy + 5, cx + 5, cy - 5], fill=(255, 255, 255), width=2)
    routed = [False] * len(out.grid) if out.by_student is None else out.by_student.tolist()
    for box, by_student in zip(out.grid.boxes, routed, strict=True):
        if by_student:  # tiles the distilled student took: a ring at their centres
            cx, cy = (box.left + box.width / 2) * factor, (box.top + box.height / 2) * factor
            if cx < picture.width and cy < picture.height:
                draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=(255, 255, 255), width=2)
    route = out.prior_route
    if route is not None:  # regions that took the full prior: an orange outline
        for box, chosen in zip(route.grid.boxes, route.full.tolist(), strict=True):
            if chosen:
                draw.rectangle([box.left * factor + 1, box.top * factor + 1, (box.left + box.width) * factor - 2,
                                (box.top + box.height) * factor - 2], outline=(255, 140, 0), width=2)
    bar_w = max(8, min(200, picture.width - 150))
    bar = colormap(np.linspace(0, 1, bar_w)[None, :].repeat(12, axis=0))
    canvas.paste(Image.fromarray(bar), (4, picture.height + 8))
    text = f"steps {int(lo)} .. {int(hi)}   NFE {out.run.nfe}"
    if bool((out.run.category >= 0).any()):
        counts = [int((out.run.category == k).sum()) for k in range(3)]
        text += f"   last category: {counts[0]} growing, {counts[1]} stable, {counts[2]} saturated (x)"
    if any(routed):
        text += f"   {sum(routed)} by the student (o)"
    if route is not None:
        text += f"   full prior on {int(route.full.sum())} of {len(route.grid)} regions (orange)"
    draw.text((bar_w + 10, picture.height + 8), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return canvas

