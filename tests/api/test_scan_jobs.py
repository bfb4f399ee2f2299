"""POST /v1/jobs with several uploads: overlapping scans of one object (task sdf), and every way to get it wrong."""

from __future__ import annotations

import numpy as np
import trimesh

from tests.service_fixtures import TINY_OPTIONS, upload


def _scan(path, seed: int, normals: bool = True):
    """A cap of a sphere (one view of it), with or without normals."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(600, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = d[d[:, seed % 3] > -0.2]
    np.savetxt(path, np.hstack([0.5 * d, d]) if normals else 0.5 * d, fmt="%.6f")
    return path


def _ids(client, tmp_path, n: int, normals: bool = True) -> list[str]:
    out = []
    for i in range(n):
        r = upload(client, _scan(tmp_path / f"scan{i}.xyz", i, normals))
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def _loc(r) -> list:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["loc"] for e in r.json()["errors"]]


def test_an_sdf_job_takes_several_scans_and_lists_them(client, tmp_path):
    ids = _ids(client, tmp_path, 3, normals=False)
    spec = {"task": "sdf", "method": "kernel", "overrides": {"input": {"registration": "on"}}}
    r = client.post("/v1/jobs", json={"inputs": ids, "spec": spec})
    assert r.status_code == 201, r.text
    job = r.json()
    assert [i["upload_id"] for i in job["inputs"]] == ids
    assert [i["filename"] for i in job["inputs"]] == ["scan0.xyz", "scan1.xyz", "scan2.xyz"]
    assert all(i["kind"] == "pointcloud" and i["has_normals"] is False for i in job["inputs"])
    assert job["spec"]["overrides"]["input"]["registration"] == "on"
    # The job has its own copy of each scan, in order.
    from service.jobs import job_input_files

    services = client.app.state.services
    stored = services.store.get_job(job["id"])
    files = job_input_files(services.artifacts, stored)
    assert [f.name for f in files] == ["scan-0000.xyz", "scan-0001.xyz", "scan-0002.xyz"]
    assert files[1].read_bytes() == (tmp_path / "scan1.xyz").read_bytes()
    # The same body again with the same key replays, a different list does not.
    again = client.post("/v1/jobs", json={"inputs": ids, "spec": spec}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 201
    replay = client.post("/v1/jobs", json={"inputs": ids, "spec": spec}, headers={"Idempotency-Key": "k1"})
    assert replay.status_code == 200 and replay.json()["id"] == again.json()["id"]
    other = client.post("/v1/jobs", json={"inputs": ids[::-1], "spec": spec}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_several_inputs_for_another_task_name_the_second(client, tmp_path):
    ids = _ids(client, tmp_path, 2)
    r = client.post("/v1/jobs", json={"inputs": ids, "spec": {"task": "occupancy"}})
    assert _loc(r) == [["body", "inputs", 1]]
    assert "takes one input" in r.json()["detail"]


def test_a_list_past_the_cap_names_the_first_entry_too_many(client, tmp_path):
    ids = _ids(client, tmp_path, 1) * 65  # the cap is checked before anything else about the entries
    r = client.post("/v1/jobs", json={"inputs": ids, "spec": {"task": "sdf"}})
    assert _loc(r) == [["body", "inputs", 64]]
    assert "at most 64" in r.json()["detail"]


def test_unknown_duplicate_mesh_and_unoriented_entries_are_named_by_place(client, tmp_path):
    ids = _ids(client, tmp_path, 2)
    spec = {"task": "sdf", "overrides": TINY_OPTIONS}
    assert _loc(client.post("/v1/jobs", json={"inputs": [ids[0], "upl_nope", ids[1]], "spec": spec})) == \
        [["body", "inputs", 1]]
    assert _loc(client.post("/v1/jobs", json={"inputs": [ids[0], ids[1], ids[0]], "spec": spec})) == \
        [["body", "inputs", 2]]
    mesh = tmp_path / "box.obj"
    trimesh.creation.box().export(mesh)
    mid = upload(client, mesh).json()["id"]
    r = client.post("/v1/jobs", json={"inputs": [ids[0], mid], "spec": spec})
    assert _loc(r) == [["body", "inputs", 1]] and "must be point clouds" in r.json()["detail"]
    (tmp_path / "bare").mkdir()
    bare = _ids(client, tmp_path / "bare", 1, normals=False)[0]
    no_estimate = {"task": "sdf", "overrides": {"input": {"estimate_normals": False}}}
    r = client.post("/v1/jobs", json={"inputs": [ids[0], ids[1], bare], "spec": no_estimate})
    assert _loc(r) == [["body", "inputs", 2]]
    # A single unknown id keeps its 404; an empty list is the schema's 422.
    assert client.post("/v1/jobs", json={"inputs": ["upl_nope"], "spec": spec}).status_code == 404
    assert client.post("/v1/jobs", json={"inputs": [], "spec": spec}).status_code == 422
    # A bad registration setting is a validation error naming the field.
    bad = {"task": "sdf", "overrides": {"input": {"registration": "sometimes"}}}
    r = client.post("/v1/jobs", json={"inputs": ids, "spec": bad})
    assert ["body", "spec", "overrides", "input", "registration"] in _loc(r)


def test_the_openapi_document_describes_several_inputs(client):
    schema = client.get("/openapi.json").json()
    inputs = schema["components"]["schemas"]["JobCreate"]["properties"]["inputs"]
    assert inputs["maxItems"] == 64 and "scans" in inputs["description"]
    assert "registration" in schema["paths"]["/v1/jobs"]["post"]["description"]
