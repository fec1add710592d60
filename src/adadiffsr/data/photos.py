"""The photo pool: real photographs from Debian wallpaper packages, listed in ``photos.json``.

Ground truth is each photo downscaled with an antialiasing filter by at least ``min_factor`` (and
until its long side is at most ``max_side``), so JPEG artefacts and sensor noise of the originals
do not become the target. The split is fixed in the manifest: ``train`` and ``val`` share packages; ``test`` is one whole
package held out (no training crop comes from it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image

from ..errors import InputImageError
from ..io import atomic_write

PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
            "lxqt-themes")


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    path: str
    license: str
    split: str  # "train", "val" or "test" (a held-out package)


def manifest() -> list[Photo]:
    """The committed list of chosen photos with their Debian package, path and licence."""
    text = resources.files(__package__).joinpath("photos.json").read_text()
    return [Photo(**p) for p in json.loads(text)["photos"]]


def ground_truth(photo: Image.Image, max_side: int = 1024, min_factor: float = 2.0) -> Image.Image:
    """Downscale by ``max(min_factor, long side / max_side)`` with Lanczos (antialiased)."""
    factor = max(min_factor, max(photo.size) / max_side)
    size = (max(1, math.floor(photo.width / factor)), max(1, math.floor(photo.height / factor)))
    return photo.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def prepare(out: Path, max_side: int = 1024, min_factor: float = 2.0) -> list[Path]:
    """Write ``out/{train,val}/NAME.png`` ground truth for every photo of the manifest."""
    photos = manifest()
    missing = [p for p in photos if not Path(p.path).is_file()]
    if missing:
        packages = sorted({p.package for p in missing})
        raise InputImageError(
            f"{len(missing)} photos are missing (e.g. {missing[0].path}); install them with: "
            f"apt-get install -y --no-install-recommends {' '.join(packages)}"
        )
    written = []
    for p in photos:
        target = out / p.split / f"{p.name}.png"
        if target.is_file():
            written.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p.path) as im:
            gt = ground_truth(im, max_side, min_factor)
        atomic_write(target, lambda tmp, gt=gt: gt.save(tmp, format="PNG", optimize=True))
        written.append(target)
    return written


def split_files(root: Path, split: str) -> list[Path]:
    files = sorted((root / split).glob("*.png"))
    if not files:
        raise InputImageError(f"no {split} photos under {root}; run: adadiffsr data photos --out {root}")
    return files
