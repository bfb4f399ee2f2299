"""bench.stress: the clouds it draws have the stated count, noise, flipped normals and outliers; the grid and summary."""

from __future__ import annotations

import argparse

import numpy as np
import plyfile
import pytest
import trimesh

from bench.stress import GRIDS, build_cells, make_cloud, summarize


@pytest.fixture
def sphere_mesh(tmp_path):
    path = tmp_path / "ball.ply"
    trimesh.creation.icosphere(subdivisions=4, radius=1.0).export(path)
    return path


def _read(path):
    v = plyfile.PlyData.read(str(path))["vertex"].data
    points = np.stack([v[k] for k in "xyz"], axis=1).astype(np.float64)
    names = v.dtype.names
    normals = np.stack([v[k] for k in ("nx", "ny", "nz")], axis=1) if "nx" in names else None
    return points, normals


def test_noise_flips_and_outliers_are_as_stated(sphere_mesh, tmp_path):
    diagonal = 2 * np.sqrt(3)
    points, normals = _read(make_cloud(sphere_mesh, 5000, 1.0, "flipped", 0.0, tmp_path / "a.ply", seed=1))
    radial = np.linalg.norm(points, axis=1) - 1.0
    assert len(points) == 5000
    assert radial.std() == pytest.approx(0.01 * diagonal, rel=0.15)  # isotropic noise, seen along the normal
    outward = np.einsum("ij,ij->i", normals, points / np.linalg.norm(points, axis=1, keepdims=True))
    assert (outward < 0).mean() == pytest.approx(0.1, abs=0.02)

    points, normals = _read(make_cloud(sphere_mesh, 5000, 0.0, "estimated", 5.0, tmp_path / "b.ply", seed=1))
    assert normals is None and len(points) == 5250
    assert (np.abs(np.linalg.norm(points, axis=1) - 1.0) > 0.02).sum() >= 200  # the outliers, off the sphere


def test_grids_and_summary(sphere_mesh):
    args = argparse.Namespace(grid="quick", shapes=["ball"], counts=None, noise=None, normals=None,
                              meshes=str(sphere_mesh.parent), preset="fast")
    cells = build_cells(args)
    names = [c["name"] for c in cells]
    assert len(names) == len(set(names)) and "ball/100000/0%/given" in names
    assert all(c["mesh"].endswith("ball.ply") for c in cells)
    assert len(build_cells(argparse.Namespace(**{**vars(args), "grid": "core"}))) > len(cells)
    assert set(GRIDS) >= {"full", "core", "quick", "smoke"}
    rows = [{"cell": c, "methods": {"ours": {"chamfer_l1": 0.001 if i % 2 else 0.01},
                                    "poisson-d8": {"chamfer_l1": 0.005}, "poisson-d10": {"chamfer_l1": 0.006}}}
            for i, c in enumerate(cells)]
    summary = summarize(rows)
    assert summary["all"]["cells"] == len(cells)
    assert summary["all"]["wins"] == len(cells) // 2
