"""Shared fixtures: the read-only test data in ../shared and small analytic clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (relative to the repo root); skips the test when it is absent."""
    path = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


def sphere_cloud(n: int, radius: float = 1.0, center=(0.0, 0.0, 0.0), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points uniform on a sphere and their (N, 3) outward unit normals, float32."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = normals * radius + np.asarray(center, dtype=np.float64)
    return points.astype(np.float32), normals.astype(np.float32)


@pytest.fixture
def tiny_sphere_cloud() -> tuple[np.ndarray, np.ndarray]:
    """2,000 oriented points on the unit sphere: (points (N, 3), normals (N, 3)) float32."""
    return sphere_cloud(2000)
