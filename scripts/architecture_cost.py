"""CPU cost of one backbone evaluation for the architecture options of the default model.

Times one forward pass over a batch of 8 tiles of 64x64 input pixels (x4: 256x256 output pixels)
for: the shipped layout (UNet on pixel-unshuffled HR at input resolution, 48+48 channels in), a
narrower one, the same UNet at output resolution (3+3 channels in, 16x the pixels), and the
Real-ESRGAN x4plus network that conditioning on its estimate would add once per tile. Random
weights: cost does not depend on them. Run: ``python scripts/architecture_cost.py``.
"""

from __future__ import annotations

import statistics
import time

import torch
from diffusers import UNet2DModel

from adadiffsr.backbones.compact import CompactConfig, CompactSR
from adadiffsr.prior.rrdbnet import RRDBNet


def seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch, lr_side = 8, 64
    t = torch.full((batch,), 500)
    rows = []
    for name, widths in (("LR space, unshuffled (64,128,192) [shipped]", (64, 128, 192)),
                         ("LR space, unshuffled (32,64,128)", (32, 64, 128))):
        model = CompactSR(CompactConfig(block_out_channels=widths)).eval()
        x = torch.randn(batch, 48, lr_side, lr_side)
        rows.append((name, sum(p.numel() for p in model.parameters()), seconds(lambda m=model, x=x: m.predict(x, t, x))))
    hr = UNet2DModel(sample_size=256, in_channels=6, out_channels=3, down_block_types=("DownBlock2D",) * 3,
                     up_block_types=("UpBlock2D",) * 3, block_out_channels=(64, 128, 192), layers_per_block=2,
                     add_attention=False).eval()
    x = torch.randn(batch, 6, 4 * lr_side, 4 * lr_side)
    rows.append(("HR space (64,128,192)", sum(p.numel() for p in hr.parameters()),
                 seconds(lambda: hr(x, t).sample, repeats=2)))
    esrgan = RRDBNet().eval()
    lr = torch.rand(batch, 3, lr_side, lr_side)
    rows.append(("Real-ESRGAN x4plus (a conditioning estimate, once per tile)",
                 sum(p.numel() for p in esrgan.parameters()), seconds(lambda: esrgan(lr), repeats=2)))
    base = rows[0][2]
    print("| network | parameters | ms per 64x64 tile | relative |\n|---|---|---|---|")
    for name, params, sec in rows:
        print(f"| {name} | {params / 1e6:.1f}M | {1000 * sec / batch:.1f} | {sec / base:.2f}x |")


if __name__ == "__main__":
    main()
