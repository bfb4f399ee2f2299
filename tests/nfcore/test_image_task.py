"""Image fitting: coordinates, the task protocol, and whole fits through nfcore.fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nfcore.errors import InputError
from nfcore.fit import fit
from nfcore.io.images import read_image, write_image
from nfcore.metrics import psnr
from nfcore.spec import MethodSpec, resolve
from nfcore.tasks.image import ImageTask, image_extent, pixel_centres


def _synthetic(h: int = 32, w: int = 32) -> np.ndarray:
    """(H, W, 3): a smooth colour gradient with a red disc."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = x / (w - 1), y / (h - 1)
    img = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    img[(x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.09] = [1.0, 0.2, 0.1]
    return img


def _config(steps: int = 200, **overrides):
    base = {
        "encoding": {"type": "identity"},
        "network": {"type": "siren", "hidden_features": 64, "hidden_layers": 2},
        "optimizer": {"type": "adam", "lr": 1e-3},
        "train": {"steps": steps, "progress_interval_s": 0},
        "image": {"full_batch": True},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return resolve(MethodSpec(task="image", preset="fast", overrides=base), "cpu")


# ---- coordinates and the task -------------------------------------------------------------


def test_pixel_centres_keep_aspect_ratio() -> None:
    assert image_extent(2, 4) == (1.0, 0.5)
    c = pixel_centres(2, 4)  # (8, 2): x = column, y = row
    assert c.shape == (8, 2)
    torch.testing.assert_close(c[:4, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(c[::4, 1], torch.tensor([-0.25, 0.25]))
    # Pixels are square in field space: equal spacing along both axes.
    assert float(c[1, 0] - c[0, 0]) == pytest.approx(float(c[4, 1] - c[0, 1]))


def test_upsampled_grid_subdivides_the_original_pixels() -> None:
    extent = image_extent(3, 5)
    coarse = pixel_centres(3, 5, extent).reshape(3, 5, 2)
    fine = pixel_centres(6, 10, extent).reshape(3, 2, 5, 2, 2)  # (rows, 2, cols, 2, xy)
    torch.testing.assert_close(fine.mean(dim=(1, 3)), coarse)


def test_strip_rendering_matches_the_full_grid() -> None:
    full = pixel_centres(7, 3)
    strip = pixel_centres(7, 3, rows=(2, 5))
    torch.testing.assert_close(strip, full[6:15])


def test_task_batches_and_loss() -> None:
    image = torch.rand(8, 6, 4)
    task = ImageTask(image, batch_size=10)
    g = torch.Generator().manual_seed(0)
    batch = task.sample(0, g)
    assert batch["coords"].shape == (10, 2) and batch["colors"].shape == (10, 4)
    # Each sampled colour is the colour of the pixel at that coordinate.
    full = ImageTask(image, batch_size=10, full_batch=True).sample(0, g)
    assert full["coords"].shape == (48, 2)
    torch.testing.assert_close(full["colors"].reshape(8, 6, 4), image)

    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = torch.nn.Parameter(torch.zeros(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c.expand(x.shape[0], 4)

    loss, terms = task.loss(Constant(), full, 0.0, g)
    assert float(loss.detach()) == pytest.approx(float((image**2).mean()))
    assert terms["mse"] == pytest.approx(float(loss.detach()))
    # With preconditioning the coordinates move, not the colours: a constant field sees the same loss.
    loss_sp, _ = task.loss(Constant(), full, 0.05, g)
    assert float(loss_sp.detach()) == pytest.approx(float(loss.detach()))


def test_bad_image_tensor_is_rejected() -> None:
    with pytest.raises(InputError, match="C in 1..4"):
        ImageTask(torch.rand(4, 4, 5), batch_size=4)


# ---- whole fits --------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["fast", "balanced"])
def test_the_image_presets_fit_a_photo_like_image_quickly(tmp_path: Path, preset: str) -> None:
    # The presets' hash grid must reach a usable fit within their own step budget (SIREN needed
    # thousands of slow steps); a 96x128 image with edges, a gradient and noise-like texture.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128] / 96.0
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(12 * x) * np.cos(9 * y)], axis=-1)
    img[(x - 0.6) ** 2 + (y - 0.5) ** 2 < 0.05] = [0.9, 0.3, 0.1]
    img += rng.normal(0, 0.01, img.shape)
    src = write_image(np.clip(img, 0, 1).astype(np.float32), tmp_path / "photo.png")
    config = resolve(MethodSpec(task="image", preset=preset), "cpu")
    assert config.encoding.type == "hashgrid"
    result = fit(src, config, tmp_path / "out", device="cpu")
    assert result.metrics["psnr"] > 30.0, result.metrics["psnr"]



def test_the_psnr_curve_of_a_large_image_measures_a_fixed_pixel_subset() -> None:
    # Intermediate points use CURVE_PIXELS fixed pixels (cheap); the estimate must stay close to the
    # whole image's PSNR, and the same pixels must be used every time.
    from nfcore.tasks.image import CURVE_PIXELS

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:320] / 256.0
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(20 * x) * np.cos(15 * y)], axis=-1) + rng.normal(0, 0.05, (256, 320, 3))
    task = ImageTask(torch.as_tensor(np.clip(img, 0, 1), dtype=torch.float32), batch_size=4096)
    assert task.curve_pixels is not None and task.curve_pixels.shape == (CURVE_PIXELS,)
    assert len(torch.unique(task.curve_pixels)) == CURVE_PIXELS
    config = resolve(MethodSpec(task="image", preset="fast"), "cpu")
    field = task.build_field(config, torch.device("cpu"), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for step in range(30):
        loss, _ = task.loss(field, task.sample(step, gen), 0.0, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    subset, whole = task.psnr(field, pixels=task.curve_pixels), task.psnr(field)
    assert subset == pytest.approx(whole, abs=0.2), (subset, whole)
    assert task.psnr(field, pixels=task.curve_pixels) == subset
    assert ImageTask(torch.zeros(100, 100, 1), batch_size=64).curve_pixels is None  # small images: every pixel

def test_fit_round_trip_reaches_psnr(tmp_path: Path) -> None:
    src = write_image(_synthetic(), tmp_path / "in.png")
    phases: list[str] = []
    fractions: list[float] = []

    def callback(p) -> None:
        phases.append(p.phase)
        fractions.append(p.fraction)

    config = _config(200, image={"full_batch": True, "output_scale": 2.0})
    result = fit(src, config, tmp_path / "out", device="cpu", callback=callback)
    m = result.metrics
    assert m["psnr"] > 30.0, m["psnr"]
    assert 0.8 < m["ssim"] <= 1.0
    assert m["steps"] == 200
    for name in ("fitted.png", "fitted_x2.png", "psnr_curve.json", "psnr_curve.png", "metrics.json", "config.json"):
        assert result.artifacts[name].is_file(), name

    fitted = read_image(result.artifacts["fitted.png"])
    assert fitted.shape == (32, 32, 3)
    assert psnr(fitted, read_image(src)) == pytest.approx(m["psnr"], abs=1.0)  # 8-bit rounding of the output only
    up = read_image(result.artifacts["fitted_x2.png"])
    assert up.shape == (64, 64, 3)
    # The 2x rendering, box-filtered back, agrees with the original-size rendering.
    assert psnr(up.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3)), fitted) > 25.0

    curve = json.loads(result.artifacts["psnr_curve.json"].read_text())
    assert curve["steps"][0] == 0 and curve["steps"][-1] == 200
    assert curve["psnr"][-1] > curve["psnr"][0] + 10
    assert curve["psnr"][-1] == pytest.approx(m["psnr_train_resolution"])
    with Image.open(result.artifacts["psnr_curve.png"]) as im:
        assert im.size == (640, 400)
    saved = json.loads(result.artifacts["config.json"].read_text())
    assert saved["task"] == "image" and saved["image"]["output_scale"] == 2.0

    assert {"load", "train", "extract", "evaluate", "write"} <= set(phases)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_fit_keeps_channels_and_16_bit_depth(tmp_path: Path) -> None:
    grey = _synthetic(16, 24)[:, :, :1]
    src = write_image(grey, tmp_path / "grey16.png", bit_depth=16)
    result = fit(src, _config(60), tmp_path / "out", device="cpu")
    with Image.open(result.artifacts["fitted.png"]) as im:
        assert im.mode == "I;16" and im.size == (24, 16)
    rgba = np.concatenate([_synthetic(12, 12), np.full((12, 12, 1), 0.5, np.float32)], axis=-1)
    src = write_image(rgba, tmp_path / "rgba.png")
    result = fit(src, _config(30), tmp_path / "out2", device="cpu")
    with Image.open(result.artifacts["fitted.png"]) as im:
        assert im.mode == "RGBA" and im.size == (12, 12)


def test_minibatch_esgd_and_preconditioning_improve_the_fit(tmp_path: Path) -> None:
    src = write_image(_synthetic(24, 24), tmp_path / "in.png")
    config = _config(
        120,
        optimizer={"type": "esgd", "lr": 0.05},
        image={"full_batch": False},
        train={"steps": 120, "batch_size": 256, "progress_interval_s": 0},
        precondition={"enabled": True, "initial_scale": 0.01, "start": 0.3, "end": 0.6},
    )
    result = fit(src, config, tmp_path / "out", device="cpu")
    curve = json.loads(result.artifacts["psnr_curve.json"].read_text())
    assert result.metrics["optimizer"] == "esgd" and result.metrics["precondition"] is True
    assert curve["psnr"][-1] > curve["psnr"][0] + 5


def test_large_images_train_downsampled_and_render_full_size(tmp_path: Path) -> None:
    src = write_image(_synthetic(40, 80), tmp_path / "wide.png")
    result = fit(src, _config(20, image={"max_side": 16}), tmp_path / "out", device="cpu")
    assert (result.metrics["train_width"], result.metrics["train_height"]) == (16, 8)
    assert read_image(result.artifacts["fitted.png"]).shape == (40, 80, 3)


def test_fit_rejects_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        fit(tmp_path / "bad.png", _config(5), tmp_path / "out", device="cpu")
    src = write_image(np.zeros((1200, 1200, 1), np.float32), tmp_path / "big.png")
    with pytest.raises(InputError, match="output_scale"):
        fit(src, _config(5, image={"output_scale": 8.0}), tmp_path / "out", device="cpu")
