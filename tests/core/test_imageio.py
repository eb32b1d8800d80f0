"""load_image / save_image: every odd input a user can drag in, generated in tmp_path."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import ImageError
from studio.core.imageio import as_rgb_array, load_image, pil_to_rgb, save_image


def _pattern(w=48, h=32) -> np.ndarray:
    """A non-symmetric RGB test pattern, so flips and rotations are detectable."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * 7 + y * 3) % 256], axis=2).astype(np.uint8)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png16(arr: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 48-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("fmt,suffix,lossless", [("PNG", ".png", True), ("BMP", ".bmp", True),
                                                 ("TIFF", ".tif", True), ("WEBP", ".webp", False),
                                                 ("JPEG", ".jpg", False), ("PPM", ".ppm", True)])
def test_formats_roundtrip(tmp_path, fmt, suffix, lossless):
    ref = _pattern()
    p = tmp_path / f"img{suffix}"
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(ref).save(p, fmt, **kw)
    arr, info = load_image(p)
    assert arr.dtype == np.uint8 and arr.shape == (32, 48, 3) and arr.flags.c_contiguous
    assert info.size == (48, 32) and info.path == str(p)
    diff = np.abs(arr.astype(int) - ref.astype(int))
    assert diff.max() == 0 if lossless else diff.mean() < 6


def test_bytes_and_file_objects():
    ref = _pattern()
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, "PNG")
    a, info = load_image(buf.getvalue())
    np.testing.assert_array_equal(a, ref)
    assert info.path is None and info.format == "PNG"
    buf.seek(0)
    b, _ = load_image(buf)
    np.testing.assert_array_equal(b, ref)


