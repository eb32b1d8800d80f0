"""Reading and writing photos as RGB uint8 arrays.

:func:`load_image` accepts the files users actually drag in (phone JPEGs rotated by EXIF, PNGs with
alpha, palette GIFs, 16-bit PNG/TIFF, CMYK JPEG, animated GIF/WebP/PNG, ...) and always returns an
``(H, W, 3)`` ``uint8`` C-contiguous array in display orientation, plus an :class:`ImageInfo` saying
what was done. Every failure is one :class:`~studio.core.errors.ImageError` naming the file and
saying what to do; no raw PIL exception escapes.

Only raster formats decoded by Pillow's own C code are opened (no EPS/PDF/ghostscript); sizes are
checked from the header *before* decoding, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from studio.core.fileio import atomic_write_bytes
from studio.core.errors import ImageError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Pillow plugins we open (the JPEG plugin also reads MPO, what many phone cameras write).
READ_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "PPM", "AVIF")
#: Largest image accepted, in pixels (width * height, after nothing is decoded yet): 120 MP covers
#: 108 MP phone sensors and stays under Pillow's own bomb limit (2 * 89.5 MP).
DEFAULT_MAX_PIXELS = 120_000_000
#: Longest side accepted, in pixels (JPEG's own limit is 65,535).
DEFAULT_MAX_SIDE = 40_000
#: Smallest side accepted, in pixels: nothing smaller can hold a detectable face.
DEFAULT_MIN_SIDE = 16

_SUPPORTED_TEXT = "JPEG, PNG, WebP, BMP, TIFF or GIF"

# EXIF orientation tag (0x0112) -> the Pillow transpose that shows the image upright (Pillow's own table).
_ORIENTATION_OPS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`load_image` found and did.

    ``size`` is ``(width, height)`` in pixels *after* EXIF orientation, i.e. the returned array is
    ``(size[1], size[0], 3)``. ``orientation`` is the EXIF orientation value applied (1 = none).
    """

    path: str | None
    format: str | None
    mode: str
    size: tuple[int, int]
    orientation: int = 1
    n_frames: int = 1
    had_alpha: bool = False
    bits: int = 8
    notes: tuple[str, ...] = field(default_factory=tuple)


#---------------------------------------------------------------------------------------------------


def load_image(
    src: PathLike | bytes | BinaryIO,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = DEFAULT_MIN_SIDE,
    background: tuple[int, int, int] = (255, 255, 255),
) -> tuple[np.ndarray, ImageInfo]:
    """Read a photo as an upright RGB ``uint8`` array of shape ``(H, W, 3)``.

    ``src`` is a path, the file's bytes, or a binary file object. Transparent pixels are composited
    over ``background`` (RGB 0-255). Animated files give their first frame. 16-bit and float images
    are scaled to 0-255. Raises :class:`ImageError` for anything that cannot be used.
    """
    path, fp, owned = _open_source(src)
    try:
        with warnings.catch_warnings():
            # We apply our own (stricter) size limit below, from the header, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(fp, formats=list(READ_FORMATS))
            except Image.DecompressionBombError:
                raise ImageError(path, f"image is too large to open safely (its header declares more pixels "
                                       f"than a photo needs); downscale it below {max_pixels / 1e6:.0f} "
                                       f"megapixels") from None
            except UnidentifiedImageError:
                raise ImageError(path, _unidentified_message(fp)) from None
            except Exception as e:  # a corrupt header makes Pillow raise many different types
                raise ImageError(path, f"cannot read the image header ({type(e).__name__}: {e}); "
                                       f"the file is damaged or not an image. Re-export it as {_SUPPORTED_TEXT}") from None
            with img:
                return _decode(img, path, max_pixels=max_pixels, max_side=max_side, min_side=min_side,
                               background=background)
    finally:
        if owned:
            fp.close()


