"""Reading image files into tensors and writing results safely (temporary file, then rename)."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import InputImageError, OutputError

WriteFn = Callable[[Path], None]

MAX_INPUT_PIXELS = 64 * 1024 * 1024  # refuse larger inputs unless the caller raises the limit

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def read_image(path: str | os.PathLike[str], max_pixels: int | None = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an image file fully decoded, EXIF orientation applied, as 8-bit RGB."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"input not found: {path}")
    if path.is_dir():
        raise InputImageError(f"input is a folder, not an image file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise InputImageError(
                        f"{path}: {im.width}x{im.height} is larger than the {max_pixels} pixel limit"
                    )
                im.load()
                image = ImageOps.exif_transpose(im)
    except InputImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputImageError(f"{path}: not a readable image ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputImageError(f"{path}: corrupt or truncated image ({e})") from e
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> Tensor:
    """8-bit RGB image -> ``(1, 3, H, W)`` float32 in ``[-1, 1]``."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device)


def to_image(tensor: Tensor) -> Image.Image:
    """``(1, 3, H, W)`` in ``[-1, 1]`` -> 8-bit RGB image (rounded, clipped)."""
    array = ((tensor[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise OutputError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(sorted(_FORMATS))}")
    return _FORMATS[suffix]


def atomic_write(path: str | os.PathLike[str], write: WriteFn) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write to {folder}: {e.strerror or e}") from e
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write an image atomically in the format its suffix names."""
    fmt = output_format(path)
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {})))

