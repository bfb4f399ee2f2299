"""2D image fitting: a field from pixel coordinates to colour, trained with MSE.

Coordinates are pixel centres. The longer image side spans [-1, 1] and the shorter one
[-a, a] with a = short / long, so pixels are square in field space and the aspect ratio is kept.
Rendering at any other size samples the same extent, which is what makes upsampling (a
continuous field queried between the training pixels) consistent with the original.

Stochastic preconditioning perturbs the query coordinates (never the colours), as for SDFs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from nfcore.config import MethodConfig
from nfcore.errors import InputError
from nfcore.field import NeuralField
from nfcore.io.images import DEFAULT_MAX_PIXELS, probe_image, read_image, write_image
from nfcore.metrics import psnr, ssim
from nfcore.tasks.base import FitTask, PhaseProgress

__all__ = [
    "ImageTask",
    "Rendering",
    "PsnrCurve",
    "image_extent",
    "pixel_centres",
    "render_image",
    "draw_psnr_curve",
]

_RENDER_CHUNK = 65_536


def image_extent(height: int, width: int) -> tuple[float, float]:
    """Half-extents (ax, ay) in field space: the longer side maps to [-1, 1]."""
    longest = max(height, width)
    return width / longest, height / longest


def pixel_centres(
    height: int,
    width: int,
    extent: tuple[float, float] | None = None,
    *,
    rows: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(H * W, 2) pixel-centre coordinates (x = column, y = row downwards), row-major.

    Args:
        extent: (ax, ay) half-extents; None = `image_extent(height, width)`. Pass the original
            image's extent to render it at another size.
        rows: optional [start, stop) row range (for rendering in strips); then (rows * W, 2).
    """
    ax, ay = extent if extent is not None else image_extent(height, width)
    r0, r1 = rows if rows is not None else (0, height)
    xs = ((torch.arange(width, device=device, dtype=torch.float32) * 2 + 1) / width - 1) * ax  # (W,)
    ys = ((torch.arange(r0, r1, device=device, dtype=torch.float32) * 2 + 1) / height - 1) * ay  # (R,)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (R, W) each
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


@dataclasses.dataclass
class Rendering:
    """What an image fit produces: the field rendered at the original size and at `scale` times it."""

    fitted: np.ndarray  # (H, W, C) in [0, 1]
    upsampled: np.ndarray | None  # (round(H * scale), round(W * scale), C); None when scale == 1
    scale: float


CURVE_PIXELS = 32_768
"""Pixels the PSNR curve's intermediate points are measured on: a fixed random subset (the last point
uses every pixel). Rendering all of a 512x512 image at 50 points took twice the training time on
2 CPU cores (11 s against 5.5 s, measured); 32k pixels estimate the MSE within about 1-2%, ~0.1 dB."""


@dataclasses.dataclass
class PsnrCurve:
    """PSNR at the training resolution every `every` steps of `total`, from the untrained field (step 0) on.

    Intermediate points are measured on `CURVE_PIXELS` fixed pixels of larger images; the last on all.
    """

    every: int
    total: int
    steps: list[int] = dataclasses.field(default_factory=list)
    psnr: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0  # spent measuring, which is not training


