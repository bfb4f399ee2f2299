"""Image reading and writing: formats, channels, bit depths, and the errors for bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nfcore.errors import InputError
from nfcore.io.images import probe_image, read_image, write_image


def _smooth(h: int, w: int, c: int) -> np.ndarray:
    """(H, W, C) smooth ramps in [0, 1] (lossy codecs keep them well)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [x / (w - 1), y / (h - 1), (x + y) / (w + h - 2), 0.25 + 0.5 * x / (w - 1)]
    return np.stack(planes[:c], axis=-1)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_round_trip(tmp_path: Path, channels: int, bit_depth: int) -> None:
    rng = np.random.default_rng(channels)
    a = rng.random((5, 7, channels)).astype(np.float32)
    path = write_image(a, tmp_path / "x.png", bit_depth=bit_depth)
    b = read_image(path)
    assert b.dtype == np.float32 and b.shape == (5, 7, channels)
    # Quantisation error is at most half a level: 16 bits must be read back at 16 bits, not 8.
    assert np.abs(a - b).max() <= 0.5 / (2**bit_depth - 1) + 1e-6
    header = probe_image(path)
    assert (header.width, header.height, header.channels, header.bit_depth, header.format) == (7, 5, channels, bit_depth, "PNG")


@pytest.mark.parametrize("channels,bit_depth", [(1, 8), (3, 8), (4, 8), (1, 16), (3, 16), (4, 16)])
def test_tiff_round_trip(tmp_path: Path, channels: int, bit_depth: int) -> None:
    a = np.random.default_rng(0).random((6, 4, channels)).astype(np.float32)
    b = read_image(write_image(a, tmp_path / "x.tiff", bit_depth=bit_depth))
    assert b.shape == a.shape
    assert np.abs(a - b).max() <= 0.5 / (2**bit_depth - 1) + 1e-6
    assert probe_image(tmp_path / "x.tiff").bit_depth == bit_depth


def test_jpeg_and_webp(tmp_path: Path) -> None:
    a = _smooth(32, 48, 3)
    jpg = read_image(write_image(a, tmp_path / "x.jpg"))
    assert jpg.shape == (32, 48, 3) and np.abs(jpg - a).mean() < 0.02
    webp = read_image(write_image(_smooth(16, 16, 4), tmp_path / "x.webp"))  # lossless WebP keeps alpha exactly
    assert webp.shape == (16, 16, 4) and np.abs(webp - _smooth(16, 16, 4)).max() <= 0.5 / 255 + 1e-6
    grey = read_image(write_image(_smooth(8, 8, 1), tmp_path / "g.jpeg"))
    assert grey.shape == (8, 8, 1)


def test_palette_and_bilevel_images_become_rgb_and_grey(tmp_path: Path) -> None:
    rgb = (np.random.default_rng(1).random((10, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "p.png")
    p = read_image(tmp_path / "p.png")
    assert p.shape == (10, 10, 3)
    Image.new("1", (9, 4), 1).save(tmp_path / "b.png")
    b = read_image(tmp_path / "b.png")
    assert b.shape == (4, 9, 1) and np.all(b == 1.0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    im.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (20, 10, 3)
    header = probe_image(tmp_path / "r.jpg")
    assert (header.width, header.height) == (10, 20)


# ---- bad input ------------------------------------------------------------------------------


def test_truncated_png_is_rejected(tmp_path: Path) -> None:
    a = np.random.default_rng(2).random((64, 64, 3))
    data = write_image(a, tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_truncated_16bit_colour_png_is_rejected(tmp_path: Path) -> None:
    data = write_image(np.random.default_rng(3).random((32, 32, 3)), tmp_path / "full.png", bit_depth=16).read_bytes()
    (tmp_path / "cut16.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut16.png"):
        read_image(tmp_path / "cut16.png")


def test_text_file_named_png_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "notes.png")


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.gif")
    with pytest.raises(InputError, match="unsupported image extension"):
        read_image(tmp_path / "x.gif")
    # GIF data behind a .png name: only the four supported decoders are tried.
    (tmp_path / "gif.png").write_bytes((tmp_path / "x.gif").read_bytes())
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "gif.png")


def test_pixel_limit_is_an_error_not_a_warning(tmp_path: Path) -> None:
    write_image(np.zeros((100, 100, 3)), tmp_path / "big.png")
    with pytest.raises(InputError, match="decompression-bomb"):
        read_image(tmp_path / "big.png", max_pixels=5000)
    with pytest.raises(InputError, match="decompression-bomb"):
        probe_image(tmp_path / "big.png", max_pixels=5000)
    assert read_image(tmp_path / "big.png", max_pixels=10_000).shape == (100, 100, 3)


def _png_with_header_size(src: bytes, width: int, height: int) -> bytes:
    """The same PNG with its IHDR claiming another size (a header-only decompression bomb)."""
    ihdr_start = 8
    length = struct.unpack(">I", src[ihdr_start : ihdr_start + 4])[0]
    body = bytearray(src[ihdr_start + 8 : ihdr_start + 8 + length])
    body[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
    return src[: ihdr_start + 8] + bytes(body) + crc + src[ihdr_start + 12 + length :]


def test_header_only_bomb_is_rejected_before_decoding(tmp_path: Path) -> None:
    small = write_image(np.zeros((8, 8, 3)), tmp_path / "small.png").read_bytes()
    # 30000 x 30000 = 9e8 pixels: beyond twice Pillow's default limit, where Pillow raises itself.
    (tmp_path / "bomb.png").write_bytes(_png_with_header_size(small, 30000, 30000))
    with pytest.raises(InputError, match="decompression-bomb"):
        read_image(tmp_path / "bomb.png")
    # Between our limit and Pillow's: our limit decides, with an error rather than Pillow's warning.
    (tmp_path / "bomb2.png").write_bytes(_png_with_header_size(small, 10000, 10000))
    with pytest.raises(InputError, match="limit of 50000000"):
        read_image(tmp_path / "bomb2.png", max_pixels=50_000_000)


def test_unsupported_pixel_mode_is_named(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="unsupported pixel mode 'F'"):
        read_image(tmp_path / "f.tif")


def test_write_rejects_impossible_requests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8 bits"):
        write_image(np.zeros((2, 2, 3)), tmp_path / "x.jpg", bit_depth=16)
    with pytest.raises(ValueError, match="alpha"):
        write_image(np.zeros((2, 2, 4)), tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="C in 1..4"):
        write_image(np.zeros((2, 2, 5)), tmp_path / "x.png")
