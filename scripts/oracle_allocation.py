"""Oracle study of region allocation (analysis, not part of the package).

From the saved outputs of a bench run (``--save-images``) with uniform intervals 20, 50 and 100 on
384x384 crops (4 tiles, roughly the 4 quadrants of the output), compose images where one quadrant
comes from 50 steps and three from 10 steps (80 NFE, like uniform interval 50) and compare them
with uniform interval 50, paired per image. Rules: the most textured quadrant of the bicubic
upsample, the flattest, and two oracles that pick the quadrant by the resulting PSNR-Y or NIQE.
Run: ``python scripts/oracle_allocation.py`` after the bench in docs/benchmarks.md (out/bench-val-dtss).
"""
import statistics as st
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adadiffsr.bench.runner import load_pairs
from adadiffsr.metrics.niqe import niqe
from adadiffsr.metrics.psnr import psnr_y

root = Path("out/bench-val-dtss/images")
pairs = load_pairs(Path("data/photos/val"), None, "realesrgan-x4", 0, None, 384)
def load(m, name):
    return torch.from_numpy(np.asarray(Image.open(root / m / f"{name}.png").convert("RGB"))).permute(2, 0, 1)[None].float() / 255
rows = {}
for p in pairs:
    name = p.name
    hr = p.hr if p.hr.dim() == 4 else p.hr[None]
    lo, hi, mid = load("uniform-interval100", name), load("uniform-interval20", name), load("uniform-interval50", name)
    lr = p.lr if p.lr.dim() == 4 else p.lr[None]
    up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
    H = hr.shape[-1] // 2
    quads = [(slice(0, H), slice(0, H)), (slice(0, H), slice(H, None)), (slice(H, None), slice(0, H)), (slice(H, None), slice(H, None))]
    def texture(q):
        g = up[..., q[0], q[1]].mean(1)
        return float((g[..., 1:, :] - g[..., :-1, :]).abs().mean() + (g[..., :, 1:] - g[..., :, :-1]).abs().mean())
    tex = [texture(q) for q in quads]
    def comp(S):
        out = lo.clone()
        for i in S:
            out[..., quads[i][0], quads[i][1]] = hi[..., quads[i][0], quads[i][1]]
        return out
    def score(img):
        return float(psnr_y(img, hr)), float(niqe(img))
    r = {"u50": score(mid), "u100": score(lo), "u20": score(hi)}
    r["most-textured"] = score(comp([int(np.argmax(tex))]))
    r["flattest"] = score(comp([int(np.argmin(tex))]))
    allc = {i: score(comp([i])) for i in range(4)}
    r["oracle-psnr"] = max(allc.values(), key=lambda v: v[0])
    r["oracle-niqe"] = min(allc.values(), key=lambda v: v[1])
    rows[name] = r
    print(name, {k: (round(a, 2), round(b, 3)) for k, (a, b) in r.items()}, flush=True)
print("paired vs u50 (80 NFE; one quadrant at 50 steps + three at 10 steps = 80 NFE):")
for k in rows[next(iter(rows))]:
    dp = st.mean(rows[n][k][0] - rows[n]["u50"][0] for n in rows)
    dn = st.mean(100 * (rows[n][k][1] / rows[n]["u50"][1] - 1) for n in rows)
    both = sum(rows[n][k][0] > rows[n]["u50"][0] and rows[n][k][1] < rows[n]["u50"][1] for n in rows)
    print(f"{k:14s} {dp:+.3f} dB  NIQE {dn:+.2f}%  both-better {both}/{len(rows)}")
