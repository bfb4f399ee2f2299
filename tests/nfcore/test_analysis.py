"""nfcore.analysis: spacing, extent and noise of synthetic clouds whose figures are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nfcore.analysis import analyze_cloud
from nfcore.errors import InputError


def _grid_plane(step: float, n: int = 120) -> np.ndarray:
    g = np.stack(np.meshgrid(np.arange(n) * step, np.arange(n) * step, indexing="ij"), -1).reshape(-1, 2)
    return np.c_[g, np.zeros(len(g))]


def test_a_regular_grid_has_its_step_as_spacing_and_nearest_distance():
    points = _grid_plane(0.01)
    points[:, 2] += 1e-3 * np.sin(points[:, 0] * 7)  # not exactly flat, so not degenerate
    a = analyze_cloud(points)
    assert a.nn_distance == pytest.approx(0.01, rel=0.2)
    assert a.spacing == pytest.approx(0.01, rel=0.2)
    assert a.extent == pytest.approx(1.19, rel=1e-6) and a.diagonal == pytest.approx(1.19 * math.sqrt(2), rel=1e-3)
    assert a.degenerate_reason() is None


@pytest.mark.parametrize("n", [2_000, 50_000])  # 50k: queries on a subsample, the tree on every point
def test_a_uniform_sphere_has_spacing_sqrt_area_per_point(n):
    d = np.random.default_rng(3).normal(size=(n, 3))
    points = 2.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    a = analyze_cloud(points, max_queries=10_000)
    assert a.spacing == pytest.approx(math.sqrt(4 * math.pi * 4.0 / n), rel=0.2)
    assert a.n_queries == min(n, 10_000) and a.n_points == n
    assert a.noise < 0.1 * a.spacing  # a clean smooth surface reads as (nearly) noise-free
    assert a.principal_extents[2] > 0.5 * a.principal_extents[0]


@pytest.mark.parametrize("sigma", [0.002, 0.005])
def test_noise_across_a_surface_is_measured(sigma):
    rng = np.random.default_rng(4)
    points = np.c_[rng.uniform(0, 1, size=(20_000, 2)), np.zeros(20_000)]
    points[:, 2] += rng.normal(0, sigma, len(points))
    a = analyze_cloud(points, rng=np.random.default_rng(0))
    assert a.noise == pytest.approx(sigma, rel=0.2)
    assert a.spacing == pytest.approx(math.sqrt(1.0 / 20_000), rel=0.2)


def test_the_analysis_is_deterministic_for_a_given_generator():
    points = np.random.default_rng(5).normal(size=(30_000, 3))
    a = analyze_cloud(points, max_queries=1000, rng=np.random.default_rng(7))
    b = analyze_cloud(points, max_queries=1000, rng=np.random.default_rng(7))
    assert a == b


@pytest.mark.parametrize(
    "points, problem",
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros((10, 2)), r"\(N, 3\)"),
        (np.array([[0.0, 0.0, np.nan]] * 20), "NaN"),
    ],
)
def test_unusable_arrays_are_input_errors(points, problem):
    with pytest.raises(InputError, match=problem):
        analyze_cloud(points)


def test_degenerate_reasons_name_the_problem():
    line = np.c_[np.linspace(0, 1, 50), np.linspace(0, 2, 50), np.linspace(0, 3, 50)]
    assert "collinear" in analyze_cloud(line).degenerate_reason()
    assert "coplanar" in analyze_cloud(_grid_plane(0.1, 10)).degenerate_reason()
    assert "zero extent" in analyze_cloud(np.ones((20, 3))).degenerate_reason()
    assert "3 points" in analyze_cloud(np.eye(3)).degenerate_reason()
    with pytest.raises(InputError, match="coplanar"):
        analyze_cloud(_grid_plane(0.1, 10)).require_surface()


def _sphere(n: int, rng: np.random.Generator, *, hemisphere: bool = False) -> np.ndarray:
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    if hemisphere:
        p[:, 2] = np.abs(p[:, 2])
    return p


@pytest.mark.parametrize("n", [3000, 30000])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_sphere_looks_closed_and_a_hemisphere_open(n, noise):
    rng = np.random.default_rng(4)
    closed = analyze_cloud(_sphere(n, rng) + rng.normal(size=(n, 3)) * noise)
    open_ = analyze_cloud(_sphere(n, rng, hemisphere=True) + rng.normal(size=(n, 3)) * noise)
    assert closed.closed and not open_.closed
    assert open_.boundary_fraction > 5 * closed.boundary_fraction


def test_a_torus_looks_closed_and_a_square_patch_open():
    import trimesh

    torus = trimesh.sample.sample_surface(trimesh.creation.torus(1.0, 0.3), 10_000, seed=2)[0]
    assert analyze_cloud(torus).closed
    rng = np.random.default_rng(5)
    patch = np.column_stack([rng.uniform(-1, 1, (10_000, 2)), 0.05 * rng.normal(size=10_000) * 0.01])
    patch[:, 2] += 0.1 * np.sin(patch[:, 0])  # a gently curved sheet: spans 3D, has a boundary
    assert not analyze_cloud(patch).closed


def test_noise_ratio_is_noise_over_spacing():
    rng = np.random.default_rng(6)
    a = analyze_cloud(_sphere(5000, rng) + rng.normal(size=(5000, 3)) * 0.01)
    assert a.noise_ratio == pytest.approx(a.noise / a.spacing)
    assert 0.1 < a.noise_ratio < 1.0
