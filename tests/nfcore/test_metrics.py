"""nfcore.metrics on analytic shapes, point sets and images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from nfcore.metrics import chamfer, fit_residuals, fscore, mesh_metrics, psnr, ssim, volume_iou
from nfcore.open3d_import import open3d_available, open3d_problem


def sphere(radius, subdivisions=5):
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def test_identical_meshes():
    m = sphere(1.0, 4)
    out = mesh_metrics(m, m.copy(), n_samples=20_000, iou=False)
    assert out["chamfer_l1"] < 1e-12 and out["chamfer_l2"] < 1e-12
    assert out["fscore@0.01"] == 1.0 and out["fscore@0.005"] == 1.0
    assert out["normal_consistency"] == pytest.approx(1.0)
    assert out["iou"] is None
    assert out["normalisation"] == "gt_bbox_longest_side=1" and out["n_samples"] == 20_000


def test_concentric_spheres_known_distance():
    gt, recon = sphere(1.0), sphere(1.05)
    out = mesh_metrics(recon, gt, n_samples=50_000, thresholds=(0.02, 0.03), iou=False)
    expected = 0.05 / 2.0  # radius gap over the GT bbox's longest side (2)
    assert out["accuracy"] == pytest.approx(expected, rel=0.03)
    assert out["completeness"] == pytest.approx(expected, rel=0.03)
    assert out["chamfer_l1"] == pytest.approx(expected, rel=0.03)
    assert out["chamfer_l2"] == pytest.approx(expected**2, rel=0.06)
    assert out["normal_consistency"] > 0.99
    # 0.02 is below the gap: nothing matches; 0.03 is above: everything does.
    assert out["fscore@0.02"] < 0.01 and out["precision@0.02"] < 0.01
    assert out["fscore@0.03"] > 0.99 and out["recall@0.03"] > 0.99


def test_normalisation_is_by_gt_bbox():
    gt, recon = sphere(1.0, 4), sphere(1.05, 4)
    a = mesh_metrics(recon, gt, n_samples=20_000, iou=False)
    gt.apply_scale(10.0)
    recon.apply_scale(10.0)
    gt.apply_translation([100.0, -5.0, 3.0])
    recon.apply_translation([100.0, -5.0, 3.0])
    b = mesh_metrics(recon, gt, n_samples=20_000, iou=False)
    assert b["chamfer_l1"] == pytest.approx(a["chamfer_l1"], rel=1e-6)


def test_normal_consistency_ignores_orientation_and_sees_tilt():
    gt = sphere(1.0, 4)
    flipped = gt.copy()
    flipped.invert()
    assert mesh_metrics(flipped, gt, n_samples=10_000, iou=False)["normal_consistency"] == pytest.approx(1.0, abs=1e-3)
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    assert mesh_metrics(box, gt, n_samples=10_000, iou=False)["normal_consistency"] < 0.95


@pytest.mark.skipif(not open3d_available(), reason=f"volumetric IoU needs Open3D: {open3d_problem()}")
def test_iou_of_concentric_spheres():
    gt, recon = sphere(1.0, 4), sphere(0.9, 4)
    out = mesh_metrics(recon, gt, n_samples=10_000)  # both watertight: IoU computed by default
    assert out["iou"] == pytest.approx(0.9**3, abs=0.02)
    assert volume_iou(gt, gt.copy()) == 1.0


def test_iou_skipped_for_open_meshes():
    gt = sphere(1.0, 3)
    open_mesh = gt.copy()
    open_mesh.update_faces(np.arange(len(open_mesh.faces)) > 10)
    assert not open_mesh.is_watertight
    assert mesh_metrics(open_mesh, gt, n_samples=5000)["iou"] is None


def test_empty_mesh_rejected():
    with pytest.raises(ValueError, match="no surface"):
        mesh_metrics(trimesh.Trimesh(), sphere(1.0, 2))


def test_point_chamfer_and_fscore():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2000, 3))
    b = a + np.array([0.01, 0.0, 0.0])
    assert chamfer(a, a) == 0.0
    assert chamfer(a, b) <= 0.01 + 1e-12
    assert chamfer(a, b) > 0.005
    assert fscore(a, b, 0.0101) == 1.0
    far = a + 1.0
    assert fscore(far, a, 0.1) == 0.0


def test_psnr_of_known_mse():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 32, 3))
    assert psnr(x, x + 0.1) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(x, x + 0.1, data_range=2.0) == pytest.approx(20.0 + 20 * np.log10(2.0))
    assert psnr(torch.tensor(x), torch.tensor(x)) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, x[:10])


def test_ssim():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 32, 3))
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1)
    assert ssim(x, noisy) < 0.9
    gray = x[..., 0]
    assert ssim(gray, gray) == pytest.approx(1.0)
    assert ssim(x[:5, :5], x[:5, :5]) == pytest.approx(1.0)  # window shrinks for small images


def sphere_value_and_grad(radius):
    def fn(x):
        return x.norm(dim=1) - radius, x / x.norm(dim=1, keepdim=True)

    return fn


def test_fit_residuals_on_analytic_sphere():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(5000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = 0.5 * normals
    exact = fit_residuals(sphere_value_and_grad(0.5), points, normals, chunk=1000)
    assert exact["mean_abs_sdf"] < 1e-6 and exact["normal_agreement"] == pytest.approx(1.0, abs=1e-6)
    assert exact["n_points"] == 5000
    off = fit_residuals(sphere_value_and_grad(0.4), points, -normals)
    assert off["mean_abs_sdf"] == pytest.approx(0.1, abs=1e-5)
    assert off["median_abs_sdf"] == pytest.approx(0.1, abs=1e-5)
    assert off["normal_agreement"] == pytest.approx(-1.0, abs=1e-6)


def test_fit_residuals_accepts_numpy_outputs():
    fn = sphere_value_and_grad(0.5)
    rng = np.random.default_rng(2)
    n = rng.normal(size=(300, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = fit_residuals(lambda x: tuple(t.numpy() for t in fn(x)), 0.6 * n, n)
    assert out["mean_abs_sdf"] == pytest.approx(0.1, abs=1e-6) and out["normal_agreement"] == pytest.approx(1.0)


def test_fit_residuals_accepts_a_field_object():
    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.radius = torch.nn.Parameter(torch.tensor(0.3))

        def value_and_gradient(self, x, *, create_graph=True):
            x = x.requires_grad_(True)
            f = x.norm(dim=1) - self.radius
            (g,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph)
            return f, g

    rng = np.random.default_rng(1)
    n = rng.normal(size=(100, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = fit_residuals(Field(), 0.3 * n, n)
    assert out["mean_abs_sdf"] < 1e-6 and out["normal_agreement"] == pytest.approx(1.0, abs=1e-5)
