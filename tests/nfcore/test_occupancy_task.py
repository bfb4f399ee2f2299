"""Occupancy: labelling, the BCE task, and a whole fit on a sphere through nfcore.fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from nfcore.errors import InputError
from nfcore.fit import fit
from nfcore.open3d_import import open3d_available, open3d_problem
from nfcore.spec import MethodSpec, resolve
from nfcore.tasks.occupancy import OccupancyTask, label_inside, occupancy_iou, sample_occupancy_points

pytestmark = pytest.mark.skipif(
    not open3d_available(), reason=f"the occupancy task labels points with Open3D's ray test: {open3d_problem()}"
)

CENTER = np.array([5.0, -2.0, 1.0])
RADIUS = 2.0


def _sphere() -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    mesh.apply_translation(CENTER)
    return mesh


def _config(steps: int = 250):
    return resolve(MethodSpec(task="occupancy", preset="fast", overrides={
            "encoding": {"type": "identity"},
            "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2, "activation": "relu"},
            "optimizer": {"type": "adam", "lr": 3e-3},
            "train": {"steps": steps, "batch_size": 2048, "progress_interval_s": 0},
            "occupancy": {"n_samples": 20_000},
            "extraction": {"resolution": 48},
        }), "cpu")


def test_labels_match_the_analytic_sphere() -> None:
    mesh = _sphere()
    rng = np.random.default_rng(0)
    points = CENTER + rng.uniform(-1.5 * RADIUS, 1.5 * RADIUS, size=(20_000, 3))
    r = np.linalg.norm(points - CENTER, axis=1)
    inside = label_inside(mesh, points)
    # The icosphere is inscribed in the true sphere: skip the thin shell where they differ.
    clear = np.abs(r - RADIUS) > 0.02 * RADIUS
    assert np.array_equal(inside[clear], r[clear] < RADIUS)


def test_samples_are_in_the_cube_and_concentrated_near_the_surface() -> None:
    unit = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    points = sample_occupancy_points(unit, 10_000, near_surface_fraction=0.5, near_surface_sigma=0.02, rng=np.random.default_rng(1))
    assert points.shape == (10_000, 3) and points.dtype == np.float32
    assert np.abs(points).max() <= 1.0
    near = np.abs(np.linalg.norm(points, axis=1) - 0.8) < 0.06
    assert 0.5 <= near.mean() < 0.6  # the near half, plus the few uniform points that land in the shell


def test_task_loss_is_bce_on_logits() -> None:
    points = torch.rand(100, 3) * 2 - 1
    inside = (points.norm(dim=1) < 0.5).float()
    task = OccupancyTask(points, inside, batch_size=32)
    g = torch.Generator().manual_seed(0)
    batch = task.sample(0, g)
    assert batch["points"].shape == (32, 3) and batch["inside"].shape == (32,)

    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1), 2.0)

    loss, terms = task.loss(Constant(), batch, 0.0, g)
    p = torch.sigmoid(torch.tensor(2.0))
    expected = -(batch["inside"] * torch.log(p) + (1 - batch["inside"]) * torch.log(1 - p)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert terms["bce"] == pytest.approx(float(loss))


def test_iou_of_boolean_sets() -> None:
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert occupancy_iou(a, b) == pytest.approx(1 / 3)
    assert occupancy_iou(a, a) == 1.0


def test_fit_sphere_reaches_iou_in_the_input_frame(tmp_path: Path) -> None:
    src = tmp_path / "sphere.ply"
    _sphere().export(src)
    result = fit(src, _config(), tmp_path / "out", device="cpu")
    m = result.metrics
    assert m["iou"] > 0.9, m["iou"]
    assert m["iou_near_surface"] > 0.6, m["iou_near_surface"]
    assert m["mesh"]["chamfer_l1"] < 0.02
    # The mesh is back in the input frame: centred on CENTER with radius RADIUS.
    recon = trimesh.load(result.artifacts["mesh.ply"], force="mesh")
    np.testing.assert_allclose(recon.bounds.mean(axis=0), CENTER, atol=0.1)
    r = np.linalg.norm(recon.vertices - CENTER, axis=1)
    assert abs(np.median(r) - RADIUS) < 0.1
    # Outward faces: positive volume.
    assert recon.volume > 0
    saved = json.loads(result.artifacts["metrics.json"].read_text())
    assert saved["iou"] == pytest.approx(m["iou"])
    assert json.loads(result.artifacts["config.json"].read_text())["task"] == "occupancy"


def test_open_mesh_is_rejected(tmp_path: Path) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    open_mesh = trimesh.Trimesh(mesh.vertices, mesh.faces[:-10])
    open_mesh.export(tmp_path / "open.ply")
    with pytest.raises(InputError, match="watertight"):
        fit(tmp_path / "open.ply", _config(5), tmp_path / "out", device="cpu")