class ImageTask(FitTask):
    """Pixel batches (all pixels, or `batch_size` random ones) and the MSE loss.

    Args:
        image: (H, W, C) float32 colours in [0, 1], on the training device.
        batch_size: pixels per step when not full batch.
        full_batch: use every pixel each step (also when batch_size >= H * W).
        extent: field-space half-extents of the image (see `image_extent`).
        boundary: how preconditioning noise is kept in the square.
        original: (H0, W0, C) the input at full size when `image` is a downsampled copy; None = `image`.
        bit_depth: bits per channel the outputs are written with (the input's).
    """

    name = "image"
    in_dim = 2

    def __init__(
        self,
        image: torch.Tensor,
        *,
        batch_size: int,
        full_batch: bool = False,
        extent: tuple[float, float] | None = None,
        boundary: str = "reflect",
        original: np.ndarray | None = None,
        bit_depth: int = 8,
    ):
        if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
            raise InputError(f"image must be (H, W, C) with C in 1..4, got {tuple(image.shape)}")
        height, width, channels = image.shape
        self.height, self.width, self.out_dim = height, width, channels
        self.extent = extent if extent is not None else image_extent(height, width)
        self.coords = pixel_centres(height, width, self.extent, device=image.device)  # (H*W, 2)
        self.colors = image.reshape(-1, channels)  # (H*W, C)
        self.batch_size = batch_size
        self.full_batch = full_batch or batch_size >= height * width
        self.boundary = boundary
        self.original = original if original is not None else image.cpu().numpy()
        self.bit_depth = bit_depth
        self.curve: PsnrCurve | None = None  # started by build_field, extended by on_step
        self.device = image.device
        self.curve_pixels: torch.Tensor | None = None  # (CURVE_PIXELS,) pixel indices; None = all
        if height * width > CURVE_PIXELS:
            fixed = torch.Generator().manual_seed(0)  # the same pixels at every point of the curve
            self.curve_pixels = torch.randperm(height * width, generator=fixed)[:CURVE_PIXELS].to(image.device)

    @classmethod
    def load(cls, input_path: Path, config: MethodConfig, device: torch.device, progress: PhaseProgress) -> ImageTask:
        """Read the image; one larger than `image.max_side` is trained on a downsampled copy."""
        from skimage.transform import resize

        icfg = config.image
        bit_depth = probe_image(input_path).bit_depth
        image = read_image(input_path)  # (H, W, C) in [0, 1]
        height, width, _ = image.shape
        out_h, out_w = _scaled_size(height, width, icfg.output_scale)
        if out_h * out_w > DEFAULT_MAX_PIXELS:  # refused now rather than after training
            raise InputError(
                f"image.output_scale {icfg.output_scale:g} would render {out_w}x{out_h} pixels, "
                f"more than {DEFAULT_MAX_PIXELS}; use a smaller scale"
            )
        factor = min(1.0, icfg.max_side / max(height, width))
        train_image = image
        if factor < 1.0:
            train_size = max(1, round(height * factor)), max(1, round(width * factor))
            train_image = resize(image, train_size, order=1, anti_aliasing=True).astype(np.float32)
        return cls(
            torch.as_tensor(train_image, device=device),
            batch_size=config.train.batch_size,
            full_batch=icfg.full_batch,
            extent=image_extent(height, width),  # the full image's: the same field space at any size
            boundary=config.precondition.boundary,
            original=image,
            bit_depth=bit_depth,
        )

    def build_field(self, config: MethodConfig, device: torch.device, generator: torch.Generator) -> NeuralField:
        """The field, and the PSNR curve started at its untrained state."""
        field = NeuralField(config.encoding, config.network, 2, self.out_dim, device=device, generator=generator)
        total = config.train.steps
        self.curve = PsnrCurve(every=config.image.psnr_every or max(1, total // 50), total=total)
        self.curve.steps.append(0)
        self.curve.psnr.append(self.psnr(field, pixels=self.curve_pixels))
        return field

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.full_batch:
            return {"coords": self.coords, "colors": self.colors}
        idx = torch.randint(0, self.coords.shape[0], (self.batch_size,), device=self.device, generator=generator)
        return {"coords": self.coords[idx], "colors": self.colors[idx]}

    def loss(self, field, batch, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.perturbed(batch["coords"], alpha, generator)  # (B, 2)
        mse = torch.mean((field(x) - batch["colors"]) ** 2)
        return mse, {"mse": float(mse.detach())}

    def on_step(self, step: int, field: torch.nn.Module) -> None:
        curve = self.curve
        done = step + 1
        if done % curve.every == 0 or done == curve.total:
            t0 = time.perf_counter()
            curve.steps.append(done)
            curve.psnr.append(self.psnr(field, pixels=None if done == curve.total else self.curve_pixels))
            curve.seconds += time.perf_counter() - t0

    @torch.no_grad()
    def psnr(self, field, pixels: torch.Tensor | None = None) -> float:
        """PSNR (dB) of the field's clipped rendering against the training image, at `pixels` (flat indices) or all."""
        if pixels is None:
            pred = render_image(field, self.height, self.width, self.extent, clip=True).reshape(-1, self.out_dim)
            mse = float(np.mean((pred - self.colors.cpu().numpy()) ** 2))
        else:
            pred = field(self.coords[pixels]).float().clamp(0.0, 1.0)  # (P, C)
            mse = float(torch.mean((pred - self.colors[pixels]) ** 2))
        return math.inf if mse == 0 else -10.0 * math.log10(mse)

    def extract(self, field: torch.nn.Module, config: MethodConfig, progress: PhaseProgress) -> Rendering:
        height, width = self.original.shape[:2]
        scale = config.image.output_scale
        progress(0.0, f"rendering {width}x{height}")
        fitted = render_image(field, height, width, self.extent)  # (H, W, C), clipped
        upsampled = None
        if scale != 1:
            out_h, out_w = _scaled_size(height, width, scale)
            progress(0.5, f"rendering {out_w}x{out_h} (x{scale:g})")
            upsampled = render_image(field, out_h, out_w, self.extent)
        return Rendering(fitted, upsampled, scale)

    def evaluate(self, field, rendering: Rendering, config: MethodConfig, gt_path: Path | None) -> dict:
        """PSNR and SSIM of the original-size rendering against the input, and the sizes involved."""
        height, width, channels = self.original.shape
        fitted = rendering.fitted
        out_h, out_w = _scaled_size(height, width, rendering.scale)
        return {
            "psnr": psnr(fitted, self.original),
            "ssim": ssim(fitted, self.original) if min(height, width) >= 3 else None,
            "psnr_train_resolution": self.curve.psnr[-1],
            "curve_seconds": self.curve.seconds,
            "width": width,
            "height": height,
            "channels": channels,
            "bit_depth": self.bit_depth,
            "train_width": self.width,
            "train_height": self.height,
            "output_scale": rendering.scale,
            "output_size": [out_w, out_h],
        }

    def write(self, rendering: Rendering, out_dir: Path, config: MethodConfig) -> dict[str, Path]:
        """`fitted.png` (the input's size, channels and bit depth), `fitted_x{scale}.png`, the PSNR curve."""
        artifacts = {"fitted.png": write_image(rendering.fitted, out_dir / "fitted.png", bit_depth=self.bit_depth)}
        if rendering.upsampled is not None:
            name = f"fitted_x{rendering.scale:g}.png"
            artifacts[name] = write_image(rendering.upsampled, out_dir / name, bit_depth=self.bit_depth)
        curve = self.curve
        record = {"steps": curve.steps, "psnr": curve.psnr, "every": curve.every, "resolution": [self.width, self.height]}
        (out_dir / "psnr_curve.json").write_text(json.dumps(record, indent=2))
        artifacts["psnr_curve.json"] = out_dir / "psnr_curve.json"
        artifacts["psnr_curve.png"] = draw_psnr_curve(curve.steps, curve.psnr, out_dir / "psnr_curve.png")
        return artifacts


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(rows, columns) of an image `scale` times the size of a height x width one."""
    return max(1, round(height * scale)), max(1, round(width * scale))


@torch.no_grad()
def render_image(
    field,
    height: int,
    width: int,
    extent: tuple[float, float] | None = None,
    *,
    clip: bool = True,
    chunk: int = _RENDER_CHUNK,
) -> np.ndarray:
    """Evaluate the field at the pixel centres of a height x width image: (H, W, C) float32."""
    device = next(field.parameters()).device
    rows_per_chunk = max(1, chunk // width)
    strips = []
    for r0 in range(0, height, rows_per_chunk):
        r1 = min(height, r0 + rows_per_chunk)
        x = pixel_centres(height, width, extent, rows=(r0, r1), device=device)  # (R*W, 2)
        strips.append(field(x).float().cpu().numpy().reshape(r1 - r0, width, -1))
    out = np.concatenate(strips, axis=0)
    return np.clip(out, 0.0, 1.0) if clip else out


def draw_psnr_curve(steps: list[int], psnrs: list[float], path: str | Path, *, size: tuple[int, int] = (640, 400)) -> Path:
    """A PNG line plot of PSNR (dB) against step, drawn with Pillow (no matplotlib dependency)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 64, 20, 30, 48
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    finite = [(s, p) for s, p in zip(steps, psnrs, strict=True) if math.isfinite(p)]
    x0, x1, y0, y1 = left, width - right, height - bottom, top  # plot box (y grows downwards)
    draw.text((left, 8), "PSNR (dB) per step", fill="black", font=font)
    if finite:
        s_lo, s_hi = min(s for s, _ in finite), max(s for s, _ in finite)
        p_lo, p_hi = min(p for _, p in finite), max(p for _, p in finite)
        p_lo, p_hi = math.floor(p_lo), math.ceil(p_hi + 1e-9)
        s_hi = s_hi if s_hi > s_lo else s_lo + 1
        p_hi = p_hi if p_hi > p_lo else p_lo + 1

        def xy(s: float, p: float) -> tuple[float, float]:
            return x0 + (s - s_lo) / (s_hi - s_lo) * (x1 - x0), y0 - (p - p_lo) / (p_hi - p_lo) * (y0 - y1)

        for i in range(5):  # grid lines with labels
            p = p_lo + (p_hi - p_lo) * i / 4
            _, y = xy(s_lo, p)
            draw.line([x0, y, x1, y], fill=(225, 225, 225))
            draw.text((6, y - 6), f"{p:.1f}", fill="black", font=font)
            s = s_lo + (s_hi - s_lo) * i / 4
            x, _ = xy(s, p_lo)
            draw.text((x - 10, y0 + 8), f"{s:.0f}", fill="black", font=font)
        draw.text(((x0 + x1) // 2 - 12, height - 18), "step", fill="black", font=font)
        points = [xy(s, p) for s, p in finite]
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
    draw.rectangle([x0, y1, x1, y0], outline="black")  # last, over the grid lines
    path = Path(path)
    img.save(path)
    return path
