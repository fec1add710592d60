"""A deeper compact prior that computes exactly what a trained one does, to train on from there (Net2Net).

    python scripts/grow_compact_prior.py weights/compact-prior-x4.safetensors runs/grown.safetensors --num-conv 32

The new body convolutions go in before the output convolution as identities (Dirac weights, zero
bias, PReLU slope 1), so the grown network's output equals the source's; `adadiffsr train prior
--init runs/grown.safetensors --model '{"scale": 4, "num_feat": 64, "num_conv": 32}'` trains it on.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch import nn

from adadiffsr.prior.compact import ARCHITECTURE, CompactPrior, load_compact_prior
from adadiffsr.weights import save_module


def grow(source: CompactPrior, num_conv: int) -> CompactPrior:
    if num_conv < source.config.num_conv:
        raise SystemExit(f"--num-conv {num_conv} is below the source's {source.config.num_conv}")
    grown = CompactPrior(replace(source.config, num_conv=num_conv)).eval()
    old, new = list(source.body), list(grown.body)
    kept = 2 + 2 * source.config.num_conv  # the first convolution and the source's body, with their PReLUs
    with torch.no_grad():
        for a, b in zip(old[:kept], new[:kept], strict=True):
            b.load_state_dict(a.state_dict())
        for layer in new[kept:-2]:
            if isinstance(layer, nn.Conv2d):
                nn.init.dirac_(layer.weight)
                nn.init.zeros_(layer.bias)
            else:
                layer.weight.fill_(1.0)  # PReLU at slope 1: the identity
        new[-2].load_state_dict(old[-2].state_dict())  # the output convolution (then the pixel shuffle)
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--num-conv", type=int, default=32)
    args = parser.parse_args()
    source = load_compact_prior(args.source)
    grown = grow(source, args.num_conv)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        difference = float((grown(x) - source(x)).abs().max())
    assert difference < 1e-5, difference
    save_module(grown, args.out, ARCHITECTURE, grown.config.to_dict(),
                {"adadiffsr.grown_from": args.source})
    print(f"{args.out}: {sum(p.numel() for p in grown.parameters()):,} parameters, output as the source's "
          f"(max difference {difference:.1e})")


if __name__ == "__main__":
    main()
