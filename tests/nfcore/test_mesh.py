"""nfcore.mesh: marching cubes on analytic fields, dense, coarse-to-fine and slab-wise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from nfcore.mesh import extract_mesh, largest_component

R = 0.6137  # not on any test grid's nodes: a node exactly on the surface makes topology float-noise dependent


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=1) - R


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_sphere_area_and_radius(coarse_to_fine):
    mesh = extract_mesh(sphere_sdf, resolution=96, coarse_to_fine=coarse_to_fine)
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert mesh.area == pytest.approx(4 * np.pi * R**2, rel=0.02)
    assert radius.mean() == pytest.approx(R, rel=0.01)
    assert mesh.is_watertight
    assert mesh.volume > 0  # faces wind outward for an SDF negative inside


@pytest.mark.parametrize(("resolution", "coarse_step"), [(128, None), (101, None), (128, 4)])
def test_coarse_to_fine_equals_dense_and_evaluates_less(resolution, coarse_step):
    counts = {}

    def counting(name):
        def fn(x):
            counts[name] = counts.get(name, 0) + len(x)
            return sphere_sdf(x)

        return fn

    seen = []

    def recording(x):
        seen.append(x.numpy().copy())
        return counting("c2f")(x)

    dense = extract_mesh(counting("dense"), resolution=resolution, coarse_to_fine=False)
    c2f = extract_mesh(recording, resolution=resolution, coarse_to_fine=True, coarse_step=coarse_step)
    assert counts["dense"] == resolution**3
    assert counts["c2f"] < 0.4 * counts["dense"]
    # No node is evaluated twice: a finer level takes the coarser level's values at its nodes.
    nodes = np.concatenate(seen)
    assert len(np.unique(nodes, axis=0)) == len(nodes)
    np.testing.assert_array_equal(c2f.faces, dense.faces)
    np.testing.assert_allclose(c2f.vertices, dense.vertices, atol=1e-5)  # float32 values differ by batch


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_slabs_merge_into_the_same_mesh(coarse_to_fine):
    whole = extract_mesh(sphere_sdf, resolution=80, coarse_to_fine=coarse_to_fine)
    slabs = extract_mesh(sphere_sdf, resolution=80, coarse_to_fine=coarse_to_fine, slab_size=7)
    assert len(slabs.vertices) == len(whole.vertices)
    assert len(slabs.faces) == len(whole.faces)
    assert slabs.is_watertight
    assert slabs.area == pytest.approx(whole.area, rel=1e-6)  # float32 vertices, local vs global x
    assert slabs.volume == pytest.approx(whole.volume, rel=1e-6)


def test_vertices_are_exactly_on_grid_coordinates():
    # For a linear field marching cubes is exact, so every vertex must satisfy the plane equation;
    # a sheared index decode (idx / N) or an off-by-one spacing would move them by up to a voxel.
    a = torch.tensor([0.3, -0.5, 0.8])

    def plane(x):
        return x @ a - 0.1

    mesh = extract_mesh(plane, resolution=41, bounds=(-0.5, 0.7), coarse_to_fine=False)
    residual = mesh.vertices @ a.double().numpy() - 0.1
    assert np.abs(residual).max() < 1e-5
    assert mesh.vertices.min() >= -0.5 - 1e-9 and mesh.vertices.max() <= 0.7 + 1e-9
    assert mesh.vertices[:, 0].max() == pytest.approx(0.7, abs=1e-6)  # the last node is at hi


def test_gradient_normals_and_progress():
    fractions = []

    def grad(x):
        return x / x.norm(dim=1, keepdim=True)

    mesh = extract_mesh(sphere_sdf, resolution=64, gradient_fn=grad, progress=fractions.append, chunk_size=2000)
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    np.testing.assert_allclose(mesh.vertex_normals, radial, atol=1e-5)
    assert fractions[-1] == 1.0
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False))
    assert len(fractions) > 5 and 0.0 < fractions[0] < 0.5


def test_chunks_are_bounded():
    sizes = []

    def fn(x):
        sizes.append(len(x))
        return sphere_sdf(x)

    extract_mesh(fn, resolution=64, chunk_size=3000)
    assert max(sizes) <= 3000


def test_field_with_1d_output_column():
    mesh = extract_mesh(lambda x: sphere_sdf(x)[:, None], resolution=32)
    assert mesh.area == pytest.approx(4 * np.pi * R**2, rel=0.05)


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_no_surface_raises(coarse_to_fine):
    with pytest.raises(ValueError, match="no surface"):
        extract_mesh(lambda x: x.norm(dim=1) + 1.0, resolution=32, coarse_to_fine=coarse_to_fine)


def test_nan_field_raises():
    with pytest.raises(ValueError, match="NaN"):
        extract_mesh(lambda x: torch.full((len(x),), float("nan")), resolution=16)


def test_largest_component():
    big = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    small = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    small.apply_translation([3.0, 0.0, 0.0])
    both = trimesh.util.concatenate([small, big])
    normals = np.tile([0.0, 0.0, 1.0], (len(both.vertices), 1))  # stand-in for field normals
    both.vertex_normals = normals
    kept = largest_component(both)
    assert len(kept.faces) == len(big.faces)
    assert kept.area == pytest.approx(big.area)
    assert kept.volume == pytest.approx(big.volume)
    np.testing.assert_allclose(kept.vertex_normals, 0.0 * kept.vertices + [0.0, 0.0, 1.0])
    single = largest_component(big)
    assert single is big


def test_coarse_to_fine_keeps_small_parts_of_steep_fields():
    # Occupancy-logit-like field (slope 100, 50x the SDF bound): a big sphere and a small one of radius
    # 3 voxels centred in a coarsest cell (spacing 4 voxels), so no coarse sample lies inside it and
    # every corner of that cell is ~0.7 away from the level, far more than an SDF could be.
    n, k = 128, 100.0
    step = 2.0 / (n - 1)
    centres = torch.tensor([[0.0, 0.0, 0.0], [-1.0 + 106 * step] * 3])  # 106 = 4 * 26 + 2: a coarsest cell centre
    radii = torch.tensor([0.4937, 3.0 * step])

    def steep(x):
        return k * ((x[:, None, :] - centres).norm(dim=2) - radii).min(dim=1).values

    dense = extract_mesh(steep, resolution=n, coarse_to_fine=False)
    c2f = extract_mesh(steep, resolution=n, coarse_to_fine=True)
    assert len(dense.split(only_watertight=False)) == 2
    assert len(c2f.split(only_watertight=False)) == 2
    assert len(c2f.vertices) == len(dense.vertices)
    assert c2f.area == pytest.approx(dense.area, rel=1e-6)
    np.testing.assert_array_equal(c2f.faces, dense.faces)


def _sphere_mesh_and_points(n: int, *, hemisphere: bool):
    from nfcore.mesh import extract_mesh

    mesh = extract_mesh(lambda x: x.norm(dim=-1) - 0.6, resolution=64)
    rng = np.random.default_rng(0)
    p = rng.normal(size=(n, 3))
    p = 0.6 * p / np.linalg.norm(p, axis=1, keepdims=True)
    if hemisphere:
        p = p[p[:, 2] > 0]
    return mesh, p


def test_trimming_removes_the_unscanned_half_of_a_sphere_and_nothing_of_a_scanned_one():
    from nfcore.mesh import trim_unsupported

    mesh, points = _sphere_mesh_and_points(4000, hemisphere=True)
    radius = 0.05
    trimmed, report = trim_unsupported(mesh, points, radius, min_region_area=np.pi * (2 * radius) ** 2)
    z = np.asarray(trimmed.vertices)[:, 2]
    assert z.min() > -radius - 0.02  # the lower half is gone, up to the support radius
    assert z.max() > 0.55  # the scanned half stays
    assert report["removed_fraction"] == pytest.approx(0.5, abs=0.08)
    assert report["removed_area"] == pytest.approx(report["removed_fraction"] * mesh.area, rel=1e-6)
    assert len(trimmed.vertex_normals) == len(trimmed.vertices)

    mesh, points = _sphere_mesh_and_points(4000, hemisphere=False)
    same, report = trim_unsupported(mesh, points, radius, min_region_area=np.pi * (2 * radius) ** 2)
    assert len(same.faces) == len(mesh.faces) and report["removed_area"] == 0.0


def test_trimming_keeps_small_sampling_gaps_on_a_closed_surface():
    from nfcore.mesh import trim_unsupported

    mesh, points = _sphere_mesh_and_points(4000, hemisphere=False)
    cap = points[:, 2] > 0.58  # a small unsampled cap (height 0.02, area about 0.075)
    radius = 0.03
    kept, report = trim_unsupported(mesh, points[~cap], radius, min_region_area=np.pi * (2 * radius) ** 2 * 10)
    assert len(kept.faces) == len(mesh.faces) and report["removed_regions"] == 0
