"""nfcore.normalize: the input <-> cube similarity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from nfcore.errors import InputError
from nfcore.normalize import Similarity, fit_similarity


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.uniform([-3.0, 10.0, 0.0], [5.0, 12.0, 1.0], size=(1000, 3))


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_fit_maps_longest_side_into_cube(points, margin):
    sim = fit_similarity(points, margin=margin)
    q = sim.to_unit(points)
    lo, hi = q.min(axis=0), q.max(axis=0)
    assert hi[0] - lo[0] == pytest.approx(2 * (1 - margin))  # x is the longest side
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    assert np.abs(q).max() <= 1 - margin + 1e-12


def test_round_trip_numpy_and_torch(points):
    sim = fit_similarity(points)
    np.testing.assert_allclose(sim.from_unit(sim.to_unit(points)), points, atol=1e-12)
    t = torch.tensor(points, dtype=torch.float32)
    q = sim.to_unit(t)
    assert isinstance(q, torch.Tensor) and q.dtype == torch.float32
    np.testing.assert_allclose(q.numpy(), sim.to_unit(points), atol=1e-5)
    np.testing.assert_allclose(sim.from_unit(q).numpy(), points, atol=1e-4)


def test_dict_round_trip_is_json_safe(points):
    sim = fit_similarity(points)
    data = json.loads(json.dumps(sim.to_dict()))
    back = Similarity.from_dict(data)
    np.testing.assert_array_equal(back.center, sim.center)
    assert back.scale == sim.scale


@pytest.mark.parametrize("bad", [{}, {"center": [0, 0], "scale": 1.0}, {"center": [0, 0, 0], "scale": -1.0}])
def test_from_dict_rejects_bad_records(bad):
    with pytest.raises(InputError):
        Similarity.from_dict(bad)


def test_identical_points_rejected():
    with pytest.raises(InputError, match="identical"):
        fit_similarity(np.ones((10, 3)))


def test_apply_to_mesh_maps_back_and_keeps_normals(points):
    sim = fit_similarity(points)
    cube_mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    normals = np.asarray(cube_mesh.vertex_normals).copy()
    out = sim.apply_to_mesh(cube_mesh)
    np.testing.assert_allclose(out.vertices, sim.from_unit(cube_mesh.vertices), atol=1e-12)
    np.testing.assert_allclose(out.vertex_normals, normals, atol=1e-12)
    assert out.volume == pytest.approx(cube_mesh.volume / sim.scale**3, rel=1e-9)
    back = sim.apply_to_mesh(out, inverse=False)
    np.testing.assert_allclose(back.vertices, cube_mesh.vertices, atol=1e-12)
