"""Scanner-style PLY files: extra elements and vertex properties, three encodings, header metadata.

Every variant must pass the header checks (nfcore.io.formats), upload validation (inspect_input, also
in the forked, limited child of nfcore.io.isolated) and reading, give back exactly the vertices and
normals it holds, and say what it left out.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

import nfcore.io.formats as formats
from nfcore.errors import InputError
from nfcore.io import inspect_input, read_point_cloud
from nfcore.io.points import load_raw, ply_has_faces
from tests.conftest import sphere_cloud

FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
BYTE_ORDER = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}
N = 400

# Vertex layout of a typical range scanner export: coordinates, per-point quality, normals, colour.
SCAN_FIELDS = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("confidence", "f4"), ("intensity", "f4"),
               ("nx", "f4"), ("ny", "f4"), ("nz", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
SCAN_EXTRA_PROPS = ["vertex.confidence", "vertex.intensity", "vertex.red", "vertex.green", "vertex.blue"]


@pytest.fixture
def cloud():
    points, normals = sphere_cloud(N, radius=1.5, center=(10.0, -3.0, 0.25), seed=3)
    return points.astype(np.float64), normals.astype(np.float64)


def _list_element(name, rows, prop="vertex_indices"):
    data = np.empty(len(rows), dtype=[(prop, object)])
    for i, row in enumerate(rows):
        data[prop][i] = np.asarray(row, dtype=np.int32)
    return PlyElement.describe(data, name, len_types={prop: "u1"}, val_types={prop: "i4"})


def scan_ply(points, normals, fmt, *, obj_info=("num_cols 20", "num_rows 20"), comments=("scanner X v1.2",),
             face_rows=0, grid=True):
    """Bytes of a PLY as range scanners write it: the scan vertex layout, a range_grid element (a list
    per grid cell: empty where nothing was measured), a face element with `face_rows` rows."""
    rng = np.random.default_rng(0)
    v = np.zeros(len(points), dtype=SCAN_FIELDS)
    for i, k in enumerate("xyz"):
        v[k] = points[:, i]
    for i, k in enumerate(("nx", "ny", "nz")):
        v[k] = normals[:, i]
    v["confidence"] = rng.uniform(0, 1, len(points))
    v["intensity"] = rng.uniform(0, 255, len(points))
    for k in ("red", "green", "blue"):
        v[k] = rng.integers(0, 256, len(points))
    elements = [PlyElement.describe(v, "vertex")]
    if grid:
        cells = [[i] if i % 3 else [] for i in range(len(points))]  # every third cell holds no point
        elements.append(_list_element("range_grid", cells))
    elements.append(_list_element("face", [[0, 1, 2]] * face_rows))
    ply = PlyData(elements, text=fmt == "ascii", byte_order=BYTE_ORDER[fmt], comments=list(comments),
                  obj_info=list(obj_info))
    buf = io.BytesIO()
    ply.write(buf)
    return buf.getvalue()


def hand_written_ascii(points, normals, *, newline="\n", comment="comment made by hand"):
    """An ASCII PLY written line by line: obj_info and comment lines, a `camera` element before the
    vertices, double coordinates, normals named normal_x/y/z, an extra per-vertex `confidence`."""
    head = ["ply", "format ascii 1.0", comment, "obj_info is_mesh 0", "obj_info is_warped 0",
            "element camera 1", "property float view_px", "property float view_py", "property float view_pz",
            f"element vertex {len(points)}", "property double x", "property double y", "property double z",
            "property float confidence", "property float normal_x", "property float normal_y",
            "property float normal_z", "element face 0", "property list uchar int vertex_indices", "end_header"]
    rows = ["0.5 -1.25 3"]
    rows += [" ".join(repr(float(a)) for a in (*p, 0.75, *n)) for p, n in zip(points, normals, strict=True)]
    return (newline.join(head + rows) + newline).encode("utf-8")


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_scan_ply_reads_vertices_and_lists_what_it_ignored(tmp_path, cloud, fmt):
    points, normals = cloud
    path = tmp_path / f"scan_{fmt}.ply"
    path.write_bytes(scan_ply(points, normals, fmt))
    assert path.read_bytes().split(b"\n")[1] == f"format {fmt} 1.0".encode()

    header = formats.read_ply_header(path)  # the header checks pass
    assert header.format == fmt
    assert [(e.name, e.count) for e in header.elements] == [("vertex", N), ("range_grid", N), ("face", 0)]
    assert header.obj_info == ["num_cols 20", "num_rows 20"] and header.comments == ["scanner X v1.2"]

    raw = load_raw(path)
    assert raw.kind == "pointcloud" and raw.n_vertices == N
    np.testing.assert_allclose(raw.points, points, rtol=0, atol=2e-6)  # float32 in the file
    np.testing.assert_allclose(raw.normals, normals, rtol=0, atol=2e-7)
    assert raw.ignored == SCAN_EXTRA_PROPS + ["element range_grid (400 rows)", "element face (0 rows)",
                                             "obj_info num_cols 20", "obj_info num_rows 20", "comment lines (1)"]

    pc = read_point_cloud(path)
    np.testing.assert_allclose(pc.points, points, rtol=0, atol=2e-6)
    np.testing.assert_allclose(pc.normals, normals, rtol=0, atol=1e-6)
    text = " | ".join(pc.notes)
    for word in ("confidence", "intensity", "red", "green", "blue", "range_grid (400 rows)", "num_cols 20",
                 "face element has no rows"):
        assert word in text, (word, pc.notes)
    assert "nx" not in text and "vertex.x" not in text  # what was used is not listed

    report = inspect_input(path)
    assert report.kind == "pointcloud" and report.n_points == N and report.has_normals
    assert report.ignored == raw.ignored
    np.testing.assert_allclose(report.bbox_min, points.min(axis=0), atol=2e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_face_element_with_no_rows_is_a_cloud_and_with_rows_a_mesh(tmp_path, cloud, fmt):
    points, normals = cloud
    empty, full = tmp_path / "empty.ply", tmp_path / "full.ply"
    empty.write_bytes(scan_ply(points, normals, fmt, grid=False))
    full.write_bytes(scan_ply(points, normals, fmt, grid=False, face_rows=5))
    assert not ply_has_faces(empty) and ply_has_faces(full)
    assert load_raw(empty).kind == "pointcloud" and inspect_input(empty).kind == "pointcloud"
    assert inspect_input(full).kind == "mesh"  # the contrast: the same file with faces is a mesh


def test_plain_ply_reports_nothing_ignored(tmp_path, cloud):
    points, normals = cloud
    v = np.zeros(N, dtype=[(k, "f4") for k in ("x", "y", "z", "nx", "ny", "nz")])
    for i, k in enumerate("xyz"):
        v[k], v["n" + k] = points[:, i], normals[:, i]
    path = tmp_path / "plain.ply"
    PlyData([PlyElement.describe(v, "vertex")]).write(str(path))
    raw = load_raw(path)
    assert raw.ignored == [] and raw.notes == []
    assert read_point_cloud(path).notes == [] and inspect_input(path).ignored == []


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_hand_written_ascii_with_obj_info_camera_and_normal_aliases(tmp_path, cloud, newline):
    points, normals = cloud
    path = tmp_path / "hand.ply"
    path.write_bytes(hand_written_ascii(points, normals, newline=newline))
    raw = load_raw(path)
    np.testing.assert_array_equal(raw.points, points)  # doubles written with repr: exact
    np.testing.assert_allclose(raw.normals, normals, rtol=0, atol=1e-6)
    assert raw.ignored == ["vertex.confidence", "element camera (1 rows)", "element face (0 rows)",
                           "obj_info is_mesh 0", "obj_info is_warped 0", "comment lines (1)"]
    assert inspect_input(path).ignored == raw.ignored


@pytest.mark.parametrize("fmt", FORMATS)
def test_utf8_comment_lines_are_accepted(tmp_path, cloud, fmt):
    # Scanners write file paths and vendor names into comments; plyfile alone refuses non-ASCII headers.
    points, normals = cloud
    data = scan_ply(points, normals, fmt, comments=("PLACEHOLDER",), obj_info=("PLACEHOLDER2",))
    data = data.replace(b"PLACEHOLDER2", "Ger\u00e4t \u2116 7".encode()).replace(
        b"PLACEHOLDER", "C:\\Scans\\Statue_\u00e9t\u00e9.ply end_header".encode())
    path = tmp_path / "utf8.ply"
    path.write_bytes(data)
    header = formats.read_ply_header(path)
    assert header.comments == ["C:\\Scans\\Statue_\u00e9t\u00e9.ply end_header"]
    assert header.obj_info == ["Ger\u00e4t \u2116 7"] and not header.ascii_header
    raw = load_raw(path)
    np.testing.assert_allclose(raw.points, points, rtol=0, atol=2e-6)
    np.testing.assert_allclose(raw.normals, normals, rtol=0, atol=2e-7)
    assert "obj_info Ger\u00e4t \u2116 7" in raw.ignored
    assert inspect_input(path).n_points == N


def test_non_ascii_outside_comments_is_still_refused(tmp_path, cloud):
    path = tmp_path / "bad.ply"
    path.write_bytes(hand_written_ascii(*cloud).replace(b"property float confidence",
                                                        "property float confid\u00e9nce".encode()))
    with pytest.raises(InputError, match="not ASCII text \\(line 14"):
        load_raw(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_scan_ply_is_still_refused(tmp_path, cloud, fmt):
    # Ignoring the extra elements must not mean ignoring that their data is missing.
    data = scan_ply(*cloud, fmt)
    path = tmp_path / "cut.ply"
    path.write_bytes(data[: len(data) - 300])
    with pytest.raises(InputError):
        load_raw(path)


def test_every_variant_passes_isolated_upload_validation(tmp_path, cloud):
    from nfcore.io.isolated import Inspector

    points, normals = cloud
    files = {fmt: scan_ply(points, normals, fmt) for fmt in FORMATS}
    files["hand"] = hand_written_ascii(points, normals, newline="\r\n")
    limits = {"memory_bytes": 1 << 30, "cpu_s": 30, "max_points": 5_000_000, "max_pixels": 1 << 26,
              "max_array_bytes": 1 << 30, "max_decompressed_bytes": 1 << 30, "max_compression_ratio": 200}
    pool = Inspector(1)
    try:
        for key, data in files.items():
            path = tmp_path / f"{key}.ply"
            path.write_bytes(data)
            out = pool.inspect(path, limits, 60)
            assert out.status == "ok", (key, out)
            assert out.payload["kind"] == "pointcloud" and out.payload["n_points"] == N
            assert out.payload["ignored"] == inspect_input(path).ignored and out.payload["ignored"], key
    finally:
        pool.close()


def test_comment_bytes_that_are_not_utf8_are_refused(tmp_path, cloud):
    # UTF-8 text is accepted in comments; arbitrary bytes are not text at all (the hostile corpus has one).
    path = tmp_path / "junk.ply"
    path.write_bytes(hand_written_ascii(*cloud).replace(b"made by hand", b"made \xff\xfe by hand"))
    with pytest.raises(InputError, match="not ASCII text \\(line 3.*not UTF-8"):
        load_raw(path)
