"""nfcore.outliers: outlier fraction from the points alone, and statistical outlier removal."""

from __future__ import annotations

import numpy as np
import pytest

from nfcore.outliers import estimate_outlier_fraction, outlier_mask, remove_outliers


def sphere_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def torus_surface(n: int, rng: np.random.Generator, major: float = 1.0, minor: float = 0.35) -> np.ndarray:
    """Area-uniform points on a torus (the minor angle drawn by rejection, density ~ major + minor cos)."""
    out, count = [], 0
    while count < n:
        u, v, w = rng.uniform(0, 2 * np.pi, 2 * n), rng.uniform(0, 2 * np.pi, 2 * n), rng.uniform(0, 1, 2 * n)
        keep = w < (major + minor * np.cos(v)) / (major + minor)
        u, v = u[keep], v[keep]
        ring = major + minor * np.cos(v)
        out.append(np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], axis=1))
        count += len(u)
    return np.concatenate(out)[:n]


def cube_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points on the surface of the unit cube: flat faces, sharp edges and corners."""
    p = rng.uniform(-0.5, 0.5, size=(n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
    return p


def thin_plate(n: int, rng: np.random.Generator, thickness: float) -> np.ndarray:
    """Both faces of a 1 x 1 plate `thickness` thick (its rim left out): a thin part whose two sides
    fall among each other's neighbours."""
    p = np.column_stack([rng.uniform(0, 1, n), rng.uniform(0, 1, n), np.zeros(n)])
    p[: n // 2, 2] = thickness
    return p


SHAPES = {"sphere": sphere_surface, "torus": torus_surface}


def with_outliers(surface: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The surface plus uniform outliers in its bounding box, `fraction` of all points; (points, is_outlier)."""
    m = int(round(fraction * len(surface) / (1 - fraction)))
    outliers = rng.uniform(surface.min(axis=0), surface.max(axis=0), size=(m, 3))
    truth = np.r_[np.zeros(len(surface), dtype=bool), np.ones(m, dtype=bool)]
    order = rng.permutation(len(truth))  # outliers mixed in, not appended
    return np.concatenate([surface, outliers])[order], truth[order]


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("fraction", [0.01, 0.05])
def test_fraction_estimate_and_removal(shape, fraction):
    rng = np.random.default_rng(7)
    points, truth = with_outliers(SHAPES[shape](10_000, rng), fraction, rng)
    true_fraction = truth.mean()

    estimate = estimate_outlier_fraction(points)
    assert abs(estimate - true_fraction) <= 0.2 * true_fraction, (estimate, true_fraction)

    normals = rng.normal(size=points.shape)
    result = remove_outliers(points, normals)
    removed = ~result.keep
    assert removed[truth].mean() >= 0.90, f"only {removed[truth].mean():.3f} of the outliers removed"
    assert removed[~truth].mean() <= 0.01, f"{removed[~truth].mean():.4f} of the surface points removed"
    assert result.n_removed == removed.sum() and result.fraction == pytest.approx(removed.mean())
    np.testing.assert_array_equal(result.points, points[result.keep])
    np.testing.assert_array_equal(result.normals, normals[result.keep])  # normals follow their points
    np.testing.assert_array_equal(outlier_mask(points), removed)


def test_noisy_surface_with_outliers():
    # Gaussian noise of 0.25% of the bounding-box diagonal: outliers inside the noise band cannot be
    # seen, the estimate accounts for them; the noise itself is not called an outlier.
    rng = np.random.default_rng(11)
    surface = sphere_surface(10_000, rng)
    surface += rng.normal(scale=0.0025 * np.sqrt(12.0), size=surface.shape)
    points, truth = with_outliers(surface, 0.05, rng)
    estimate = estimate_outlier_fraction(points)
    assert abs(estimate - truth.mean()) <= 0.2 * truth.mean(), estimate
    removed = ~remove_outliers(points).keep
    assert removed[~truth].mean() <= 0.005 and removed[truth].mean() >= 0.7


@pytest.mark.parametrize("name", ["sphere", "torus", "noisy sphere", "cube", "thin plate"])
def test_clean_clouds_report_almost_no_outliers(name):
    rng = np.random.default_rng(3)
    if name == "noisy sphere":
        points = sphere_surface(10_000, rng)
        points += rng.normal(scale=0.005 * np.sqrt(12.0), size=points.shape)
    elif name == "cube":
        points = cube_surface(10_000, rng)  # sharp edges and corners are not outliers
    elif name == "thin plate":
        points = thin_plate(10_000, rng, thickness=0.01)  # about one point spacing thick
    else:
        points = SHAPES[name](10_000, rng)
    assert estimate_outlier_fraction(points) < 0.005
    assert remove_outliers(points).fraction < 0.005


def test_shared_clouds_report_almost_no_outliers(shared_data):
    # Sampled from meshes (dense: clean; sparse: Gaussian noise of 0.5% of the diagonal), no outliers:
    # thin parts (armadillo), sharp edges (rocker arm) and an open boundary (mountain) included.
    from nfcore.io.points import load_raw

    paths = sorted((shared_data / "pointclouds").glob("*_sparse_10k_noisy.ply"))
    paths.append(shared_data / "pointclouds" / "armadillo_dense_100k.ply")
    assert len(paths) >= 2
    for path in paths:
        fraction = estimate_outlier_fraction(load_raw(path).points)
        assert fraction < 0.005, (path.name, fraction)


def test_subsampled_estimate_is_reproducible_and_close():
    rng = np.random.default_rng(5)
    points, truth = with_outliers(sphere_surface(60_000, rng), 0.05, rng)
    a = estimate_outlier_fraction(points, max_queries=15_000, rng=1)
    b = estimate_outlier_fraction(points, max_queries=15_000, rng=np.random.default_rng(1))
    assert a == b
    assert abs(a - truth.mean()) <= 0.2 * truth.mean(), a


def test_invariant_to_scale_and_offset():
    rng = np.random.default_rng(9)
    points, _ = with_outliers(torus_surface(5_000, rng), 0.05, rng)
    base = outlier_mask(points)
    moved = outlier_mask(points * 250.0 + np.array([1e4, -3e3, 42.0]))
    assert base.sum() > 0 and (base != moved).mean() < 0.002


def test_small_and_malformed_input():
    assert estimate_outlier_fraction(np.zeros((5, 3))) == 0.0
    small = remove_outliers(np.random.default_rng(0).normal(size=(10, 3)))
    assert small.keep.all() and small.n_removed == 0
    with pytest.raises(ValueError, match="shape"):
        estimate_outlier_fraction(np.zeros((100, 2)))
    with pytest.raises(ValueError, match="normals"):
        remove_outliers(np.zeros((100, 3)), np.zeros((99, 3)))
