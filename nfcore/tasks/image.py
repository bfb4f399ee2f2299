"""2D image fitting: a field from pixel coordinates to colour, trained with MSE.

Coordinates are pixel centres. The longer image side spans [-1, 1] and the shorter one
[-a, a] with a = short / long, so pixels are square in field space and the aspect ratio is kept.
Rendering at any other size samples the same extent, which is what makes upsampling (a
continuous field queried between the training pixels) consistent with the original.

Stochastic preconditioning perturbs the query coordinates (never the colours), as for SDFs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from nfcore.config import MethodConfig
from nfcore.errors import InputError
from nfcore.precondition import perturb

__all__ = [
    "ImageTask",
    "image_extent",
    "pixel_centres",
    "render_image",
    "draw_psnr_curve",
    "fit_image",
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


class ImageTask:
    """Pixel batches (all pixels, or `batch_size` random ones) and the MSE loss.

    Args:
        image: (H, W, C) float32 colours in [0, 1], on the training device.
        batch_size: pixels per step when not full batch.
        full_batch: use every pixel each step (also when batch_size >= H * W).
        extent: field-space half-extents of the image (see `image_extent`).
        boundary: how preconditioning noise is kept in the square.
    """

    in_dim = 2

    def __init__(
        self,
        image: torch.Tensor,
        *,
        batch_size: int,
        full_batch: bool = False,
        extent: tuple[float, float] | None = None,
        boundary: str = "reflect",
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

    @property
    def device(self) -> torch.device:
        return self.coords.device

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.full_batch:
            return {"coords": self.coords, "colors": self.colors}
        idx = torch.randint(0, self.coords.shape[0], (self.batch_size,), device=self.device, generator=generator)
        return {"coords": self.coords[idx], "colors": self.colors[idx]}

    def loss(self, field, batch, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["coords"]  # (B, 2)
        if alpha > 0:
            x = perturb(x, alpha, boundary=self.boundary, generator=generator)
        mse = torch.mean((field(x) - batch["colors"]) ** 2)
        return mse, {"mse": float(mse.detach())}

    def needs_create_graph(self) -> bool:
        return False

    @torch.no_grad()
    def psnr(self, field) -> float:
        """PSNR (dB) of the field's clipped rendering against the training image."""
        pred = render_image(field, self.height, self.width, self.extent, clip=True)
        mse = float(np.mean((pred.reshape(-1, self.out_dim) - self.colors.cpu().numpy()) ** 2))
        return math.inf if mse == 0 else -10.0 * math.log10(mse)


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


def _scaled_name(scale: float) -> str:
    return "fitted.png" if scale == 1 else f"fitted_x{scale:g}.png"


