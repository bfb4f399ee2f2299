"""The kernel method (nfcore.kernel): analytic shapes recovered, sparse extraction = dense, open scans
stay open, degenerate input and non-convergence are errors, CPU backends and CUDA agree, fit() runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from nfcore.analysis import analyze_cloud
from nfcore.config import KernelConfig
from nfcore.errors import FitCanceled, InputError
from nfcore.kernel import KernelSolveError, SparseGrid, extract_sparse, solve_kernel_field, trim
from nfcore.kernel.task import cpu_threads


def _sphere(n: int, radius: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (radius * d).astype(np.float32), d.astype(np.float32)


def _torus(n: int, big: float, small: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Rejection sampling for uniform area density (the outer rim has more area than the inner one).
    u, v = rng.uniform(0, 2 * np.pi, (2, 4 * n))
    keep = rng.uniform(0, big + small, 4 * n) < big + small * np.cos(v)
    u, v = u[keep][:n], v[keep][:n]
    normal = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], axis=1)
    centre = np.stack([big * np.cos(u), big * np.sin(u), np.zeros_like(u)], axis=1)
    return (centre + small * normal).astype(np.float32), normal.astype(np.float32)


def _reconstruct(points: np.ndarray, normals: np.ndarray, **overrides):
    cfg = KernelConfig(**overrides)
    analysis = analyze_cloud(points)
    with cpu_threads(torch.device("cpu"), cfg.cpu_threads):
        solution = solve_kernel_field(torch.from_numpy(points), torch.from_numpy(normals), cfg, analysis)
        mesh = extract_sparse(solution.field.sdf, solution.field.grid, block=cfg.block, upsample=cfg.upsample)
    if cfg.trim_distance is not None:
        mesh = trim(mesh, points, cfg.trim_distance * analysis.spacing + 2 * analysis.noise)
    return solution, mesh


def test_a_sphere_is_recovered_closed_with_its_radius():
    points, normals = _sphere(4000, 0.6)
    solution, mesh = _reconstruct(points, normals)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - 0.6) < 0.005 and radii.std() < 0.005
    assert mesh.is_watertight and mesh.euler_number == 2  # genus 0
    assert solution.levels[-1].residual <= 1e-4 and len(solution.levels) == 2
    # The field is SDF-like near the surface: negative inside, unit gradient along the normal.
    value, grad = solution.field.value_and_gradient(torch.tensor([[0.0, 0.0, 0.59], [0.0, 0.0, 0.61]]))
    assert value[0] < 0 < value[1]
    assert torch.allclose(grad[:, 2], torch.ones(2), atol=0.15)


def test_a_torus_is_recovered_with_genus_one():
    big, small = 0.5, 0.2
    points, normals = _torus(8000, big, small)
    _, mesh = _reconstruct(points, normals)
    v = np.asarray(mesh.vertices)
    tube = np.hypot(np.hypot(v[:, 0], v[:, 1]) - big, v[:, 2])  # distance to the core circle
    assert abs(tube.mean() - small) < 0.005 and tube.std() < 0.006
    assert mesh.is_watertight and mesh.euler_number == 0  # genus 1: one through-hole


@pytest.mark.parametrize("upsample", [1, 2])
def test_sparse_extraction_equals_dense_marching_cubes_of_the_same_function(upsample):
    depth, radius = 5, 0.55
    points, _ = _sphere(3000, radius)
    grid = SparseGrid.around(torch.from_numpy(points), depth, 2)

    def fn(x: torch.Tensor) -> torch.Tensor:  # a sphere with a ripple: no symmetry hides a misplaced block
        return x.norm(dim=1) - radius + 0.03 * torch.sin(7 * x[:, 0]) * torch.cos(5 * x[:, 1])

    sparse = extract_sparse(fn, grid, block=8, upsample=upsample)
    n = (1 << depth) * upsample + 1  # dense lattice over the whole cube
    axis = torch.arange(n, dtype=torch.float32) * (2.0 / (n - 1)) - 1.0
    xyz = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    volume = fn(xyz).reshape(n, n, n).numpy()
    v, f, _, _ = marching_cubes(volume, 0.0, gradient_direction="descent", allow_degenerate=False)
    dense_vertices = v.astype(np.float64) * (2.0 / (n - 1)) - 1.0
    assert len(sparse.faces) == len(f) and len(sparse.vertices) == len(dense_vertices)
    # Every vertex of one has a vertex of the other at the same place (float32 marching cubes).
    tree = cKDTree(dense_vertices)
    assert tree.query(np.asarray(sparse.vertices))[0].max() < 1e-5
    assert cKDTree(np.asarray(sparse.vertices)).query(dense_vertices)[0].max() < 1e-5
    assert sparse.is_watertight  # block seams are closed
    # Same triangles, same winding: equal signed volume.
    dense = type(sparse)(dense_vertices, f, process=False)
    dense.merge_vertices()
    assert sparse.volume == pytest.approx(dense.volume, rel=1e-5) and sparse.volume > 0


def test_an_open_scan_stays_open_and_is_trimmed_to_the_data():
    # A wavy height-field patch (like a terrain scan): an open surface with one boundary loop.
    rng = np.random.default_rng(1)
    xy = rng.uniform(-0.6, 0.6, size=(6000, 2))
    z = 0.1 * np.sin(4 * xy[:, 0]) * np.cos(3 * xy[:, 1])
    dz = np.stack([0.4 * np.cos(4 * xy[:, 0]) * np.cos(3 * xy[:, 1]), -0.3 * np.sin(4 * xy[:, 0]) * np.sin(3 * xy[:, 1])], 1)
    points = np.c_[xy, z].astype(np.float32)
    normals = np.c_[-dz, np.ones(len(xy))]
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    _, mesh = _reconstruct(points, normals)
    _, untrimmed = _reconstruct(points, normals, trim_distance=None)
    analysis = analyze_cloud(points)
    limit = KernelConfig().trim_distance * analysis.spacing + 2 * analysis.noise
    assert cKDTree(points).query(mesh.triangles_center)[0].max() <= limit  # every face has data nearby
    assert cKDTree(points).query(untrimmed.triangles_center)[0].max() > limit  # the margin past the rim had none
    assert not mesh.is_watertight
    boundary = mesh.edges_sorted[trimesh_boundary(mesh)]
    assert len(boundary) > 50  # an open rim, not a few stray holes
    v = np.asarray(mesh.vertices)
    assert np.abs(v[:, :2]).max() < 0.6 + 0.06  # does not run past the data
    assert untrimmed.area > mesh.area  # the grid's margin beyond the rim was cut away
    assert np.abs(v[:, 2] - 0.1 * np.sin(4 * v[:, 0]) * np.cos(3 * v[:, 1])).mean() < 0.004


def trimesh_boundary(mesh) -> np.ndarray:
    """Indices into mesh.edges_sorted of edges used by exactly one face."""
    _, inverse, counts = np.unique(mesh.edges_sorted, axis=0, return_inverse=True, return_counts=True)
    return np.flatnonzero(counts[inverse.reshape(-1)] == 1)


@pytest.mark.parametrize(
    "points, problem",
    [
        (np.c_[np.linspace(0, 1, 500), 2 * np.linspace(0, 1, 500), np.zeros(500)], "collinear"),
        (np.c_[np.random.default_rng(0).uniform(size=(500, 2)), np.full(500, 0.3)], "coplanar"),
        (np.random.default_rng(0).uniform(size=(5, 3)), "5 points"),
        (np.ones((300, 3)), "zero extent"),
    ],
)
def test_degenerate_clouds_are_input_errors_before_any_solve(points, problem):
    with pytest.raises(InputError, match=problem):
        analyze_cloud(points).require_surface()


def test_degenerate_cloud_through_fit_is_an_input_error(tmp_path):
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    rng = np.random.default_rng(0)
    flat = np.c_[rng.uniform(size=(400, 2)), np.zeros(400), np.zeros((400, 2)), np.ones(400)]
    path = tmp_path / "flat.xyz"
    np.savetxt(path, flat)
    with pytest.raises(InputError, match="coplanar"):
        fit(path, resolve(MethodSpec(method="kernel"), "cpu"), tmp_path / "out")
    assert not (tmp_path / "out" / "mesh.ply").exists()


def test_a_solve_that_does_not_converge_names_its_residual():
    points, normals = _sphere(2000, 0.6)
    with pytest.raises(KernelSolveError, match=r"relative residual \d") as info:
        solve_kernel_field(torch.from_numpy(points), torch.from_numpy(normals),
                           KernelConfig(max_iterations=3, tolerance=1e-8), analyze_cloud(points))
    assert "3 iterations" in str(info.value)
    assert isinstance(info.value, FloatingPointError)  # the worker reports it as method_diverged


def test_torch_and_scipy_backends_give_the_same_field():
    points, normals = _sphere(3000, 0.6)
    analysis = analyze_cloud(points)
    fields = {}
    for backend in ("torch", "scipy"):
        cfg = KernelConfig(backend=backend, tolerance=1e-6, depth=5, levels=1)
        fields[backend] = solve_kernel_field(torch.from_numpy(points), torch.from_numpy(normals), cfg, analysis).field
    a, b = fields["torch"].coefficients, fields["scipy"].coefficients
    assert torch.allclose(a, b, atol=1e-3 * float(a.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_cpu_give_the_same_surface():
    points, normals = _sphere(5000, 0.6)
    analysis = analyze_cloud(points)
    cfg = KernelConfig(backend="torch", tolerance=1e-6)
    out = {}
    for device in ("cpu", "cuda"):
        sol = solve_kernel_field(torch.from_numpy(points).to(device), torch.from_numpy(normals).to(device), cfg, analysis)
        out[device] = sol.field.coefficients.cpu()
    assert torch.allclose(out["cpu"], out["cuda"], atol=1e-3 * float(out["cpu"].abs().max()))


def _write_xyz(path, points, normals):
    np.savetxt(path, np.c_[points, normals])
    return path


def test_fit_runs_the_kernel_method_with_the_usual_artifacts_and_progress(tmp_path):
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    points, normals = _sphere(3000, 0.6)
    path = _write_xyz(tmp_path / "sphere.xyz", 3.0 * points + 1.0, normals)  # any frame: normalised by fit
    phases = []
    result = fit(path, resolve(MethodSpec(method="kernel"), "cpu"), tmp_path / "out",
                 callback=lambda p: phases.append((p.phase, p.fraction)))
    assert {"mesh.ply", "metrics.json", "config.json", "normalization.json"} <= set(result.artifacts)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method"] == "kernel" and set(metrics["timings"]) == {"load", "solve", "extract", "evaluate", "write"}
    assert metrics["kernel"]["residual"] <= 1e-4 and metrics["fit_residuals"]["normal_agreement"] > 0.98
    assert json.loads((tmp_path / "out" / "config.json").read_text())["method"] == "kernel"
    radii = np.linalg.norm(np.asarray(result.mesh.vertices) - 1.0, axis=1)  # back in the input frame
    assert abs(radii.mean() - 1.8) < 0.02
    seen = [phase for phase, _ in phases]
    assert "solve" in seen and "train" not in seen
    assert all(b >= a for (_, a), (_, b) in zip(phases, phases[1:], strict=False))  # overall fraction never decreases


def test_a_callback_returning_false_cancels_the_solve(tmp_path):
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    points, normals = _sphere(3000, 0.6)
    path = _write_xyz(tmp_path / "sphere.xyz", points, normals)
    config = resolve(MethodSpec(method="kernel", overrides={"train": {"progress_interval_s": 0.0}}), "cpu")
    seen = []

    def stop_in_solve(p):
        seen.append(p.phase)
        return p.phase != "solve" or p.fraction <= 0.05

    with pytest.raises(FitCanceled, match="solve"):
        fit(path, config, tmp_path / "out", callback=stop_in_solve)
    assert "extract" not in seen
