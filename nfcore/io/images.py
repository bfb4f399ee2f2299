"""Image reading and writing: PNG, JPEG, TIFF, WebP (and BMP); grey, grey+alpha, RGB, RGBA; 8 and 16 bit.

Pillow decodes everything except 16-bit colour, which it silently reduces to 8 bits: 16-bit
colour PNGs go through pypng and 16-bit colour TIFFs through tifffile (a scikit-image
dependency), so no precision is lost. Pixel arrays are float32 (H, W, C) in [0, 1], C in 1..4.

Decompression bombs: the pixel limit is a parameter (default: Pillow's MAX_IMAGE_PIXELS) checked
on the header before any pixel is decoded, and exceeding it is an InputError, never a warning.
Pillow's own global limit is left untouched (no process-wide state is changed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nfcore.errors import InputError
from nfcore.vocab import IMAGE_EXTENSIONS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageHeader",
    "probe_image",
    "read_image",
    "verify_image",
    "write_image",
]

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's default MAX_IMAGE_PIXELS (about 0.25 GiB of 24-bit pixels)."""

# Pillow's format per extension; the extensions themselves come from nfcore.vocab (a test checks
# that every one has a format here).
PIL_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")

# Pillow mode -> (mode we convert to, channels). "P" depends on transparency (see _target_mode).
_MODES_8BIT = {
    "1": ("L", 1),
    "L": ("L", 1),
    "LA": ("LA", 2),
    "La": ("LA", 2),
    "PA": ("RGBA", 4),
    "RGB": ("RGB", 3),
    "RGBX": ("RGB", 3),
    "RGBA": ("RGBA", 4),
    "RGBa": ("RGBA", 4),
    "CMYK": ("RGB", 3),
    "YCbCr": ("RGB", 3),
    "LAB": ("RGB", 3),
    "HSV": ("RGB", 3),
}
_MODES_16BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """What an image file holds, read from its header (after EXIF rotation)."""

    width: int
    height: int
    channels: int
    bit_depth: int  # 8 or 16
    format: str  # PNG, JPEG, TIFF, WEBP


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(
            f"unsupported image extension {path.suffix!r} for {path.name}; supported: {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if path.stat().st_size == 0:
        raise InputError(f"image file {path.name} is empty (0 bytes)")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open (header only) with the pixel limit enforced as an InputError."""
    _check_path(path)
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path, formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {path.name} is too large to decode safely (decompression-bomb limit): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{path.name} is not a readable image (expected PNG, JPEG, TIFF, WebP or BMP data)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read image {path.name}: {exc}") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise InputError(f"image {path.name} has zero size ({width}x{height})")
    if width * height > max_pixels:
        im.close()
        raise InputError(
            f"image {path.name} has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels} "
            "(decompression-bomb protection); downscale it or raise max_pixels"
        )
    return im


def _rawmode(im: Image.Image) -> str:
    if not im.tile:
        return ""
    args = im.tile[0].args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _is_16bit_colour(im: Image.Image) -> bool:
    """Whether the file stores 16-bit colour (or grey + alpha) that Pillow would reduce to 8 bits."""
    if im.mode not in ("RGB", "RGBA", "LA"):
        return False
    if im.format == "TIFF":
        bits = im.tag_v2.get(258)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(b == 16 for b in bits if b is not None)
    return ";16" in _rawmode(im)


def _target_mode(im: Image.Image, name: str) -> tuple[str, int]:
    if im.mode == "P":
        return ("RGBA", 4) if "transparency" in im.info else ("RGB", 3)
    if im.mode in _MODES_8BIT:
        return _MODES_8BIT[im.mode]
    raise InputError(
        f"image {name} has unsupported pixel mode {im.mode!r}: expected 8- or 16-bit grey, grey+alpha, RGB or RGBA"
    )


def _swaps_axes(im: Image.Image) -> bool:
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return False
    return orientation in (5, 6, 7, 8)


def probe_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Width, height, channels, bit depth and format from the header, without decoding pixels."""
    path = Path(path)
    with _open(path, max_pixels) as im:
        width, height = im.size
        fmt = im.format
        if im.mode in _MODES_16BIT_GREY:
            channels, bit_depth = 1, 16
        elif _is_16bit_colour(im):
            # Pillow may report 16-bit grey+alpha as RGBA; the raw mode says what is stored.
            raw = _rawmode(im).split(";")[0]
            channels, bit_depth = {"LA": 2, "RGB": 3, "RGBA": 4}.get(raw, _target_mode(im, path.name)[1]), 16
        else:
            channels, bit_depth = _target_mode(im, path.name)[1], 8
        # Last: reading EXIF may decode the image (PNG keeps EXIF after the pixel data).
        if _swaps_axes(im):
            width, height = height, width
        return ImageHeader(width, height, channels, bit_depth, fmt)


def _read_png_16bit(path: Path) -> np.ndarray:
    """16-bit colour PNG via pypng (Pillow would truncate to 8 bits)."""
    import png

    try:
        with open(path, "rb") as f:
            width, height, rows, info = png.Reader(file=f).asDirect()
            data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except (png.Error, OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read image {path.name}: {exc}") from exc
    if data.shape != (height, width * info["planes"]):
        raise InputError(f"cannot read image {path.name}: truncated pixel data")
    return data.reshape(height, width, info["planes"]).astype(np.float32) / float(2 ** info["bitdepth"] - 1)


def _read_tiff_16bit(path: Path) -> np.ndarray:
    """16-bit colour TIFF via tifffile (Pillow would truncate to 8 bits)."""
    import tifffile

    try:
        data = tifffile.imread(path, key=0)
    except (tifffile.TiffFileError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read image {path.name}: {exc}") from exc
    if data.dtype != np.uint16 or data.ndim != 3 or data.shape[-1] not in (2, 3, 4):
        raise InputError(f"image {path.name}: unsupported 16-bit TIFF layout {data.shape} {data.dtype}")
    return data.astype(np.float32) / 65535.0


def verify_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Decode every pixel once (as read_image would, without the float copy); InputError if that fails.

    A header can be intact while the data is not (a JPEG cut in the middle of its scan, a TIFF strip
    offset past the end of the file): only a full decode finds those.
    """
    path = Path(path)
    with _open(path, max_pixels) as im:
        try:
            im.verify()  # chunk checksums (PNG CRCs), which decoding alone skips
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"{path.name}: corrupt or truncated image: {exc}") from exc
    with _open(path, max_pixels) as im:  # verify() leaves the image unusable: open it again
        try:
            if _is_16bit_colour(im) and im.format in ("PNG", "TIFF"):
                (_read_png_16bit if im.format == "PNG" else _read_tiff_16bit)(path)
                return
            if im.mode not in _MODES_16BIT_GREY:
                _target_mode(im, path.name)  # an unsupported pixel mode is refused as read_image would
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"{path.name}: corrupt or truncated image data: {exc}") from exc


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Pixels as float32 (H, W, C) in [0, 1], C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    EXIF orientation is applied (the image as a viewer shows it). Palette images become RGB(A).

    Raises:
        InputError: missing, empty, corrupt or truncated file; unsupported format or pixel mode;
            more than `max_pixels` pixels.
    """
    path = Path(path)
    with _open(path, max_pixels) as im:
        try:
            if im.mode in _MODES_16BIT_GREY:
                im.load()
                im = ImageOps.exif_transpose(im)
                # I;16 variants are little/big-endian 16-bit; asarray honours the byte order.
                return (np.asarray(im).astype(np.float32) / 65535.0)[:, :, None]
            if _is_16bit_colour(im):
                if im.format == "PNG":
                    return _read_png_16bit(path)
                if im.format == "TIFF":
                    return _read_tiff_16bit(path)
            mode, channels = _target_mode(im, path.name)
            im.load()
            im = ImageOps.exif_transpose(im).convert(mode)
            data = np.asarray(im, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"cannot read image {path.name} (corrupt or truncated?): {exc}") from exc
    return (data.astype(np.float32) / 255.0).reshape(data.shape[0], data.shape[1], channels)


def write_image(array: np.ndarray, path: str | Path, *, bit_depth: int = 8) -> Path:
    """Write float (H, W) or (H, W, C) pixels in [0, 1] (clipped) as PNG, JPEG, TIFF, WebP or BMP.

    Args:
        bit_depth: 8, or 16 for PNG and TIFF.
    Returns the path written.
    """
    path = Path(path)
    fmt = PIL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unsupported image extension {path.suffix!r}; supported: {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image array must be (H, W) or (H, W, C) with C in 1..4, got {np.shape(array)}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in ("PNG", "TIFF"):
        raise ValueError(f"{fmt} stores 8 bits per channel; use PNG or TIFF for 16-bit output")
    channels = a.shape[2]
    if fmt == "TIFF" and bit_depth == 16 and channels == 2:
        raise ValueError("16-bit grey+alpha TIFF is not supported (Pillow cannot read it back); use PNG")
    if fmt == "JPEG" and channels in (2, 4):
        raise ValueError("JPEG has no alpha channel; write PNG, TIFF or WebP instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.nan_to_num(a, nan=0.0).clip(0.0, 1.0)
    if bit_depth == 8:
        data = np.round(a * 255.0).astype(np.uint8)
        # fromarray infers L, LA, RGB or RGBA from the uint8 array's shape.
        # High-quality JPEG and lossless WebP: these are results, not thumbnails.
        options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
        Image.fromarray(data[:, :, 0] if channels == 1 else data).save(path, format=fmt, **options)
        return path
    data = np.round(a * 65535.0).astype(np.uint16)
    if fmt == "TIFF":
        import tifffile

        photometric = "minisblack" if channels <= 2 else "rgb"
        extrasamples = ("unassalpha",) if channels in (2, 4) else None
        tifffile.imwrite(
            path, data[:, :, 0] if channels == 1 else data, photometric=photometric, extrasamples=extrasamples
        )
    elif channels == 1:
        Image.fromarray(data[:, :, 0]).save(path, format="PNG")  # uint16 (H, W) -> mode I;16
    else:
        # Pillow cannot write 16-bit colour PNG; pypng can.
        import png

        writer = png.Writer(
            data.shape[1], data.shape[0], greyscale=channels == 2, alpha=channels in (2, 4), bitdepth=16
        )
        with open(path, "wb") as f:
            writer.write(f, data.reshape(data.shape[0], -1))
    return path
