"""`nfrecon fit` with several inputs: overlapping scans of one object merged into one mesh (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import trimesh

from tests.utils.analytic import ellipsoid_view_files


def _views(tmp_path, n: int = 3) -> list:
    """Overlapping caps of an ellipsoid centred at (1, 2, 3), each sampled on its own, without normals."""
    return ellipsoid_view_files(tmp_path, n, points=2000, center=(1.0, 2.0, 3.0))


def test_fit_with_several_scans_writes_one_mesh_and_reports_the_merge(tmp_path):
    paths = _views(tmp_path)
    out = tmp_path / "merged.ply"
    proc = subprocess.run([sys.executable, "-m", "nfrecon", "fit", *map(str, paths), "-o", str(out), "--method",
                           "kernel", "--preset", "fast", "--register", "off", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 scans merged, not registered (register: off)" in proc.stdout
    assert "view2.xyz: overlap" in proc.stdout
    mesh = trimesh.load(out, force="mesh")
    assert len(mesh.faces) > 100
    assert np.allclose(mesh.bounds.mean(axis=0), [1.0, 2.0, 3.0], atol=0.05)  # in the scans' frame
    metrics = json.loads(out.with_name("merged.metrics.json").read_text())
    assert metrics["scans"]["n_scans"] == 3 and metrics["scans"]["register"] == "off"


def test_fit_refuses_several_inputs_for_another_task_and_a_bad_register_value(tmp_path):
    paths = _views(tmp_path, 2)
    proc = subprocess.run([sys.executable, "-m", "nfrecon", "fit", *map(str, paths), "-o", str(tmp_path / "o.ply"),
                           "--task", "occupancy", "-q"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "only the sdf task merges" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "nfrecon", "fit", *map(str, paths), "-o", str(tmp_path / "o.ply"),
                           "--register", "sometimes"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--register" in proc.stderr
