"""Image files in and out: any common format, alpha, 16 bits, and safe writes.

``read_picture`` decodes a file completely (so a truncated file fails here, not half-way through
an upscale) into a ``Picture``: RGB as float in ``[0, 1]``, the alpha channel apart, the bit depth
and whether the source was gray, so the result can be written back in kind. Outputs are written to
a temporary file beside the target and renamed into place.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .core.pixels import LUMA, normalize
from .errors import InputImageError, OutputError

WriteFn = Callable[[Path], None]

MAX_INPUT_PIXELS = 64 * 1024 * 1024  # larger inputs are refused unless the caller raises the limit

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF"}
IMAGE_SUFFIXES = tuple(_FORMATS) + (".gif",)  # what is read as an image in a folder
OUTPUT_EXTENSIONS: tuple[str, ...] = tuple(  # one per format, as --ext takes them: png, jpg, webp, ...
    next(k.lstrip(".") for k, v in _FORMATS.items() if v == fmt) for fmt in dict.fromkeys(_FORMATS.values()))
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "BMP"}
_16BIT_FORMATS = {"PNG", "TIFF"}


@dataclass
class Picture:
    """A decoded image: what the engine needs and what is needed to write the result back."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    alpha: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    bits: int = 8  # 8 or 16 bits per channel in the source
    gray: bool = False  # single-channel source: written back as gray
    notes: list[str] = field(default_factory=list)  # warnings for the user (animation, CMYK...)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @classmethod
    def from_pil(cls, image: Image.Image) -> Picture:
        """From an already opened PIL image (8-bit or 16-bit gray, palette, CMYK, with or without alpha)."""
        notes: list[str] = []
        mode = image.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            values = np.asarray(image, dtype=np.float32)
            return cls(np.repeat((values / 65535.0).clip(0, 1)[..., None], 3, axis=2), bits=16, gray=True)
        if mode == "F":
            values = np.asarray(image, dtype=np.float32).clip(0, 1)
            return cls(np.repeat(values[..., None], 3, axis=2), gray=True)
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode == "CMYK":
            notes.append("CMYK input converted to RGB without a colour profile")
            image = image.convert("RGB")
        elif mode == "1":
            image = image.convert("L")
        elif mode == "PA":
            image = image.convert("RGBA")
        elif mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGB")
        gray = image.mode in ("L", "LA")
        alpha = None
        if image.mode in ("RGBA", "LA"):
            alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return cls(rgb, alpha, 8, gray, notes)


def read_picture(path: str | os.PathLike[str], max_pixels: int | None = MAX_INPUT_PIXELS) -> Picture:
    """Decode an image file completely; every failure is an ``InputImageError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"input not found: {path}")
    if path.is_dir():
        raise InputImageError(f"input is a folder, not an image file: {path}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our limit, checked on the header below, replaces Pillow's bomb check
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd files: the result is checked below
            with Image.open(path) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise InputImageError(
                        f"{path}: {im.width}x{im.height} is more than the {max_pixels}-pixel limit "
                        "(raise it with `max_pixels`)"
                    )
                frames = getattr(im, "n_frames", 1)
                deep = _sixteen_bit_rgb(path, im)
                im.load()
                picture = deep if deep is not None else Picture.from_pil(ImageOps.exif_transpose(im))
                if frames > 1:
                    picture.notes.append(f"{frames} frames: only the first is upscaled")
    except InputImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputImageError(f"{path}: not a readable image ({_first_line(e)})") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise InputImageError(f"{path}: corrupt or truncated image ({_first_line(e)})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    if not np.isfinite(picture.rgb).all():
        raise InputImageError(f"{path}: holds NaN or Inf values")
    return picture


def _sixteen_bit_rgb(path: Path, im: Image.Image) -> Picture | None:
    """16-bit RGB(A) PNG and TIFF, which Pillow would cut to 8 bits; None for anything else."""
    if im.format == "PNG" and _png_header(path) in ((16, 2), (16, 4), (16, 6)):
        import png  # pypng: 16-bit PNG

        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        data = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
        data = data.astype(np.float32) / 65535.0
        if planes in (1, 2):
            return Picture(np.repeat(data[..., :1], 3, axis=2), data[..., 1] if planes == 2 else None, 16, True)
        return Picture(data[..., :3].copy(), data[..., 3].copy() if planes == 4 else None, 16, False)
    if im.format == "TIFF" and im.mode not in ("I;16", "I;16B", "I;16L") and _tiff_bits(im) == 16:
        import tifffile

        data = tifffile.imread(str(path)).astype(np.float32) / 65535.0
        if data.ndim == 2:
            return Picture(np.repeat(data[..., None], 3, axis=2), None, 16, True)
        return Picture(data[..., :3].copy(), data[..., 3].copy() if data.shape[2] == 4 else None, 16, False)
    return None


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG header (colour type 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA)."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 8, 2
    return head[24], head[25]


def _tiff_bits(im: Image.Image) -> int:
    bits = getattr(im, "tag_v2", {}).get(258, (8,))
    return int(bits[0] if isinstance(bits, tuple) else bits)


def read_image(path: str | os.PathLike[str], max_pixels: int | None = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an image file fully decoded, EXIF orientation applied, as 8-bit RGB."""
    return picture_to_pil(read_picture(path, max_pixels), keep_alpha=False).convert("RGB")


