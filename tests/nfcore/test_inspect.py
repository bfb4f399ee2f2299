"""nfcore.io.inspect: cheap upload reports for clouds, meshes and images."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import trimesh
from PIL import Image

from nfcore.errors import InputError
from nfcore.io import InputReport, inspect_input
from tests.conftest import sphere_cloud


def test_point_cloud_report(tmp_path):
    points, normals = sphere_cloud(300, radius=2.0, center=(1.0, 0.0, 0.0))
    np.savetxt(tmp_path / "a.xyz", np.hstack([points, normals]))
    report = inspect_input(tmp_path / "a.xyz")
    assert isinstance(report, InputReport)
    assert (report.kind, report.format, report.n_points, report.has_normals) == ("pointcloud", "xyz", 300, True)
    np.testing.assert_allclose(report.bbox_min, points.min(axis=0), atol=1e-5)
    np.testing.assert_allclose(report.bbox_max, points.max(axis=0), atol=1e-5)
    json.loads(report.model_dump_json())


def test_cloud_without_normals_is_not_estimated(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # estimation would fail without Open3D
    points, _ = sphere_cloud(300)
    np.save(tmp_path / "a.npy", points)
    report = inspect_input(tmp_path / "a.npy")
    assert report.has_normals is False and report.n_points == 300


def test_bad_cloud_is_rejected(tmp_path):
    points, normals = sphere_cloud(300)
    points[5, 0] = np.nan
    np.save(tmp_path / "a.npy", np.hstack([points, normals]))
    with pytest.raises(InputError, match="NaN"):
        inspect_input(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.hstack([points[:50], normals[:50]]))
    with pytest.raises(InputError, match="at least"):
        inspect_input(tmp_path / "b.npy")


@pytest.mark.parametrize("ext", [".obj", ".ply", ".stl"])
def test_mesh_report(tmp_path, ext):
    mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh.export(tmp_path / f"b{ext}")
    report = inspect_input(tmp_path / f"b{ext}")
    assert report.kind == "mesh" and report.format == ext[1:]
    assert report.n_points == 8 and report.n_faces == 12
    assert report.watertight is True and report.has_normals is True
    np.testing.assert_allclose(report.bbox_max, [0.5, 1.0, 1.5])


@pytest.mark.parametrize(
    ("mode", "channels", "bit_depth"), [("RGB", 3, 8), ("RGBA", 4, 8), ("L", 1, 8), ("I;16", 1, 16)]
)
def test_image_report(tmp_path, mode, channels, bit_depth):
    Image.new(mode, (40, 30)).save(tmp_path / "i.png")
    report = inspect_input(tmp_path / "i.png")
    assert (report.kind, report.format, report.width, report.height) == ("image", "png", 40, 30)
    assert (report.channels, report.bit_depth) == (channels, bit_depth)


def test_jpeg_report(tmp_path):
    Image.new("RGB", (16, 8), color=(200, 10, 10)).save(tmp_path / "i.jpg")
    report = inspect_input(tmp_path / "i.jpg")
    assert (report.format, report.width, report.height, report.channels) == ("jpg", 16, 8, 3)


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    data = (tmp_path / "i.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        inspect_input(tmp_path / "t.png")


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"hello world, not a png")
    with pytest.raises(InputError, match="not a readable image"):
        inspect_input(tmp_path / "x.png")


def test_decompression_bomb_limit(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="90000 pixels"):
        inspect_input(tmp_path / "big.png", max_pixels=10_000)


def test_image_extensions_match_the_image_reader():
    from nfcore.io import images
    from nfcore.io.inspect import IMAGE_EXTENSIONS

    assert set(IMAGE_EXTENSIONS) == set(images.PIL_FORMATS)


def test_unknown_extension(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"supported:.*\.png.*\.xyz"):
        inspect_input(tmp_path / "a.txt")


def test_shared_clouds(shared_data):
    report = inspect_input(shared_data / "pointclouds" / "bunny_dense_100k.ply")
    assert (report.kind, report.n_points, report.has_normals) == ("pointcloud", 100_000, True)
    report = inspect_input(shared_data / "meshes" / "mountain.ply")
    assert report.kind == "mesh" and report.watertight is False


def test_a_cloud_report_carries_its_analysis(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.normal(size=(5000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    dome = p[p[:, 2] > 0]
    np.savetxt(tmp_path / "dome.xyz", dome)
    noisy = np.concatenate([p, rng.uniform(-1.2, 1.2, size=(250, 3))])  # 5000 on a sphere + 250 outliers
    np.savetxt(tmp_path / "sphere_outliers.xyz", noisy)

    dome_report = inspect_input(tmp_path / "dome.xyz")
    sphere_report = inspect_input(tmp_path / "sphere_outliers.xyz")
    assert dome_report.analysis is not None and not dome_report.analysis.closed
    assert dome_report.analysis.n_points == len(dome)
    assert sphere_report.n_points == 5250
    assert sphere_report.analysis.closed  # measured without the outliers, as the fit sees the cloud
    assert sphere_report.analysis.outlier_fraction == pytest.approx(250 / 5250, rel=0.3)
    assert dome_report.analysis.outlier_fraction < 0.005
    assert sphere_report.analysis.spacing == pytest.approx(np.sqrt(4 * np.pi / 5000), rel=0.25)


def test_a_cloud_report_checks_given_normals(tmp_path, monkeypatch):
    import nfcore.io.inspect as inspect_module

    rng = np.random.default_rng(1)
    p = rng.normal(size=(4000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    n = p.copy()
    np.savetxt(tmp_path / "good.xyz", np.hstack([p, n]))
    flip = rng.random(len(n)) < 0.1
    n[flip] *= -1
    np.savetxt(tmp_path / "flipped.xyz", np.hstack([p, n]))

    good = inspect_input(tmp_path / "good.xyz").analysis.normals
    flipped = inspect_input(tmp_path / "flipped.xyz").analysis.normals
    assert good.reliable and good.flipped_fraction < 0.01 and good.agreement > 0.99
    assert not flipped.reliable and flipped.flipped_fraction == pytest.approx(flip.mean(), abs=0.02)
    # Above the NumPy-only size the check is left to the fit (Open3D crashes in the validation child).
    monkeypatch.setattr(inspect_module, "OPEN3D_MIN_POINTS", 1000)
    assert inspect_input(tmp_path / "good.xyz").analysis.normals is None