def fit_image(
    input_path: str | Path,
    config: MethodConfig,
    out_dir: str | Path,
    *,
    device=None,
    callback=None,
):
    """Read an image, fit a 2D field, render it at the original and the requested scale, write artifacts.

    Writes `fitted.png` (original size, same channels and bit depth), `fitted_x{scale}.png` when
    `config.image.output_scale` != 1, `psnr_curve.json`, `psnr_curve.png`, `metrics.json`, `config.json`.
    """
    from skimage.transform import resize

    from nfcore.device import resolve_device
    from nfcore.field import NeuralField
    from nfcore.fit import FitResult
    from nfcore.io.images import DEFAULT_MAX_PIXELS, probe_image, read_image, write_image
    from nfcore.metrics import psnr, ssim
    from nfcore.progress import Reporter
    from nfcore.train import train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device if device is not None else config.device)
    reporter = Reporter(callback, config.train.progress_interval_s)
    icfg = config.image
    input_path = Path(input_path)
    reporter.report("load", 0.0, force=True, message=f"reading {input_path.name}")

    header = probe_image(input_path)
    image = read_image(input_path)  # (H, W, C) in [0, 1]
    height, width, channels = image.shape
    scale = icfg.output_scale
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    if out_h * out_w > DEFAULT_MAX_PIXELS:
        raise InputError(
            f"image.output_scale {scale:g} would render {out_w}x{out_h} pixels, more than {DEFAULT_MAX_PIXELS}; use a smaller scale"
        )
    extent = image_extent(height, width)
    # Large inputs are fitted at max_side; the field is still rendered at full size afterwards.
    factor = min(1.0, icfg.max_side / max(height, width))
    if factor < 1.0:
        train_h, train_w = max(1, round(height * factor)), max(1, round(width * factor))
        train_image = resize(image, (train_h, train_w), order=1, anti_aliasing=True).astype(np.float32)
    else:
        train_h, train_w, train_image = height, width, image

    task = ImageTask(
        torch.as_tensor(train_image, device=device),
        batch_size=config.train.batch_size,
        full_batch=icfg.full_batch,
        extent=extent,
        boundary=config.precondition.boundary,
    )
    init_generator = torch.Generator().manual_seed(config.train.seed)
    field = NeuralField(config.encoding, config.network, 2, channels, device=device, generator=init_generator)
    generator = torch.Generator(device=device).manual_seed(config.train.seed)

    total = config.train.steps
    every = icfg.psnr_every or max(1, total // 50)
    curve_steps: list[int] = [0]
    curve_psnr: list[float] = [task.psnr(field)]
    eval_seconds = 0.0

    def on_step(step: int, field_) -> None:
        nonlocal eval_seconds
        done = step + 1
        if done % every == 0 or done == total:
            t0 = time.perf_counter()
            curve_steps.append(done)
            curve_psnr.append(task.psnr(field_))
            eval_seconds += time.perf_counter() - t0

    reporter.report("train", 0.05, force=True, step=0, total_steps=total, message="training")
    result = train(
        field, task, config, device=device, generator=generator, reporter=reporter, phase_span=(0.05, 0.85), on_step=on_step
    )

    reporter.report("extract", 0.85, force=True, message=f"rendering {width}x{height}")
    fitted = render_image(field, height, width, extent)  # (H, W, C), clipped
    upsampled = None
    if scale != 1:
        reporter.report("extract", 0.9, force=True, message=f"rendering {out_w}x{out_h} (x{scale:g})")
        upsampled = render_image(field, out_h, out_w, extent)

    reporter.report("evaluate", 0.95, force=True, message="PSNR and SSIM")
    metrics: dict = {
        "task": "image",
        "psnr": psnr(fitted, image),
        "ssim": ssim(fitted, image) if min(height, width) >= 3 else None,
        "psnr_train_resolution": curve_psnr[-1],
        "steps": result.steps,
        "train_seconds": max(0.0, result.seconds - eval_seconds),
        "curve_seconds": eval_seconds,
        "samples_per_second": result.samples_per_second,
        "final_loss": result.final_loss,
        "width": width,
        "height": height,
        "channels": channels,
        "bit_depth": header.bit_depth,
        "train_width": train_w,
        "train_height": train_h,
        "output_scale": scale,
        "output_size": [out_w, out_h],
        "device": str(device),
        "network": config.network.type,
        "encoding": config.encoding.type,
        "optimizer": config.optimizer.type,
        "precondition": config.precondition_enabled(),
    }

    reporter.report("write", 0.97, force=True, message="writing artifacts")
    artifacts: dict[str, Path] = {}
    artifacts["fitted.png"] = write_image(fitted, out_dir / "fitted.png", bit_depth=header.bit_depth)
    if upsampled is not None:
        name = _scaled_name(scale)
        artifacts[name] = write_image(upsampled, out_dir / name, bit_depth=header.bit_depth)
    curve = {"steps": curve_steps, "psnr": curve_psnr, "every": every, "resolution": [train_w, train_h]}
    (out_dir / "psnr_curve.json").write_text(json.dumps(curve, indent=2))
    artifacts["psnr_curve.json"] = out_dir / "psnr_curve.json"
    artifacts["psnr_curve.png"] = draw_psnr_curve(curve_steps, curve_psnr, out_dir / "psnr_curve.png")
    metrics["seconds"] = reporter.elapsed()
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2))
    artifacts["metrics.json"] = out_dir / "metrics.json"
    artifacts["config.json"] = out_dir / "config.json"
    reporter.report("write", 1.0, force=True, message="done")
    return FitResult(artifacts=artifacts, metrics=metrics, config=config, seconds=reporter.elapsed(), steps=result.steps)