def picture_to_tensor(picture: Picture, device: torch.device | str = "cpu") -> Tensor:
    """``(1, 3, H, W)`` float32 in ``[-1, 1]``."""
    return normalize(torch.from_numpy(np.ascontiguousarray(picture.rgb))).permute(2, 0, 1)[None].to(device)


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> Tensor:
    """8-bit RGB image -> ``(1, 3, H, W)`` float32 in ``[-1, 1]``."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device)


def to_image(tensor: Tensor) -> Image.Image:
    """``(1, 3, H, W)`` in ``[-1, 1]`` -> 8-bit RGB image (rounded, clipped)."""
    array = ((tensor[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def output_picture(rgb: Tensor, source: Picture, outscale: float | None = None) -> Picture:
    """A ``(1, 3, H, W)`` output in ``[0, 1]`` as a ``Picture`` like ``source`` (its alpha resized with
    Lanczos, its bit depth, gray flag and notes), resized to ``outscale`` x the source first if given."""
    if outscale is not None:
        w, h = source.size
        size = (max(1, round(h * outscale)), max(1, round(w * outscale)))
        rgb = torch.nn.functional.interpolate(rgb, size=size, mode="bicubic", antialias=True, align_corners=False)
    array = rgb[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    alpha = None if source.alpha is None else resize_plane(source.alpha, array.shape[1], array.shape[0])
    return Picture(array, alpha, source.bits, source.gray, list(source.notes))


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float ``(H, W)`` plane (the alpha channel) with Lanczos, kept in ``[0, 1]``."""
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32).clip(0, 1)


def picture_to_pil(picture: Picture, keep_alpha: bool = True) -> Image.Image:
    """8-bit PIL image: RGB, RGBA, L or LA as the picture is."""
    rgb = (picture.rgb.clip(0, 1) * 255).round().astype(np.uint8)
    image = Image.fromarray(rgb, mode="RGB")
    if picture.gray:
        image = image.convert("L")
    if keep_alpha and picture.alpha is not None:
        image.putalpha(Image.fromarray((picture.alpha.clip(0, 1) * 255).round().astype(np.uint8), mode="L"))
    return image


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise OutputError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(sorted(_FORMATS))}")
    return _FORMATS[suffix]


def check_output(path: str | os.PathLike[str], has_alpha: bool) -> str:
    """The format for ``path``; refuses one that would silently drop the alpha channel."""
    fmt = output_format(path)
    if has_alpha and fmt not in _ALPHA_FORMATS:
        raise OutputError(f"{path}: {fmt} cannot store the alpha channel of this image; use .png or .webp")
    return fmt


def save_picture(picture: Picture, path: str | os.PathLike[str]) -> list[str]:
    """Write ``picture`` atomically in the format its suffix names, at 16 bits where the source had
    them and the format allows. Returns notes for the user (e.g. precision reduced)."""
    fmt = check_output(path, picture.alpha is not None)
    notes = []
    if picture.bits == 16 and fmt in _16BIT_FORMATS:
        atomic_write(path, lambda tmp: _write_16bit(picture, tmp, fmt))
        return notes
    if picture.bits == 16:
        notes.append(f"{fmt} holds 8 bits per channel: the 16-bit input's precision is reduced")
    image = picture_to_pil(picture)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))
    return notes


def _write_16bit(picture: Picture, tmp: Path, fmt: str) -> None:
    gray = (picture.rgb @ np.array(LUMA, dtype=np.float32))[..., None]  # BT.601, as PIL's convert("L")
    planes = [gray] if picture.gray else [picture.rgb]
    if picture.alpha is not None:
        planes.append(picture.alpha[..., None])
    data = (np.concatenate(planes, axis=2).clip(0, 1) * 65535).round().astype(np.uint16)
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(str(tmp), data[..., 0] if data.shape[2] == 1 else data)
        return
    import png

    h, w, c = data.shape
    writer = png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16)
    with open(tmp, "wb") as f:
        writer.write(f, data.reshape(h, w * c))


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write an 8-bit PIL image atomically in the format its suffix names."""
    fmt = output_format(path)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        raise OutputError(f"{path}: JPEG cannot store a {image.mode} image; use .png")
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))


def atomic_write(path: str | os.PathLike[str], write: WriteFn) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    An interruption (an exception, Ctrl-C, SIGTERM turned into ``KeyboardInterrupt``) leaves the
    target as it was and removes the temporary file.
    """
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
