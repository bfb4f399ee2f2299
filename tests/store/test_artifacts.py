"""Artifact directory: atomic publish with a manifest, one set per job, traversal refused, zip, expiry."""

from __future__ import annotations

import json
import zipfile

from store import ArtifactStore, file_sha256, write_atomic


def test_publish_is_atomic_and_replaces_a_lost_attempt(tmp_path):
    arts = ArtifactStore(tmp_path)
    first = arts.attempt_dir("job_x", 1)
    (first / "mesh.ply").write_bytes(b"one")
    arts.publish("job_x", first)
    second = arts.attempt_dir("job_x", 2)
    (second / "mesh.ply").write_bytes(b"two!")
    (second / "metrics.json").write_text("{}")
    entries = arts.publish("job_x", second)
    assert [e["name"] for e in entries] == ["mesh.ply", "metrics.json"]
    assert (arts.artifacts_dir("job_x") / "mesh.ply").read_bytes() == b"two!"
    assert entries[0]["sha256"] == file_sha256(arts.artifacts_dir("job_x") / "mesh.ply")
    assert entries[0]["media_type"] == "application/x-ply"
    leftovers = [p.name for p in arts.job_dir("job_x").iterdir()]
    assert leftovers == ["artifacts"]  # no attempt or .old directories remain
    assert json.loads((arts.artifacts_dir("job_x") / "manifest.json").read_text()) == entries


def test_attempt_dir_clears_earlier_attempts(tmp_path):
    arts = ArtifactStore(tmp_path)
    stale = arts.attempt_dir("job_y", 1)
    (stale / "partial.ply").write_bytes(b"half")
    fresh = arts.attempt_dir("job_y", 2)
    assert not stale.exists() and list(fresh.iterdir()) == []


def test_artifact_names_outside_the_manifest_are_refused(tmp_path):
    arts = ArtifactStore(tmp_path)
    d = arts.attempt_dir("job_z", 1)
    (d / "mesh.ply").write_bytes(b"m")
    arts.publish("job_z", d)
    (tmp_path / "secret.txt").write_text("no")
    assert arts.artifact_path("job_z", "mesh.ply") is not None
    assert arts.artifact_path("job_z", "../../secret.txt") is None
    assert arts.artifact_path("job_z", "manifest.json") is None


def test_zip_holds_artifacts_manifest_and_log(tmp_path):
    arts = ArtifactStore(tmp_path)
    d = arts.attempt_dir("job_w", 1)
    (d / "mesh.ply").write_bytes(b"m" * 100)
    arts.publish("job_w", d)
    arts.log_path("job_w").write_text("line\n")
    path = arts.zip_path("job_w")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["job.log", "manifest.json", "mesh.ply"]
        assert zf.read("mesh.ply") == b"m" * 100
    assert arts.zip_path("job_w") == path


def test_link_input_survives_upload_removal_and_expiry_keeps_log(tmp_path):
    arts = ArtifactStore(tmp_path)
    up = arts.upload_path("upl_1", ".xyz")
    up.parent.mkdir(parents=True)
    up.write_text("0 0 0\n")
    linked = arts.link_input(up, "job_v")
    arts.remove_upload("upl_1")
    assert linked.read_text() == "0 0 0\n" and arts.find_job_input("job_v") == linked
    write_atomic(arts.log_path("job_v"), "log\n")
    arts.remove_artifacts("job_v")
    assert arts.find_job_input("job_v") is None and arts.log_path("job_v").is_file()
