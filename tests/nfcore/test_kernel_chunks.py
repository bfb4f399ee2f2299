"""Large inputs for the kernel method: chunked assembly, evaluation and extraction equal the unchunked
ones (tiny chunks forced on small cases), and the benchmark's room scene (bench/scene.py) places its
objects without overlaps on the floor and samples the requested number of points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from bench.scene import build_scene, sample_scene
from nfcore.kernel import KernelField, SparseGrid, extract_sparse
from nfcore.kernel.solve import SystemWeights, build_system


def _sphere(n: int, radius: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return torch.from_numpy((radius * d).astype(np.float32)), torch.from_numpy(d.astype(np.float32))


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_system_assembled_in_tiny_chunks_equals_one_chunk(backend):
    points, normals = _sphere(3000, 0.6)
    grid = SparseGrid.around(points, 5, 2)
    weights = SystemWeights(value=1.0, gradient=1.0, smoothness=0.05, point_area=0.3)
    whole = build_system(grid, points, normals, weights, backend=backend, chunk_size=1 << 20, block_rows=1 << 20)
    # 11 points and 7 rows at a time: many chunks share voxels, and blocks split element stencils.
    tiny = build_system(grid, points, normals, weights, backend=backend, chunk_size=11, block_rows=7)
    assert len(tiny._blocks) == -(-grid.n_nodes // 7) and len(whole._blocks) == 1
    x = torch.randn(grid.n_nodes, generator=torch.Generator().manual_seed(0))
    ref = whole.matvec(x)
    assert float(ref.abs().max()) > 1.0  # a real operator, not zeros
    torch.testing.assert_close(tiny.matvec(x), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(tiny.diagonal, whole.diagonal, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tiny.rhs, whole.rhs, rtol=1e-5, atol=1e-5)
    assert tiny.nnz == whole.nnz


def test_assembled_operator_is_the_sum_of_point_and_smoothness_rows():
    """x^T (A^T A) x = ||A x||^2 with A's rows written out one by one (the blocks lose no element)."""
    points, normals = _sphere(200, 0.6)
    grid = SparseGrid.around(points, 4, 1)
    weights = SystemWeights(value=2.0, gradient=1.0, smoothness=0.1, point_area=0.5)
    system = build_system(grid, points, normals, weights, backend="scipy", block_rows=5)
    x = torch.randn(grid.n_nodes, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    field = KernelField(grid, x.float())
    f, g = field.value_and_gradient(points)  # f in cube units; rows use voxel units
    energy = float(weights.point_area * (weights.value * (f / grid.h).square().sum() + weights.gradient * g.square().sum()))
    nodes = grid.nodes
    eye = torch.eye(3, dtype=torch.int64)
    for a in range(3):
        i = torch.stack([grid.node_index(nodes - eye[a]), torch.arange(grid.n_nodes), grid.node_index(nodes + eye[a])], 1)
        i = i[(i >= 0).all(1)]
        energy += weights.smoothness * float((x[i[:, 0]] - 2 * x[i[:, 1]] + x[i[:, 2]]).square().sum())
    for a, b in ((0, 1), (0, 2), (1, 2)):
        i = torch.stack([torch.arange(grid.n_nodes), grid.node_index(nodes + eye[a]), grid.node_index(nodes + eye[b]),
                         grid.node_index(nodes + eye[a] + eye[b])], 1)
        i = i[(i >= 0).all(1)]
        energy += 2 * weights.smoothness * float((x[i[:, 0]] - x[i[:, 1]] - x[i[:, 2]] + x[i[:, 3]]).square().sum())
    quad = float(x.float() @ system.matvec(x.float()))
    assert quad == pytest.approx(energy, rel=1e-4)


def test_field_and_extraction_in_tiny_chunks_equal_one_chunk():
    points, normals = _sphere(4000, 0.5)
    grid = SparseGrid.around(points, 5, 2)
    # An exact sphere SDF at the nodes (voxel units): a field with a known surface.
    coeffs = (grid.node_positions().norm(dim=1) - 0.5) / grid.h
    big, small = KernelField(grid, coeffs), KernelField(grid, coeffs, chunk_size=13)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    torch.testing.assert_close(small.sdf(x), big.sdf(x), rtol=0, atol=0)
    fa, ga = small.value_and_gradient(x)
    fb, gb = big.value_and_gradient(x)
    torch.testing.assert_close((fa, ga), (fb, gb), rtol=0, atol=0)
    one = extract_sparse(big.sdf, grid, block=64, chunk_size=1 << 20)  # one block, one evaluation chunk
    many = extract_sparse(small.sdf, grid, block=4, chunk_size=17)  # many blocks with shared seams
    assert len(one.faces) > 1000
    assert len(many.faces) == len(one.faces) and len(many.vertices) == len(one.vertices)
    np.testing.assert_allclose(np.sort(many.vertices, axis=0), np.sort(one.vertices, axis=0), atol=1e-6)
    assert many.is_watertight and one.is_watertight


def _primitives() -> dict[str, trimesh.Trimesh]:
    return {"ball": trimesh.creation.icosphere(subdivisions=2), "box": trimesh.creation.box((1.0, 2.0, 0.5)),
            "pill": trimesh.creation.capsule(height=1.0, radius=0.3)}


def test_scene_objects_stand_on_the_floor_without_overlapping():
    scene = build_scene(_primitives(), n_objects=7, floor_size=(4.0, 3.0), object_size=(0.4, 0.8), gap=0.05, seed=3)
    assert len(scene.objects) == 7
    parts = scene.mesh.split(only_watertight=False)
    floor = [p for p in parts if np.allclose(p.bounds, scene.floor)]
    objects = [p for p in parts if not np.allclose(p.bounds, scene.floor)]
    assert len(floor) == 1 and len(objects) == 7  # from the geometry itself, not from the placement records
    for p in objects:
        assert p.bounds[0, 2] == pytest.approx(0.0, abs=1e-9)  # on the floor's top face
        assert (p.bounds[0, :2] >= scene.floor[0, :2]).all() and (p.bounds[1, :2] <= scene.floor[1, :2]).all()
        assert p.extents.max() == pytest.approx(min(p.extents.max(), 0.8)) and p.extents.max() >= 0.4 - 1e-9
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            a, b = objects[i].bounds[:, :2], objects[j].bounds[:, :2]
            assert not (np.all(a[0] < b[1]) and np.all(b[0] < a[1])), f"objects {i} and {j} overlap"
    again = build_scene(_primitives(), n_objects=7, floor_size=(4.0, 3.0), object_size=(0.4, 0.8), gap=0.05, seed=3)
    np.testing.assert_array_equal(again.mesh.vertices, scene.mesh.vertices)  # seeded


@pytest.mark.parametrize("n_objects, floor_size", [(20, (2.0, 2.0)), (1, (0.5, 0.5))])  # too many; too big
def test_scene_that_cannot_fit_is_an_error(n_objects, floor_size):
    with pytest.raises(ValueError, match="does not fit"):
        build_scene(_primitives(), n_objects=n_objects, floor_size=floor_size, object_size=(0.6, 0.8), max_tries=200)


def test_scene_cloud_has_the_requested_points_on_the_surface():
    scene = build_scene(_primitives(), n_objects=3, seed=1)
    cloud = sample_scene(scene.mesh, 2345, seed=0, chunk=1000)  # three chunks
    assert cloud.shape == (2345, 6) and cloud.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cloud[:, 3:], axis=1), 1.0, atol=1e-5)
    _, distance, _ = trimesh.proximity.closest_point(scene.mesh, cloud[:, :3].astype(np.float64))
    assert distance.max() < 1e-5
    assert len(np.unique(cloud[:, :3], axis=0)) == 2345  # chunks draw different samples
    noisy = sample_scene(scene.mesh, 500, seed=0, noise=0.01)
    _, distance, _ = trimesh.proximity.closest_point(scene.mesh, noisy[:, :3].astype(np.float64))
    assert 0.002 < np.median(distance) < 0.02
