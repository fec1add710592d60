"""Upscale a folder of photos on a Ray cluster (or a local one) with Ray Data.

    pip install "adadiffsr[ray]"
    python examples/ray_data_upscale.py photos/ -o photos_x4/ --workers 2            # this machine's CPUs
    python examples/ray_data_upscale.py photos/ -o photos_x4/ --workers 8 --gpus 1   # 8 GPU workers
    RAY_ADDRESS=auto python examples/ray_data_upscale.py ...                         # a running cluster

Each worker holds one model; a rerun skips the files already written (atomic writes: an interrupted
run never leaves a partial image). Prints one line per file and a summary; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys

import ray

from adadiffsr import UpscaleConfig
from adadiffsr.ray_data import upscale_with_ray


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="Image files or folders (subfolders keep their structure).")
    parser.add_argument("-o", "--output", required=True, help="Output folder.")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers, each with its own model.")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per worker (0: CPU workers).")
    parser.add_argument("--weights", help="Weights file (default: the shipped model).")
    parser.add_argument("--steps", type=int, help="Uniform sampling in N steps instead of the model's policy.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ray.init(num_cpus=None if args.gpus else args.workers, include_dashboard=False, log_to_driver=False)
    config = UpscaleConfig(steps=args.steps, seed=args.seed)
    rows = upscale_with_ray(args.inputs, args.output, concurrency=args.workers, num_gpus=args.gpus,
                            weights=args.weights, device="cuda" if args.gpus else "cpu", config=config)
    for row in rows:
        print(f"{row['status']}: {row['message'] or row['input']}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("upscaled", "skipped", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f", of {len(rows)}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
