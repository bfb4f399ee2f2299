"""Priors as a resource (upload, list, get, download, delete, key scoping, refusals) and jobs that name one by id."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.priors_util import make_prior_file, post_prior, rewrite_prior
from tests.service_fixtures import TINY_OPTIONS, create_sdf_job, upload


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    return make_prior_file(tmp_path_factory.mktemp("priors") / "tiny.safetensors")


def test_upload_get_list_download_and_delete_a_prior(client, prior_file, make_settings):
    r = post_prior(client, prior_file, name="spheres")
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert r.headers["location"] == f"/v1/priors/{pid}" and pid.startswith("pri_")
    assert body["name"] == "spheres" and body["size"] == prior_file.stat().st_size
    assert body["sha256"] == hashlib.sha256(prior_file.read_bytes()).hexdigest()
    assert body["field"]["network"]["hidden_features"] == 32 and body["field"]["encoding"]["type"] == "identity"
    assert body["inner_steps"] == 2 and body["algorithm"] == "maml" and body["info"]["n_shapes"] == 3
    assert body["source_job"] is None and body["links"]["file"] == f"/v1/priors/{pid}/file"

    assert client.get(f"/v1/priors/{pid}").json() == body
    assert [p["id"] for p in client.get("/v1/priors").json()["items"]] == [pid]
    r = client.get(f"/v1/priors/{pid}/file")
    assert r.status_code == 200 and r.content == prior_file.read_bytes()
    assert r.headers["etag"] == f'"{body["sha256"]}"'
    assert client.get(f"/v1/priors/{pid}/file", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    stored = make_settings().data_dir / "priors" / pid / "prior.safetensors"
    assert stored.read_bytes() == prior_file.read_bytes()

    assert client.delete(f"/v1/priors/{pid}").status_code == 204
    for path in (f"/v1/priors/{pid}", f"/v1/priors/{pid}/file"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "prior_not_found"
    assert client.delete(f"/v1/priors/{pid}").status_code == 404
    assert not stored.parent.exists() and client.get("/v1/priors").json()["items"] == []


def test_priors_are_listed_in_pages(client, prior_file):
    ids = [post_prior(client, prior_file).json()["id"] for _ in range(3)]
    first = client.get("/v1/priors", params={"page_size": 2}).json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    second = client.get("/v1/priors", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    assert second["next_page_token"] is None
    listed = [p["id"] for p in first["items"] + second["items"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 3  # every prior once, newest first
    r = client.get("/v1/priors", params={"page_token": "garbage!"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_page_token"


def test_another_keys_prior_is_a_404_and_cannot_be_named_in_a_job(make_settings, prior_file, sphere_file):
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    with TestClient(create_app(make_settings(api_keys="key-a,key-b"))) as c:
        assert post_prior(c, prior_file).status_code == 401
        pid = post_prior(c, prior_file, headers=a).json()["id"]
        for method, path in (("get", f"/v1/priors/{pid}"), ("get", f"/v1/priors/{pid}/file"),
                             ("delete", f"/v1/priors/{pid}")):
            r = getattr(c, method)(path, headers=b)
            assert r.status_code == 404 and r.json()["code"] == "prior_not_found", (method, path)
        assert c.get("/v1/priors", headers=b).json()["items"] == []
        assert c.get(f"/v1/priors/{pid}", headers=a).status_code == 200  # b's delete did nothing
        uid = upload(c, sphere_file, headers=b).json()["id"]
        r = create_sdf_job(c, uid, overrides={**TINY_OPTIONS, "prior": {"id": pid}}, headers=b)
        assert r.status_code == 422 and r.json()["code"] == "prior_not_found"
        assert ["body", "spec", "overrides", "prior", "id"] in [e["loc"] for e in r.json()["errors"]]


def _flip_tensor_byte(src, dst):
    data = bytearray(src.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    data[8 + header_len + 5] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_corrupt_tampered_and_mismatched_priors_are_422_naming_the_reason(client, prior_file, tmp_path, make_settings):
    from safetensors import safe_open

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64 + b"not a prior")
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"params": [1.0, 2.0]}))
    tampered = _flip_tensor_byte(prior_file, tmp_path / "tampered.safetensors")
    version = rewrite_prior(shutil.copy(prior_file, tmp_path / "v99.safetensors"), metadata={"version": "99"})
    with safe_open(str(prior_file), framework="pt") as f:
        header = json.loads(f.metadata()["prior"])
    header["network"]["hidden_features"] = 64  # tensors are 32 wide: a consistent file of the wrong shape
    wide = rewrite_prior(shutil.copy(prior_file, tmp_path / "wide.safetensors"), header=header)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(prior_file.read_bytes()[:-50])
    cases = [(garbage, "is not a prior file"), (pickled, "is not a prior file"), (truncated, "not a readable prior"),
             (tampered, "modified after it was written"), (version, "version '99'"),
             (wide, r"do not fit the field")]
    for path, reason in cases:
        r = post_prior(client, path)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (path.name, r.text)
        body = r.json()
        assert body["code"] == "invalid_prior" and reason in body["detail"], (path.name, body)
        assert path.name in body["detail"] and "incoming" not in body["detail"]  # the client's name, not ours
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert post_prior(client, empty).json()["code"] == "empty_file"
    data = make_settings().data_dir / "priors"
    assert sorted(p.name for p in data.iterdir()) == [".incoming"] and not list((data / ".incoming").iterdir())
    assert client.get("/v1/priors").json()["items"] == []


def test_a_prior_over_the_size_limit_is_413(make_settings, prior_file):
    with TestClient(create_app(make_settings(max_prior_bytes=4096))) as c:
        r = post_prior(c, prior_file)
        assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
        assert c.get("/v1/priors").json()["items"] == []


def test_a_job_names_a_prior_by_id_and_keeps_its_own_copy_when_it_is_deleted(client, prior_file, sphere_file,
                                                                             make_settings):
    uid = upload(client, sphere_file).json()["id"]
    pid = post_prior(client, prior_file).json()["id"]
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"path": "/srv/x.safetensors", "id": pid}})
    assert r.status_code == 422 and ["body", "spec", "overrides", "prior", "path"] in [e["loc"] for e in r.json()["errors"]]
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"id": "pri_nothere"}})
    assert r.status_code == 422 and r.json()["code"] == "prior_not_found" and "pri_nothere" in r.json()["detail"]
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"id": "../../etc"}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_options"
    # The prior is for the neural sdf method only.
    r = client.post("/v1/jobs", json={"inputs": [uid], "spec": {"task": "sdf", "method": "kernel",
                                                                "overrides": {"prior": {"id": pid}}}})
    assert r.status_code == 422 and "prior" in r.json()["detail"] + json.dumps(r.json()["errors"])

    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"id": pid, "inner_steps": 3}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["overrides"]["prior"] == {"id": pid, "inner_steps": 3}  # stored as submitted
    copy = make_settings().data_dir / "jobs" / job["id"] / "input" / "prior.safetensors"
    assert copy.read_bytes() == prior_file.read_bytes()
    # Deleting a prior that a queued job names is allowed: the job runs from its own copy.
    assert client.delete(f"/v1/priors/{pid}").status_code == 204
    assert copy.is_file() and client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"id": pid}})
    assert r.status_code == 422 and r.json()["code"] == "prior_not_found"


def test_a_retry_uses_the_jobs_own_copy_of_a_deleted_prior(client, prior_file, sphere_file, make_settings):
    uid = upload(client, sphere_file).json()["id"]
    pid = post_prior(client, prior_file).json()["id"]
    jid = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"id": pid}}).json()["id"]
    assert client.post(f"/v1/jobs/{jid}/cancel").json()["status"] == "canceled"
    assert client.delete(f"/v1/priors/{pid}").status_code == 204
    r = client.post(f"/v1/jobs/{jid}/retry")
    assert r.status_code == 201, r.text
    copy = make_settings().data_dir / "jobs" / r.json()["id"] / "input" / "prior.safetensors"
    assert copy.read_bytes() == prior_file.read_bytes()
    # Another (unknown) prior in the retry's overrides gets no such fallback.
    r = client.post(f"/v1/jobs/{jid}/retry", json={"overrides": {**TINY_OPTIONS, "prior": {"id": "pri_other"}}})
    assert r.status_code == 422 and ["body", "overrides", "prior", "id"] in [e["loc"] for e in r.json()["errors"]]


def test_prior_uploads_honour_idempotency_keys(client, prior_file, tmp_path, make_settings):
    key = {"Idempotency-Key": "prior-1"}
    first = post_prior(client, prior_file, headers=key, name="spheres")
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    # the same key, file and name: the same prior, stored once
    again = post_prior(client, prior_file, headers=key, name="spheres")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["location"] == f"/v1/priors/{pid}"
    assert [p["id"] for p in client.get("/v1/priors").json()["items"]] == [pid]
    assert sorted(p.name for p in (make_settings().data_dir / "priors").iterdir()) == [".incoming", pid]
    # the same key with another file, or another name: refused, nothing stored
    other = make_prior_file(tmp_path / "other.safetensors", seed=1)
    for r in (post_prior(client, other, headers=key, name="spheres"), post_prior(client, prior_file, headers=key,
                                                                                   name="balls")):
        assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused", r.text
    # another key, or no key: a new prior
    assert post_prior(client, prior_file, headers={"Idempotency-Key": "prior-2"}, name="spheres").status_code == 201
    assert len(client.get("/v1/priors").json()["items"]) == 2
    # once the prior is deleted its key is stale; an over-long key is refused before anything is read
    assert client.delete(f"/v1/priors/{pid}").status_code == 204
    r = post_prior(client, prior_file, headers=key, name="spheres")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_stale"
    r = post_prior(client, prior_file, headers={"Idempotency-Key": "k" * 256})
    assert r.status_code == 422 and r.json()["code"] == "invalid_idempotency_key"
    assert not list((make_settings().data_dir / "priors" / ".incoming").iterdir())


def test_idempotency_keys_of_priors_are_per_api_key(make_settings, prior_file):
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    with TestClient(create_app(make_settings(api_keys="key-a,key-b"))) as c:
        pa = post_prior(c, prior_file, headers={**a, "Idempotency-Key": "same"})
        pb = post_prior(c, prior_file, headers={**b, "Idempotency-Key": "same"})
        assert pa.status_code == 201 and pb.status_code == 201 and pa.json()["id"] != pb.json()["id"]
