"""nfcore.io.meshes: reading, writing and sampling meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from nfcore.errors import InputError
from nfcore.io import read_mesh, sample_surface, write_mesh


@pytest.fixture
def sphere():
    return trimesh.creation.icosphere(subdivisions=3, radius=0.8)


@pytest.mark.parametrize("ext", [".ply", ".obj", ".glb", ".stl"])
def test_write_read_round_trip(tmp_path, sphere, ext):
    path = write_mesh(sphere, tmp_path / f"s{ext}")
    back = read_mesh(path)
    assert len(back.faces) == len(sphere.faces)
    assert back.is_watertight  # STL's triangle soup is merged back into a closed mesh
    assert back.area == pytest.approx(sphere.area, rel=1e-5)
    assert back.volume == pytest.approx(sphere.volume, rel=1e-5)


def test_off_is_read(tmp_path, sphere):
    path = tmp_path / "s.off"
    sphere.export(path)
    assert read_mesh(path).volume == pytest.approx(sphere.volume, rel=1e-5)


def test_ply_keeps_field_normals(tmp_path, sphere):
    normals = -np.asarray(sphere.vertex_normals)  # deliberately not the face-derived ones
    sphere.vertex_normals = normals
    write_mesh(sphere, tmp_path / "s.ply")
    header = (tmp_path / "s.ply").read_bytes()[:400]
    assert b"property float nx" in header


def test_write_unknown_extension(tmp_path, sphere):
    with pytest.raises(InputError, match=r"\.ply.*\.obj"):
        write_mesh(sphere, tmp_path / "s.vtk")


def test_read_unknown_extension(tmp_path):
    (tmp_path / "s.fbx").write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="unsupported mesh extension"):
        read_mesh(tmp_path / "s.fbx")


def test_corrupt_files(tmp_path, sphere):
    good = write_mesh(sphere, tmp_path / "s.glb").read_bytes()
    (tmp_path / "t.glb").write_bytes(good[: len(good) // 3])
    (tmp_path / "g.stl").write_bytes(b"\x00\x01garbage" * 3)
    # The container checks name the inconsistency before trimesh parses anything.
    with pytest.raises(InputError, match=rf"GLB header declares {len(good)} bytes but the file has {len(good) // 3}"):
        read_mesh(tmp_path / "t.glb")
    with pytest.raises(InputError, match="shorter than its 84-byte header"):
        read_mesh(tmp_path / "g.stl")


def test_obj_without_faces(tmp_path):
    (tmp_path / "v.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(InputError, match="no triangles|no triangle mesh"):
        read_mesh(tmp_path / "v.obj")


def test_obj_with_nan_vertex(tmp_path):
    (tmp_path / "n.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    with pytest.raises(InputError, match="NaN"):
        read_mesh(tmp_path / "n.obj")


def test_zero_area_mesh(tmp_path):
    (tmp_path / "z.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="zero surface area|no triangles"):
        read_mesh(tmp_path / "z.obj")


def test_sample_surface_on_sphere(sphere):
    points, normals = sample_surface(sphere, 5000, seed=0)
    assert points.shape == normals.shape == (5000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    radial = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert np.sum(radial * normals, axis=1).min() > 0.95


def test_shared_meshes_frames_and_watertightness(shared_data):
    closed = {"bunny": True, "armadillo": True, "spot": True, "rocker_arm": True, "mountain": False}
    for name, watertight in closed.items():
        mesh = read_mesh(shared_data / "meshes" / f"{name}.ply")
        assert mesh.is_watertight == watertight, name
        if watertight:
            assert mesh.volume > 0, name
