"""Preparing a cloud for the sdf fit: outliers removed, flipped normals repaired, missing normals oriented."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from nfcore.fit import fit
from nfcore.io import read_point_cloud
from nfcore.spec import MethodSpec, resolve


def _torus(n: int, seed: int = 0):
    mesh = trimesh.creation.torus(0.6, 0.25, major_sections=64, minor_sections=32)
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return mesh, np.asarray(points), np.asarray(mesh.face_normals)[faces]


def _wrong(normals: np.ndarray, truth: np.ndarray) -> float:
    return float((np.einsum("ij,ij->i", normals, truth) < 0).mean())


def test_flipped_given_normals_are_repaired_when_there_are_many(tmp_path):
    _, points, normals = _torus(8000)
    rng = np.random.default_rng(1)
    flipped = normals.copy()
    flipped[rng.random(len(normals)) < 0.1] *= -1
    np.savetxt(tmp_path / "flipped.xyz", np.c_[points, flipped])
    np.savetxt(tmp_path / "good.xyz", np.c_[points, normals])

    cloud = read_point_cloud(tmp_path / "flipped.xyz", verify_normals="on")
    assert cloud.normal_check["repaired"] and not cloud.normal_check["reliable"]
    assert cloud.normal_check["flipped_fraction"] == pytest.approx(0.1, rel=0.2)
    assert _wrong(cloud.normals, normals) < 0.01
    assert any("re-oriented" in note for note in cloud.notes)

    good = read_point_cloud(tmp_path / "good.xyz", verify_normals="on")
    assert good.normal_check["reliable"] and not good.normal_check["repaired"]
    np.testing.assert_array_equal(good.normals, normals.astype(np.float32))  # correct normals are kept as given

    unchecked = read_point_cloud(tmp_path / "flipped.xyz", verify_normals="off")
    assert unchecked.normal_check is None and _wrong(unchecked.normals, normals) > 0.05


def test_outliers_are_removed_before_normals_are_estimated(tmp_path):
    _, points, normals = _torus(8000, seed=2)
    rng = np.random.default_rng(3)
    outliers = rng.uniform(-1.0, 1.0, size=(400, 3))
    np.savetxt(tmp_path / "scan.xyz", np.r_[points, outliers])  # no normals: they are estimated

    cloud = read_point_cloud(tmp_path / "scan.xyz", outliers="auto")
    assert cloud.outlier_fraction == pytest.approx(400 / 8400, rel=0.3)
    assert 0.8 * 400 <= cloud.outliers_removed <= 1.2 * 400
    assert cloud.normals_estimated
    mesh = _torus(10)[0]
    _, dist, faces = mesh.nearest.on_surface(cloud.points)
    assert (dist < 0.02).mean() > 0.99  # what stays is the surface
    # ... and the normals estimated from it point the right way (outward), unbent by the outliers.
    assert _wrong(cloud.normals, mesh.face_normals[faces]) < 0.01
    assert read_point_cloud(tmp_path / "scan.xyz", outliers="off").outliers_removed == 0


@pytest.mark.slow
def test_an_unoriented_cloud_fits_to_a_chamfer_threshold(tmp_path):
    mesh, points, _ = _torus(5000, seed=4)
    rng = np.random.default_rng(5)
    np.savetxt(tmp_path / "torus.xyz", points + rng.normal(size=points.shape) * 0.003)  # positions only
    gt = tmp_path / "torus_gt.ply"
    mesh.export(gt)
    config = resolve(MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 300},
                                                                       "extraction": {"resolution": 96}}), "cpu")
    result = fit(tmp_path / "torus.xyz", config, tmp_path / "out", device="cpu", gt_path=gt)
    assert result.metrics["analysis"]["has_normals"] is False
    scores = result.metrics["ground_truth"]
    # Oriented normals give a closed torus of genus 1; a wrongly oriented patch would dent or pierce it.
    assert scores["chamfer_l1"] < 0.01, scores
    assert scores["normal_consistency"] > 0.95, scores
    assert result.mesh.is_watertight and result.mesh.euler_number == 0