# ---------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation,expect", [
    (1, lambda a: a),
    (2, lambda a: a[:, ::-1]),
    (3, lambda a: a[::-1, ::-1]),
    (4, lambda a: a[::-1]),
    (5, lambda a: a.transpose(1, 0, 2)),
    (6, lambda a: np.rot90(a, -1)),
    (7, lambda a: a[::-1, ::-1].transpose(1, 0, 2)),
    (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientation_applied(tmp_path, orientation, expect):
    ref = _pattern()
    img = Image.fromarray(ref)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "phone.png"  # lossless, so the expected pixels are exact
    img.save(p, "PNG", exif=exif.tobytes())
    arr, info = load_image(p)
    np.testing.assert_array_equal(arr, np.ascontiguousarray(expect(ref)))
    assert info.orientation == orientation
    assert info.size == (arr.shape[1], arr.shape[0])


def test_exif_rotated_jpeg_phone_photo(tmp_path):
    # a phone stores a portrait photo as landscape pixels + orientation 6 (rotate 90 deg clockwise)
    ref = _pattern(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "IMG_0001.JPG"
    Image.fromarray(ref).save(p, "JPEG", quality=98, exif=exif.tobytes())
    arr, info = load_image(p)
    assert arr.shape == (64, 48, 3) and info.orientation == 6
    assert np.abs(arr.astype(int) - np.rot90(ref, -1).astype(int)).mean() < 3


def test_garbage_exif_is_ignored(tmp_path):
    ref = _pattern()
    exif = Image.Exif()
    exif[0x0112] = 42  # not a valid orientation
    p = tmp_path / "odd.png"
    Image.fromarray(ref).save(p, exif=exif.tobytes())
    arr, info = load_image(p)
    np.testing.assert_array_equal(arr, ref)
    assert info.orientation == 1


# ---------------------------------------------------------------------------------------------
# Modes


def test_rgba_composited_over_background(tmp_path):
    ref = _pattern()
    alpha = np.zeros(ref.shape[:2], np.uint8)
    alpha[:, 24:] = 255
    alpha[:, 12:24] = 128
    p = tmp_path / "alpha.png"
    Image.fromarray(np.dstack([ref, alpha]), "RGBA").save(p)
    arr, info = load_image(p)
    assert info.had_alpha and info.mode == "RGBA"
    np.testing.assert_array_equal(arr[:, 24:], ref[:, 24:])
    assert (arr[:, :12] == 255).all()  # transparent -> white
    half = (ref[:, 12:24].astype(int) + 255) / 2
    assert np.abs(arr[:, 12:24] - half).max() <= 1
    arr_k, _ = load_image(p, background=(0, 0, 0))
    assert (arr_k[:, :12] == 0).all()


def test_la_greyscale_alpha(tmp_path):
    g = np.tile(np.arange(48, dtype=np.uint8)[None] * 5, (32, 1))
    a = np.full_like(g, 255)
    a[:4] = 0
    p = tmp_path / "la.png"
    Image.fromarray(np.dstack([g, a]), "LA").save(p)
    arr, info = load_image(p)
    assert info.mode == "LA" and info.had_alpha
    np.testing.assert_array_equal(arr[4:], np.repeat(g[4:, :, None], 3, axis=2))
    assert (arr[:4] == 255).all()


def test_palette_with_transparency(tmp_path):
    pal = Image.fromarray(_pattern()).quantize(16)
    pal.info["transparency"] = 0
    p = tmp_path / "pal.png"
    pal.save(p, transparency=0)
    arr, info = load_image(p)
    assert info.mode == "P" and info.had_alpha
    idx = np.asarray(pal)
    assert (arr[idx == 0] == 255).all()
    rgb = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(arr[idx != 0], rgb[idx != 0])


def test_palette_gif_and_greyscale_and_bilevel(tmp_path):
    ref = _pattern()
    Image.fromarray(ref).quantize(64).save(tmp_path / "p.gif")
    arr, info = load_image(tmp_path / "p.gif")
    assert info.format == "GIF" and arr.shape == (32, 48, 3)
    assert np.abs(arr.astype(int) - ref.astype(int)).mean() < 12

    g = np.asarray(Image.fromarray(ref).convert("L"))
    Image.fromarray(g).save(tmp_path / "g.png")
    arr, info = load_image(tmp_path / "g.png")
    assert info.mode == "L"
    np.testing.assert_array_equal(arr, np.repeat(g[:, :, None], 3, axis=2))

    Image.fromarray(g > 128).save(tmp_path / "b.png")
    arr, info = load_image(tmp_path / "b.png")
    assert info.mode == "1" and set(np.unique(arr)) <= {0, 255}
    np.testing.assert_array_equal(arr[:, :, 0] == 255, g > 128)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(tmp_path, fmt):
    ref = np.zeros((32, 48, 3), np.uint8)
    ref[:] = (200, 100, 50)
    p = tmp_path / f"cmyk.{fmt.lower()}"
    Image.fromarray(ref).convert("CMYK").save(p, fmt)
    arr, info = load_image(p)
    assert info.mode == "CMYK"
    assert np.abs(arr.astype(int) - ref.astype(int)).max() <= 3


def test_16bit_grey_png(tmp_path):
    g16 = (np.arange(32 * 48).reshape(32, 48) * 41 % 65536).astype(np.uint16)
    p = tmp_path / "g16.png"
    p.write_bytes(_png16(g16, 0))
    arr, info = load_image(p)
    assert info.bits == 16
    np.testing.assert_array_equal(arr[:, :, 0], np.rint(g16 / 257.0).astype(np.uint8))
    np.testing.assert_array_equal(arr[:, :, 0], arr[:, :, 2])


def test_16bit_rgb_png(tmp_path):
    rgb16 = (np.arange(32 * 48 * 3).reshape(32, 48, 3) * 97 % 65536).astype(np.uint16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png16(rgb16, 2))
    arr, info = load_image(p)
    assert info.bits == 16 and arr.dtype == np.uint8
    assert np.abs(arr.astype(int) - rgb16 / 257.0).max() <= 1.0


def test_16bit_and_float_tiff(tmp_path):
    g16 = (np.linspace(0, 65535, 32 * 48).reshape(32, 48)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    arr, info = load_image(tmp_path / "g16.tif")
    assert info.bits == 16
    np.testing.assert_array_equal(arr[:, :, 1], np.rint(g16 / 257.0).astype(np.uint8))

    f = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    arr, info = load_image(tmp_path / "f.tif")
    assert info.mode == "F"
    np.testing.assert_array_equal(arr[:, :, 0], np.rint(f.astype(np.float64) * 255).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_first_frame(tmp_path, fmt):
    frames = [np.full((32, 48, 3), c, np.uint8) for c in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    ims = [Image.fromarray(f) for f in frames]
    p = tmp_path / f"anim.{fmt.lower()}"
    kw = {"lossless": True} if fmt == "WEBP" else {}
    ims[0].save(p, fmt, save_all=True, append_images=ims[1:], duration=100, loop=0, **kw)
    arr, info = load_image(p)
    assert info.n_frames == 3
    assert any("first frame" in n for n in info.notes)
    assert np.abs(arr.astype(int) - frames[0].astype(int)).max() <= 8  # GIF palette rounding


# ---------------------------------------------------------------------------------------------
# Errors: one ImageError naming the file, with advice


def test_missing_file_and_folder_and_empty(tmp_path):
    with pytest.raises(ImageError, match="not found") as e:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_unreadable_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 10)
    with pytest.raises(ImageError, match="not a readable image") as e:
        load_image(p)
    assert str(p) in str(e.value) and e.value.path == str(p)


def test_heic_gets_a_helpful_message(tmp_path):
    p = tmp_path / "IMG_0002.HEIC"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(ImageError, match="HEIC"):
        load_image(p)


@pytest.mark.parametrize("fmt,keep", [("JPEG", 0.5), ("PNG", 0.5), ("WEBP", 0.5), ("TIFF", 0.6), ("GIF", 0.5)])
def test_truncated_files(tmp_path, fmt, keep, caplog):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)  # incompressible: truncation hits pixel data
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(noisy).save(full, fmt)
    data = full.read_bytes()
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(p) in str(e.value)
    assert "truncated" in str(e.value) or "damaged" in str(e.value)
    assert "EXIF" not in caplog.text  # the error says it all: no side note about the EXIF block


def test_decompression_bomb_header_only(tmp_path):
    # 60000 x 60000 RGB declared in the header, no real pixel data: must be refused before decoding
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _png_chunk(b"IEND", b"")
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    with pytest.raises(ImageError, match="too large|downscale") as e:
        load_image(p)
    assert "bomb.png" in str(e.value)


def test_size_limits(tmp_path):
    p = tmp_path / "wide.png"
    Image.new("RGB", (400, 300)).save(p)
    with pytest.raises(ImageError, match="MP"):
        load_image(p, max_pixels=100_000)
    with pytest.raises(ImageError, match="side"):
        load_image(p, max_side=399)
    load_image(p, max_pixels=120_000)  # exactly at the limit is fine
    Image.new("RGB", (10, 300)).save(tmp_path / "thin.png")
    with pytest.raises(ImageError, match="only 10x300"):
        load_image(tmp_path / "thin.png")


def test_unsupported_format_refused(tmp_path):
    # EPS would run ghostscript: never opened
    p = tmp_path / "x.eps"
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError, match="PostScript|not a readable"):
        load_image(p)


# ---------------------------------------------------------------------------------------------
# Helpers and saving


def test_as_rgb_array_and_pil_to_rgb():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_array(g).shape == (3, 4, 3)
    f = np.full((3, 4, 3), 0.5)
    assert (as_rgb_array(f) == 128).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert as_rgb_array(rgba).shape == (3, 4, 3)
    with pytest.raises(ImageError, match="shape"):
        as_rgb_array(np.zeros((3, 4, 2)))
    im = Image.new("LA", (5, 4), (10, 0))
    assert (pil_to_rgb(im) == 255).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_save_image_roundtrip(tmp_path, suffix):
    ref = _pattern()
    p = save_image(tmp_path / "sub" / f"out{suffix}", ref)
    arr, _ = load_image(p)
    tol = 0 if suffix in (".png", ".bmp", ".tif") else 8
    assert np.abs(arr.astype(int) - ref.astype(int)).mean() <= tol
    assert not [q for q in p.parent.iterdir() if q.name.startswith(".tmp-")]


def test_save_image_errors(tmp_path):
    with pytest.raises(ImageError, match="suffix"):
        save_image(tmp_path / "x.xyz", _pattern())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write"):
        save_image(tmp_path / "file" / "x.png", _pattern())
