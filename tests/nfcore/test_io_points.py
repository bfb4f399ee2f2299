"""nfcore.io.points: every reader on good and malformed files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh
from plyfile import PlyData, PlyElement

from nfcore.errors import InputError
from nfcore.io import PointCloud, read_point_cloud
from tests.conftest import sphere_cloud


def write_xyz(path, points, normals=None):
    data = points if normals is None else np.hstack([points, normals])
    np.savetxt(path, data, fmt="%.7f")
    return path


def write_ply(path, points, normals=None, *, text=False, names=("nx", "ny", "nz")):
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if normals is not None:
        fields += [(n, "f4") for n in names]
    v = np.zeros(len(points), dtype=fields)
    for i, k in enumerate("xyz"):
        v[k] = points[:, i]
    if normals is not None:
        for i, k in enumerate(names):
            v[k] = normals[:, i]
    PlyData([PlyElement.describe(v, "vertex")], text=text).write(str(path))
    return path


@pytest.fixture
def cloud():
    return sphere_cloud(500, radius=2.0, center=(1.0, -2.0, 0.5), seed=1)


def test_xyz_with_normals(tmp_path, cloud):
    points, normals = cloud
    pc = read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))
    assert isinstance(pc, PointCloud) and len(pc) == 500
    assert pc.points.dtype == np.float32 and pc.normals.dtype == np.float32
    np.testing.assert_allclose(pc.points, points, atol=1e-6)
    np.testing.assert_allclose(pc.normals, normals, atol=1e-6)


def test_xyz_without_normals_estimates_outward_unit_normals(tmp_path, cloud):
    points, normals = cloud
    pc = read_point_cloud(write_xyz(tmp_path / "a.xyz", points), normal_neighbors=15)
    np.testing.assert_allclose(np.linalg.norm(pc.normals, axis=1), 1.0, atol=1e-5)
    # On a sphere the estimated normals must agree with the radial ones, orientation included.
    cos = np.sum(pc.normals * normals, axis=1)
    assert (cos > 0.9).mean() > 0.99


def test_missing_normals_without_estimation_fails(tmp_path, cloud):
    with pytest.raises(InputError, match="no normals"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", cloud[0]), estimate_normals=False)


def test_normals_are_estimated_without_open3d(tmp_path, cloud, monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    points, normals = cloud
    pc = read_point_cloud(write_xyz(tmp_path / "a.xyz", points), normal_neighbors=15)
    assert (np.sum(pc.normals * normals, axis=1) > 0.9).mean() > 0.99


def test_normals_are_returned_unit_length(tmp_path, cloud):
    points, normals = cloud
    pc = read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals * 3.0))
    np.testing.assert_allclose(np.linalg.norm(pc.normals, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("text", [False, True])
def test_ply_binary_and_ascii(tmp_path, cloud, text):
    points, normals = cloud
    pc = read_point_cloud(write_ply(tmp_path / "a.ply", points, normals, text=text))
    np.testing.assert_allclose(pc.points, points, atol=1e-5)
    np.testing.assert_allclose(pc.normals, normals, atol=1e-5)


def test_ply_normal_aliases(tmp_path, cloud):
    points, normals = cloud
    path = write_ply(tmp_path / "a.ply", points, normals, names=("normal_x", "normal_y", "normal_z"))
    np.testing.assert_allclose(read_point_cloud(path).normals, normals, atol=1e-5)


@pytest.mark.parametrize("text", [False, True])
def test_ply_truncated(tmp_path, cloud, text):
    path = write_ply(tmp_path / "a.ply", *cloud, text=text)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match="truncated"):
        read_point_cloud(path)


def test_ply_declared_count_larger_than_data(tmp_path, cloud):
    path = write_ply(tmp_path / "a.ply", *cloud)
    path.write_bytes(path.read_bytes().replace(b"element vertex 500", b"element vertex 1000"))
    with pytest.raises(InputError, match="truncated|declares"):
        read_point_cloud(path)


def test_ply_declared_count_smaller_than_data(tmp_path, cloud):
    path = write_ply(tmp_path / "a.ply", *cloud)
    path.write_bytes(path.read_bytes().replace(b"element vertex 500", b"element vertex 400"))
    with pytest.raises(InputError, match="declares 400 vertices"):
        read_point_cloud(path)


def test_ply_with_faces_is_sampled_as_mesh(tmp_path):
    path = tmp_path / "m.ply"
    trimesh.creation.icosphere(subdivisions=3, radius=1.5).export(path)
    pc = read_point_cloud(path, mesh_samples=3000)
    assert len(pc) == 3000
    np.testing.assert_allclose(np.linalg.norm(pc.points, axis=1), 1.5, atol=0.02)


def test_npz_keys_and_aliases(tmp_path, cloud):
    points, normals = cloud
    np.savez(tmp_path / "a.npz", points=points, normals=normals)
    np.savez(tmp_path / "b.npz", xyz=points, n=normals)
    np.savez(tmp_path / "c.npz", data=np.hstack([points, normals]))
    for name in ("a.npz", "b.npz", "c.npz"):
        pc = read_point_cloud(tmp_path / name)
        np.testing.assert_allclose(pc.points, points, atol=1e-6)
        np.testing.assert_allclose(pc.normals, normals, atol=1e-6)


def test_npz_truncated(tmp_path, cloud):
    np.savez(tmp_path / "a.npz", points=cloud[0], normals=cloud[1])
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_point_cloud(tmp_path / "a.npz")


def test_npz_mismatched_normals(tmp_path, cloud):
    np.savez(tmp_path / "a.npz", points=cloud[0], normals=cloud[1][:10])
    with pytest.raises(InputError, match="normals"):
        read_point_cloud(tmp_path / "a.npz")


def test_npz_without_points_key(tmp_path, cloud):
    np.savez(tmp_path / "a.npz", foo=cloud[0], bar=cloud[1])
    with pytest.raises(InputError, match="no points array"):
        read_point_cloud(tmp_path / "a.npz")


def test_npy_three_and_six_columns(tmp_path, cloud):
    points, normals = cloud
    np.save(tmp_path / "a.npy", np.hstack([points, normals]))
    np.testing.assert_allclose(read_point_cloud(tmp_path / "a.npy").normals, normals, atol=1e-6)
    np.save(tmp_path / "b.npy", points)
    with pytest.raises(InputError, match="no normals"):
        read_point_cloud(tmp_path / "b.npy", estimate_normals=False)
    np.save(tmp_path / "c.npy", np.zeros((100, 4)))
    with pytest.raises(InputError, match=r"\(N, 3\) or \(N, 6\)"):
        read_point_cloud(tmp_path / "c.npy")


def test_npy_pickled_objects_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError):
        read_point_cloud(tmp_path / "a.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf(tmp_path, cloud, bad):
    points, normals = cloud
    points = points.copy()
    points[7, 1] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))


def test_nan_normals(tmp_path, cloud):
    points, normals = cloud
    normals = normals.copy()
    normals[3] = np.nan
    with pytest.raises(InputError, match="normals with NaN"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))


def test_too_few_and_too_many_points(tmp_path, cloud):
    path = write_xyz(tmp_path / "a.xyz", *cloud)
    with pytest.raises(InputError, match="at least 1000"):
        read_point_cloud(path, min_points=1000)
    with pytest.raises(InputError, match="at most 100 "):
        read_point_cloud(path, max_points=100)


def test_ply_too_many_points_checked_from_header(tmp_path, cloud):
    path = write_ply(tmp_path / "a.ply", *cloud)
    with pytest.raises(InputError, match="declares 500 points; at most 100"):
        read_point_cloud(path, max_points=100)


def test_coplanar_points(tmp_path):
    rng = np.random.default_rng(0)
    uv = rng.uniform(-1, 1, size=(300, 2))
    # A tilted plane: an axis-aligned bbox test would not see it.
    e1, e2 = np.array([1.0, 1.0, 0.0]) / np.sqrt(2), np.array([0.0, 0.0, 1.0])
    points = uv[:, :1] * e1 + uv[:, 1:] * e2 + 5.0
    normals = np.tile(np.cross(e1, e2), (300, 1))
    with pytest.raises(InputError, match="coplanar"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))


def test_identical_points(tmp_path):
    points = np.ones((200, 3))
    normals = np.tile([0.0, 0.0, 1.0], (200, 1))
    with pytest.raises(InputError, match="identical"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))


def test_zero_length_normals(tmp_path, cloud):
    points, normals = cloud
    normals = normals.copy()
    normals[42] = 0.0
    with pytest.raises(InputError, match="zero-length normals.*row 42"):
        read_point_cloud(write_xyz(tmp_path / "a.xyz", points, normals))


def test_ragged_xyz(tmp_path, cloud):
    path = write_xyz(tmp_path / "a.xyz", *cloud)
    with path.open("a") as f:
        f.write("1.0 2.0\n")
    with pytest.raises(InputError, match="cannot parse"):
        read_point_cloud(path)


def test_wrong_column_count_xyz(tmp_path):
    np.savetxt(tmp_path / "a.xyz", np.random.default_rng(0).normal(size=(200, 4)))
    with pytest.raises(InputError, match="3 .* or 6 .* columns"):
        read_point_cloud(tmp_path / "a.xyz")


def test_binary_garbage(tmp_path):
    (tmp_path / "a.xyz").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "b.ply").write_bytes(b"not a ply at all" * 10)
    for name in ("a.xyz", "b.ply"):
        with pytest.raises(InputError):
            read_point_cloud(tmp_path / name)


def test_unknown_extension_lists_supported(tmp_path):
    (tmp_path / "a.las").write_bytes(b"x" * 10)
    with pytest.raises(InputError, match=r"unsupported.*\.xyz.*"):
        read_point_cloud(tmp_path / "a.las")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_point_cloud(tmp_path / "nope.xyz")
    (tmp_path / "e.xyz").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_point_cloud(tmp_path / "e.xyz")


def test_mesh_sampling_is_seeded_and_area_weighted(tmp_path):
    # A box 4 x 1 x 1: the two 4 x 1 faces along x hold 4 / 18 of the area each.
    path = tmp_path / "box.obj"
    trimesh.creation.box(extents=(4.0, 1.0, 1.0)).export(path)
    a = read_point_cloud(path, mesh_samples=20_000, seed=3)
    b = read_point_cloud(path, mesh_samples=20_000, seed=3)
    c = read_point_cloud(path, mesh_samples=20_000, seed=4)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    on_top = np.isclose(a.normals[:, 2], 1.0)
    assert abs(on_top.mean() - 4 / 18) < 0.01
    np.testing.assert_allclose(a.points[on_top, 2], 0.5, atol=1e-6)


def test_shared_bunny_xyz_and_ply_agree(shared_data):
    a = read_point_cloud(shared_data / "pointclouds" / "bunny_sparse_10k_noisy.xyz")
    b = read_point_cloud(shared_data / "pointclouds" / "bunny_sparse_10k_noisy.ply")
    assert len(a) == len(b) == 10_000
    np.testing.assert_allclose(a.points, b.points, atol=1e-5)
    np.testing.assert_allclose(a.normals, b.normals, atol=1e-5)


@pytest.mark.parametrize("variant", ["savez", "savez_compressed", "bzip2", "fortran", "float32", "big_endian", "int"])
def test_valid_npz_and_npy_variants_still_read(tmp_path, cloud, variant):
    # The bounded readers (nfcore.io.formats) must accept every array numpy itself writes.
    import io
    import zipfile

    points, normals = cloud
    data = np.hstack([points, normals]).astype(np.float64)
    if variant == "float32":
        data = data.astype(np.float32)
    elif variant == "big_endian":
        data = data.astype(">f8")
    elif variant == "int":
        data = np.round(data * 1000).astype(np.int32)
    npz = variant in ("savez", "savez_compressed", "bzip2")
    path = tmp_path / ("c.npz" if npz else "c.npy")
    if variant == "savez":
        np.savez(path, points=data)
    elif variant == "savez_compressed":
        np.savez_compressed(path, points=data)
    elif variant == "bzip2":
        buf = io.BytesIO()
        np.save(buf, data)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
            zf.writestr("points.npy", buf.getvalue())
    else:
        np.save(path, np.asfortranarray(data) if variant == "fortran" else data)
    pc = read_point_cloud(path)
    np.testing.assert_array_equal(pc.points, np.asarray(data[:, :3], dtype=np.float32))
    assert pc.normals.shape == (len(points), 3)
