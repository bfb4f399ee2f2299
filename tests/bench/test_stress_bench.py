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
                              meshes=str(sphere_mesh.parent), preset="fast", cells=None)
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


def test_named_cells_are_the_grid_cells_of_the_same_name(sphere_mesh):
    """--cells re-runs report cells: the same conditions and seeds as the grid drew them with."""
    args = argparse.Namespace(grid="quick", shapes=["ball"], counts=None, noise=None, normals=None,
                              meshes=str(sphere_mesh.parent), preset="fast", cells=None)
    grid = {c["name"]: c for c in build_cells(args)}
    wanted = ["ball/100000/0%/given", "ball/10000/0.5%/given/out5%"]
    named = build_cells(argparse.Namespace(**{**vars(args), "cells": wanted}))
    assert [c["name"] for c in named] == wanted
    assert named == [grid[name] for name in wanted]
    with pytest.raises(SystemExit, match="not a cell name"):
        build_cells(argparse.Namespace(**{**vars(args), "cells": ["ball/10000/half/given"]}))


def test_dense_cells_get_a_1m_sample_section(tmp_path):
    """The report lists dense cells' 1M-sample Chamfer-L1 and says whether ours is at or below Poisson 8 on both."""
    from bench.stress import write_report

    def row(name, count, ours, ours_1m, p8, p8_1m):
        cell = {"name": name, "count": count, "noise": 0.0, "normals": "given", "outliers": 0.0}
        return {"cell": cell, "methods": {"ours": {"chamfer_l1": ours, "chamfer_l1_1M": ours_1m},
                                          "poisson-d8": {"chamfer_l1": p8, "chamfer_l1_1M": p8_1m}}}

    rows = [row("a/100000/0%/given", 100_000, 0.002, 0.0007, 0.0021, 0.0008),
            row("b/100000/0%/given", 100_000, 0.002, 0.0009, 0.0021, 0.0008),
            {"cell": {"name": "c/10000/0%/given", "count": 10_000, "noise": 0.0, "normals": "given", "outliers": 0.0},
             "methods": {"ours": {"chamfer_l1": 0.002}, "poisson-d8": {"chamfer_l1": 0.003}}}]
    write_report(rows, tmp_path / "stress", {"date": "now", "argv": [], "preset": "balanced", "grid": "quick",
                                             "machine": "test"})
    section = (tmp_path / "stress.md").read_text().split("1,000,000 samples")[1]
    assert "| a/100000/0%/given | 0.002000 | 0.002100 | 0.000700 | 0.000800 | - | yes |" in section
    assert "| b/100000/0%/given |" in section and section.rstrip().endswith("| no |")
    assert "c/10000" not in section
