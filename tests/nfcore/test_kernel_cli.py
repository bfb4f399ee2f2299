"""`nfrecon fit --method kernel`: the training-free method from the command line."""

from __future__ import annotations

import json

import numpy as np
import trimesh

from nfrecon.cli import main


def _sphere_xyz(path, n=3000, seed=0):
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.savetxt(path, np.hstack([2.0 + 1.5 * d, d]), fmt="%.6f")  # off-centre and scaled


def test_fit_with_the_kernel_method_writes_the_mesh_in_the_input_frame(tmp_path, capsys):
    src = tmp_path / "sphere.xyz"
    _sphere_xyz(src)
    out = tmp_path / "sphere.obj"
    assert main(["fit", str(src), "-o", str(out), "--method", "kernel", "--preset", "fast", "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "kernel solve, depth" in stdout and "CG iterations" in stdout
    mesh = trimesh.load(out, force="mesh")
    radius = np.linalg.norm(mesh.vertices - 2.0, axis=1)
    assert abs(np.median(radius) - 1.5) < 0.02 and mesh.is_watertight
    metrics = json.loads(out.with_name("sphere.metrics.json").read_text())
    assert metrics["method"] == "kernel" and metrics["steps"] == 0 and "solve" in metrics["timings"]


def test_the_kernel_method_for_an_image_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "sphere.xyz"
    _sphere_xyz(src, 200)
    code = main(["fit", str(src), "-o", str(tmp_path / "x.png"), "--task", "image", "--method", "kernel", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "method" in err and "not available for task 'image'" in err