def pil_to_rgb(img: Image.Image, *, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Any Pillow image (any mode) -> ``(H, W, 3)`` ``uint8`` RGB array (alpha over ``background``).

    Does not apply EXIF orientation (use :func:`load_image` for files).
    """
    rgb, _alpha, _bits = _to_rgb(img, background)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def as_rgb_array(img, *, name: str | None = None) -> np.ndarray:
    """Check/convert an in-memory image to a C-contiguous ``(H, W, 3)`` ``uint8`` array.

    Accepts a Pillow image, an ``(H, W)`` grey array or an ``(H, W, 3|4)`` array (uint8, or float
    in 0-1). Raises :class:`ImageError` otherwise.
    """
    if isinstance(img, Image.Image):
        return pil_to_rgb(img)
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(name, f"expected an image array of shape (H, W, 3), got {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        if a.dtype.kind == "f":
            a = np.clip(np.rint(np.nan_to_num(a) * 255.0), 0, 255)
        elif a.dtype.kind in "ui" and a.max(initial=0) > 255:
            a = np.clip(np.rint(a / 257.0), 0, 255)
        elif a.dtype.kind == "b":
            a = a * 255
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


#: What :func:`save_image` writes, by suffix.
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF"}
SAVE_SUFFIXES_TEXT = ".png, .jpg, .webp, .bmp or .tif"


def save_image(path: PathLike, img: np.ndarray | Image.Image, *, quality: int = 95) -> Path:
    """Write an RGB image; the format follows the suffix (``.png`` lossless, ``.jpg``/``.webp`` at ``quality``).

    Writes to a temporary file first and renames it, so a failed save never leaves a half file.
    Returns the path written. Raises :class:`ImageError` on failure.
    """
    path = Path(path)
    arr = as_rgb_array(img, name=str(path))
    suffix = path.suffix.lower()
    fmt = SAVE_FORMATS.get(suffix)
    if fmt is None:
        raise ImageError(path, f"unknown image suffix; use {SAVE_SUFFIXES_TEXT}")
    kwargs: dict = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = int(quality)
    if fmt == "PNG":
        kwargs["compress_level"] = 6
    try:
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format=fmt, **kwargs)
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise ImageError(path, f"cannot write the image ({e.strerror or e}); check the folder exists and is writable") from None
    return path


#---------------------------------------------------------------------------------------------------


def _open_source(src) -> tuple[str | None, BinaryIO, bool]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return None, io.BytesIO(bytes(src)), True
    if hasattr(src, "read"):
        return getattr(src, "name", None), src, False
    path = os.fspath(src)
    if not os.path.exists(path):
        raise ImageError(path, "file not found; check the path")
    if os.path.isdir(path):
        raise ImageError(path, "is a folder, not an image file")
    if os.path.getsize(path) == 0:
        raise ImageError(path, "file is empty (0 bytes); the copy or download did not finish")
    try:
        return path, open(path, "rb"), True
    except OSError as e:
        raise ImageError(path, f"cannot open the file ({e.strerror or e}); check its permissions") from None


def _unidentified_message(fp: BinaryIO) -> str:
    try:
        fp.seek(0)
        head = fp.read(32)
    except Exception:  # noqa: BLE001 - only used to improve the message
        head = b""
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return f"HEIC photos are not supported; export or convert it to {_SUPPORTED_TEXT} first"
    if head.startswith(b"%PDF") or head.startswith(b"%!PS"):
        return f"PDF/PostScript files are not images we open; export the picture as {_SUPPORTED_TEXT}"
    return f"not a readable image (unknown or unsupported format); save it as {_SUPPORTED_TEXT}"


def _decode(img: Image.Image, path: str | None, *, max_pixels: int, max_side: int, min_side: int,
            background: tuple[int, int, int]) -> tuple[np.ndarray, ImageInfo]:
    fmt = img.format
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(path, f"image has no pixels ({w}x{h}); the file is damaged")
    if w * h > max_pixels or max(w, h) > max_side:
        raise ImageError(path, f"image is {w}x{h} pixels ({w * h / 1e6:.0f} MP), more than the "
                               f"{max_pixels / 1e6:.0f} MP / {max_side} px side this app accepts "
                               f"(or a decompression bomb); downscale it first")
    if min(w, h) < min_side:
        raise ImageError(path, f"image is only {w}x{h} pixels; faces need at least {min_side} px "
                               f"(use a larger photo)")
    try:
        raw = str(img.tile[0][3]) if img.tile else ""  # decoder raw mode, e.g. 'RGB;16B' for 48-bit PNG
    except Exception:  # noqa: BLE001 - informational only
        raw = ""
    try:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - counting frames scans the file; damage shows up when decoding
        n_frames = 1
    notes: list[str] = []
    if n_frames > 1:
        notes.append(f"animated/multi-frame file ({n_frames} frames): used the first frame")
        try:
            img.seek(0)
        except Exception as e:  # noqa: BLE001
            raise ImageError(path, f"cannot read the first frame ({e}); re-export it as a still image") from None
    orientation, exif_problem = _exif_orientation(img)
    mode = img.mode
    try:
        img.load()
        rgb, had_alpha, bits = _to_rgb(img, background)
        if ";16" in raw:
            bits = 16
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(path, f"not enough memory to decode this {w}x{h} image; downscale it first") from None
    except Exception as e:  # truncated data, zlib errors, broken tiles... all mean "damaged file"
        raise ImageError(path, f"image data is truncated or damaged ({type(e).__name__}: {e}); "
                               f"re-download or re-export the file") from None
    if exif_problem:  # said only for a file whose pixels decoded: a damaged one gets the error above
        log.warning("%s: unreadable EXIF data ignored", path or "<image>")
    if had_alpha:
        notes.append("transparent pixels composited over the background colour")
    op = _ORIENTATION_OPS.get(orientation)
    if op is not None:
        rgb = rgb.transpose(op)
        notes.append(f"rotated/flipped upright from EXIF orientation {orientation}")
    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    info = ImageInfo(path=path, format=fmt, mode=mode, size=(arr.shape[1], arr.shape[0]),
                     orientation=orientation if op is not None else 1, n_frames=n_frames,
                     had_alpha=had_alpha, bits=bits, notes=tuple(notes))
    for n in notes:
        log.info("%s: %s", path or "<image>", n)
    return arr, info


def _exif_orientation(img: Image.Image) -> tuple[int, bool]:
    """(EXIF orientation, 1 when absent or unknown; whether the EXIF data was unreadable)."""
    try:
        value = img.getexif().get(0x0112, 1)
        value = int(value)
    except Exception:  # noqa: BLE001 - corrupt EXIF is common; the pixels are still fine
        return 1, True
    return (value if value in _ORIENTATION_OPS else 1), False


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> tuple[Image.Image, bool, int]:
    """Convert any mode to RGB. Returns ``(rgb_image, had_alpha, source_bits_per_channel)``."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img)
        bits = 32 if mode in ("I", "F") else 16
        if mode == "F":
            a = np.nan_to_num(a.astype(np.float64))
            a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
        elif mode == "I" and a.max(initial=0) <= 255:
            bits = 8
            a = a.astype(np.float64)
        else:  # 16-bit data (Pillow stores 16-bit PNG greyscale as 'I;16' or 'I')
            bits = 16
            a = a.astype(np.float64) / 257.0
        grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB"), False, bits
    bits = 8
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        bg.alpha_composite(rgba)
        return bg.convert("RGB"), True, bits
    if mode == "RGB":
        return img, False, bits
    return img.convert("RGB"), False, bits
