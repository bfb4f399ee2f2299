"""Several overlapping scans merged into one cloud (nfcore.scans): registration, normals, the fit with a list."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from nfcore.errors import InputError
from nfcore.open3d_import import open3d_available
from nfcore.scans import AUTO_RATIO, Scan, kabsch, merge_scans, read_scans, rotation_degrees

needs_open3d = pytest.mark.skipif(not open3d_available(), reason="registration needs Open3D")

VIEWS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)


def _blob() -> trimesh.Trimesh:
    """A closed, smooth shape without symmetries (so that every rigid motion shows in the residual)."""
    m = trimesh.creation.icosphere(subdivisions=3)
    v = m.vertices
    r = 1 + 0.25 * np.sin(3 * v[:, 0]) * np.cos(2 * v[:, 1]) + 0.15 * v[:, 2] ** 2
    m.vertices = v * r[:, None] * np.array([1.0, 0.8, 0.6])
    return m


def _views(*, degrees: float, shift: float, noise: float = 0.004, n: int = 2500, seed: int = 0):
    """Six overlapping views, each sampled on its own (as a scanner would) with noise, then moved by a known
    rigid misregistration. Returns (scans with normals, true points per view, the perturbations)."""
    rng = np.random.default_rng(seed)
    mesh = _blob()
    scans, truth, perturbs = [], [], []
    for i, d in enumerate(VIEWS):
        pts, faces = trimesh.sample.sample_surface(mesh, 2 * n, seed=seed + i)
        nrm = mesh.face_normals[faces]
        keep = nrm @ d > -0.1  # a view sees a bit more than its half: the views overlap
        pts, nrm = pts[keep], nrm[keep]
        noisy = pts + rng.normal(0, noise, pts.shape)
        rot = Rotation.from_rotvec(rng.normal(size=3) / math.sqrt(3) * math.radians(degrees)).as_matrix()
        move = rng.normal(size=3)
        move *= shift / np.linalg.norm(move)
        c = pts.mean(axis=0)
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = rot, c - rot @ c + move
        scans.append(Scan(f"view{i}", noisy @ rot.T + t[:3, 3], nrm @ rot.T))
        truth.append(pts)
        perturbs.append(t)
    return scans, truth, perturbs


def _misregistration(truth, perturbs, transforms) -> float:
    """RMS distance of the points from their true places after the best common rigid motion (gauge-free)."""
    placed = np.concatenate([p @ (a @ m)[:3, :3].T + (a @ m)[:3, 3] for p, m, a in zip(truth, perturbs, transforms, strict=True)])
    true = np.concatenate(truth)
    g = kabsch(placed, true)
    return float(np.sqrt(((placed @ g[:3, :3].T + g[:3, 3] - true) ** 2).sum(axis=1).mean()))


@needs_open3d
def test_registration_recovers_a_known_small_misalignment():
    scans, truth, perturbs = _views(degrees=1.0, shift=0.02)
    merged = merge_scans(scans, register="auto", seed=0)
    report = merged.report
    assert report["registered"] and "above" in report["reason"], report["reason"]  # auto saw the misalignment
    assert report["residual_ratio"] > 1.5 * AUTO_RATIO
    assert report["residual_after"] < report["residual_before"] / 2
    for view in report["views"]:
        assert view["residual_after"] < view["residual_before"] and view["overlap_fraction"] > 0.5
    before = _misregistration(truth, perturbs, [np.eye(4)] * len(scans))
    after = _misregistration(truth, perturbs, merged.transforms)
    assert after < before / 3, (before, after)
    # The merged cloud is every scan after its transform, the frame anchored where the input put it.
    assert merged.points.shape == (sum(len(s.points) for s in scans), 3)
    moved = np.concatenate([s.points @ t[:3, :3].T + t[:3, 3] for s, t in zip(scans, merged.transforms, strict=True)])
    np.testing.assert_allclose(merged.points, moved, atol=1e-5)
    assert abs(moved.mean(axis=0) - np.concatenate([s.points for s in scans]).mean(axis=0)).max() < 1e-6


@needs_open3d
def test_auto_leaves_registered_scans_alone_and_off_never_moves():
    scans, _, _ = _views(degrees=0.0, shift=0.0)
    auto = merge_scans(scans, register="auto", seed=0)
    assert not auto.report["registered"] and "not above" in auto.report["reason"], auto.report
    assert auto.report["residual_ratio"] < AUTO_RATIO
    off = merge_scans(_views(degrees=1.0, shift=0.02)[0], register="off", seed=0)
    assert not off.report["registered"] and off.report["reason"] == "register: off"
    assert all(np.array_equal(t, np.eye(4)) for t in off.transforms)
    assert all(v["rotation_degrees"] == 0 and v["translation_spacings"] == 0 for v in off.report["views"])


@needs_open3d
def test_given_normals_turn_with_their_scan_and_missing_ones_are_estimated():
    scans, _, _ = _views(degrees=1.0, shift=0.02)
    scans[5] = Scan(scans[5].name, scans[5].points, None)  # one view without normals
    merged = merge_scans(scans, register="on", seed=0)
    assert merged.normals_estimated and any("estimated on the merged cloud" in n for n in merged.notes)
    start = 0
    for scan, t, view in zip(scans, merged.transforms, merged.report["views"], strict=True):
        stop = start + len(scan.points)
        got = merged.normals[start:stop]
        if scan.normals is not None:
            assert view["rotation_degrees"] > 0.1  # it did move, so keeping the normals unturned would fail
            np.testing.assert_allclose(got, scan.normals @ t[:3, :3].T, atol=1e-5)
            assert abs(rotation_degrees(t) - view["rotation_degrees"]) < 1e-3
        else:  # estimated and oriented outward on the closed shape: they agree with the true normals' side
            centre = merged.points.mean(axis=0)
            outward = np.einsum("ij,ij->i", got, merged.points[start:stop] - centre) > 0
            assert outward.mean() > 0.95
        start = stop


def test_read_scans_names_the_bad_view(tmp_path):
    good = tmp_path / "a.xyz"
    np.savetxt(good, np.random.default_rng(0).normal(size=(50, 3)))
    mesh = tmp_path / "m.obj"
    trimesh.creation.box().export(mesh)
    from nfcore.config import InputConfig

    with pytest.raises(InputError, match=r"m\.obj \(view 1\) is a mesh"):
        read_scans([good, mesh], InputConfig())
    few = tmp_path / "few.xyz"
    np.savetxt(few, np.zeros((3, 3)))
    with pytest.raises(InputError, match=r"few\.xyz \(view 1\) has 3 points"):
        read_scans([good, few], InputConfig())


def test_fit_takes_a_list_of_scans_and_keeps_one_path_unchanged(tmp_path):
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    scans, _, _ = _views(degrees=0.5, shift=0.01, n=1500)
    paths = []
    for s in scans[:4] + scans[4:]:
        path = tmp_path / f"{s.name}.xyz"
        np.savetxt(path, s.points, fmt="%.6f")  # no normals: estimated on the merged cloud
        paths.append(path)
    config = resolve(MethodSpec(task="sdf", method="kernel", preset="fast",
                                overrides={"input": {"registration": "off"}}), "cpu")
    result = fit(paths, config, tmp_path / "out", device="cpu")
    scans_report = result.metrics["scans"]
    assert scans_report["n_scans"] == 6 and [v["name"] for v in scans_report["views"]] == [p.name for p in paths]
    assert result.metrics["n_points"] == sum(v["n_points"] for v in scans_report["views"])
    assert any("merged without registration" in n for n in result.metrics["input"]["notes"])
    assert len(result.mesh.faces) > 100 and (tmp_path / "out" / "mesh.ply").is_file()
    one = fit(paths[0], config, tmp_path / "one", device="cpu")
    assert "scans" not in one.metrics
    with pytest.raises(InputError, match="only the sdf task merges"):
        fit(paths[:2], resolve(MethodSpec(task="occupancy"), "cpu"), tmp_path / "occ", device="cpu")
