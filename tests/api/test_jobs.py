"""Jobs API without a worker: create, validation, queue cap, idempotency, list, ETag, cancel, retry, delete, restart."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.app import create_app
from tests.service_fixtures import TINY_OPTIONS, create_sdf_job, sdf_spec, upload


def test_create_job_is_201_with_location_and_queue_position(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    r = create_sdf_job(client, uid, name="ball", metadata={"k": 1})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["queue_position"] == 1 and job["attempt"] == 0
    # The spec is stored as submitted; the config is resolved by the worker, for its device.
    assert job["spec"] == {"task": "sdf", "preset": "fast", "overrides": TINY_OPTIONS}
    assert job["config"] is None and job["device"] is None
    assert job["inputs"][0]["upload_id"] == uid and job["inputs"][0]["has_normals"] is True
    assert job["metadata"] == {"k": 1} and job["name"] == "ball"
    second = create_sdf_job(client, uid).json()
    assert second["queue_position"] == 2


def test_invalid_overrides_are_422_naming_the_field(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    r = create_sdf_job(client, uid, overrides={"train": {"steps": -5}, "encoding": {"type": "hashgrid", "n_levelz": 3}})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "invalid_options"
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "spec", "overrides", "train", "steps"] in locs
    assert any(loc[-1] == "n_levelz" for loc in locs)
    r = create_sdf_job(client, uid, overrides={"precondition": {"start": 0.5, "end": 0.1}})
    assert r.status_code == 422 and "precondition" in json.dumps(r.json()["errors"])
    r = client.post("/v1/jobs", json={"spec": {"task": "nerf"}, "inputs": [uid]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert r.json()["errors"][0]["loc"] == ["body", "spec", "task"]
    r = client.post("/v1/jobs", json={"spec": {"task": "sdf", "overrides": {"task": "image"}}, "inputs": [uid]})
    assert r.status_code == 422 and "contradicts" in r.json()["detail"]


def test_an_override_bad_on_one_device_only_fails_at_submit(client, sphere_file):
    # A gpu-queue job may run on a GPU or a CPU worker, whose presets differ: an override that is
    # valid on top of the CPU preset but not on top of the CUDA one (a finest grid level below the
    # CUDA preset's base resolution) must fail at submit, not later on a GPU worker.
    from nfcore.presets import preset_overrides

    base_cpu = preset_overrides("sdf", "fast", "cpu")["encoding"]["base_resolution"]
    base_cuda = preset_overrides("sdf", "fast", "cuda")["encoding"]["base_resolution"]
    assert base_cpu + 1 < base_cuda
    uid = upload(client, sphere_file).json()["id"]
    finest = {"encoding": {"finest_resolution": base_cpu + 1}}
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, **finest})
    assert r.status_code == 422 and r.json()["code"] == "invalid_options", r.text
    assert "finest_resolution" in r.json()["detail"] + str(r.json()["errors"])
    # A job that asks for the CPU is only validated (and queued) for the CPU, where it is fine.
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, **finest, "device": "cpu"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["overrides"]["device"] == "cpu"


def test_a_prior_path_cannot_be_named_through_the_api(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    r = create_sdf_job(client, uid, overrides={**TINY_OPTIONS, "prior": {"path": "/etc/passwd"}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_options"
    assert ["body", "spec", "overrides", "prior", "path"] in [e["loc"] for e in r.json()["errors"]]
    assert "POST /v1/priors" in r.json()["detail"]  # says what to do instead


def test_input_must_suit_the_task(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    r = client.post("/v1/jobs", json={"spec": {"task": "image", "preset": "fast"}, "inputs": [uid]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input" and "image" in r.json()["detail"]
    r = client.post("/v1/jobs", json={"spec": sdf_spec(), "inputs": ["upl_nope"]})
    assert r.status_code == 404 and r.json()["code"] == "upload_not_found"


def test_the_server_default_preset_is_stored_in_the_spec(make_settings, sphere_file):
    with TestClient(create_app(make_settings(default_preset="quality"))) as c:
        uid = upload(c, sphere_file).json()["id"]
        job = c.post("/v1/jobs", json={"inputs": [uid]}).json()
        assert job["spec"] == {"task": "sdf", "preset": "quality", "overrides": {}}
        job = c.post("/v1/jobs", json={"inputs": [uid], "spec": {"preset": "fast"}}).json()
        assert job["spec"]["preset"] == "fast"


def test_queue_full_is_429_with_retry_after(make_settings, sphere_file):
    with TestClient(create_app(make_settings(max_queue=2, retry_after_s=17))) as c:
        uid = upload(c, sphere_file).json()["id"]
        assert create_sdf_job(c, uid).status_code == 201
        assert create_sdf_job(c, uid).status_code == 201
        r = create_sdf_job(c, uid)
        assert r.status_code == 429 and r.headers["retry-after"] == "17" and r.json()["code"] == "queue_full"


def test_idempotency_key_replays_and_rejects_other_bodies(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    h = {"Idempotency-Key": "job-key-1"}
    a = create_sdf_job(client, uid, headers=h)
    b = create_sdf_job(client, uid, headers=h)
    assert a.status_code == 201 and b.status_code == 200 and b.headers["idempotent-replayed"] == "true"
    assert a.json()["id"] == b.json()["id"]
    assert len(client.get("/v1/jobs").json()["items"]) == 1
    c = create_sdf_job(client, uid, headers=h, name="different")
    assert c.status_code == 422 and c.json()["code"] == "idempotency_key_reused"


def test_one_shot_multipart_form(client, sphere_file):
    job = json.dumps({"spec": {"task": "sdf", "preset": "fast", "overrides": {"train": {"steps": 30}}}})
    with open(sphere_file, "rb") as f:
        r = client.post("/v1/jobs/form", data={"job": job}, files={"file": ("ball.xyz", f, "text/plain")})
    assert r.status_code == 201, r.text
    assert r.json()["inputs"][0]["filename"] == "ball.xyz" and r.json()["spec"]["overrides"]["train"]["steps"] == 30
    with open(sphere_file, "rb") as f:
        r = client.post("/v1/jobs/form", data={"job": '{"spec": {"task": "sdf"}, "bogus": 1}'},
                        files={"file": ("b.xyz", f)})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "job", "bogus"]
    with open(sphere_file, "rb") as f:
        r = client.post("/v1/jobs/form", data={"job": '{"spec": {"overrides": {"train": {"steps": 0}}}}'},
                        files={"file": ("b.xyz", f)})
    assert r.status_code == 422 and ["body", "job", "spec", "overrides", "train", "steps"] in [
        e["loc"] for e in r.json()["errors"]]
    with open(sphere_file, "rb") as f:
        r = client.post("/v1/jobs/form", files={"file": ("b.dxf", f)})
    assert r.status_code == 415


def test_form_body_limit_is_413(make_settings, sphere_file):
    with TestClient(create_app(make_settings(max_form_bytes=5000))) as c, open(sphere_file, "rb") as f:
        r = c.post("/v1/jobs/form", files={"file": ("ball.xyz", f)})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


def test_list_filters_and_pages(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    ids = [create_sdf_job(client, uid).json()["id"] for _ in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    page = client.get("/v1/jobs", params={"page_size": 2}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2] and page["items"][0]["config"] is None
    seen = [j["id"] for j in page["items"]]
    while page["next_page_token"]:
        page = client.get("/v1/jobs", params={"page_size": 2, "page_token": page["next_page_token"]}).json()
        seen += [j["id"] for j in page["items"]]
    assert seen == ids[::-1]
    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()["items"]
    assert [j["id"] for j in canceled] == [ids[0]]
    assert client.get("/v1/jobs", params={"status": "queued,running", "task": "sdf"}).json()["items"][0]["id"] == ids[4]
    assert client.get("/v1/jobs", params={"status": "lost"}).status_code == 422
    assert client.get("/v1/jobs", params={"page_token": "garbage!"}).json()["code"] == "invalid_page_token"


def test_get_job_etag_304_and_404(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    jid = create_sdf_job(client, uid).json()["id"]
    r = client.get(f"/v1/jobs/{jid}")
    tag = r.headers["etag"]
    assert r.headers["retry-after"]
    assert client.get(f"/v1/jobs/{jid}", headers={"If-None-Match": tag}).status_code == 304
    client.post(f"/v1/jobs/{jid}/cancel")
    r2 = client.get(f"/v1/jobs/{jid}", headers={"If-None-Match": tag})
    assert r2.status_code == 200 and r2.headers["etag"] != tag and "retry-after" not in r2.headers
    r = client.get("/v1/jobs/job_missing")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"


def test_cancel_queued_then_retry_then_delete(client, sphere_file, make_settings):
    uid = upload(client, sphere_file).json()["id"]
    jid = create_sdf_job(client, uid).json()["id"]
    r = client.post(f"/v1/jobs/{jid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 200  # idempotent
    assert client.get(f"/v1/jobs/{jid}/artifacts").status_code == 409
    client.delete(f"/v1/uploads/{uid}")  # the job keeps its own copy of the input
    r = client.post(f"/v1/jobs/{jid}/retry")
    assert r.status_code == 201, r.text
    same = r.json()
    assert same["retry_of"] == jid and same["spec"] == client.get(f"/v1/jobs/{jid}").json()["spec"]
    client.post(f"/v1/jobs/{same['id']}/cancel")
    r = client.post(f"/v1/jobs/{jid}/retry", json={"overrides": {"train": {"steps": 40}}})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["retry_of"] == jid and new["status"] == "queued" and new["spec"]["overrides"] == {"train": {"steps": 40}}
    assert client.post(f"/v1/jobs/{jid}/retry", json={"overrides": {"train": {"steps": -1}}}).status_code == 422
    assert client.post(f"/v1/jobs/{new['id']}/retry").status_code == 409  # still queued
    assert client.delete(f"/v1/jobs/{jid}").status_code == 204
    assert client.get(f"/v1/jobs/{jid}").status_code == 404
    assert not (make_settings().data_dir / "jobs" / jid).exists()
    assert client.get(f"/v1/jobs/{new['id']}").status_code == 200


def test_logs_and_events_of_a_finished_job(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    jid = create_sdf_job(client, uid).json()["id"]
    client.post(f"/v1/jobs/{jid}/cancel")
    logs = client.get(f"/v1/jobs/{jid}/logs").json()
    assert logs == {"lines": [], "next_offset": 0, "complete": True}
    with client.stream("GET", f"/v1/jobs/{jid}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert "event: status" in text and '"status":"canceled"' in text
    assert text.rstrip().endswith(json.dumps({"id": jid, "status": "canceled"}))


def test_restarted_api_finds_every_job(make_settings, sphere_file):
    settings = make_settings()
    with TestClient(create_app(settings)) as c:
        uid = upload(c, sphere_file).json()["id"]
        ids = {create_sdf_job(c, uid).json()["id"] for _ in range(3)}
        c.post(f"/v1/jobs/{sorted(ids)[0]}/cancel")
    with TestClient(create_app(make_settings())) as c2:
        items = c2.get("/v1/jobs").json()["items"]
        assert {j["id"] for j in items} == ids
        assert sorted(j["status"] for j in items) == ["canceled", "queued", "queued"]
        assert c2.get(f"/v1/uploads/{uid}").status_code == 200


def test_get_job_is_one_query_and_a_matching_etag_is_a_304(client, sphere_file):
    from sqlalchemy import event

    uid = upload(client, sphere_file).json()["id"]
    create_sdf_job(client, uid)
    jid = create_sdf_job(client, uid, webhook="https://example.org/hook").json()["id"]
    engine = client.app.state.services.store.engine
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute: the SQL)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        r = client.get(f"/v1/jobs/{jid}")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert r.status_code == 200 and len(statements) == 1, statements
    job = r.json()
    assert job["queue_position"] == 2 and job["webhook"] == "https://example.org/hook"
    assert job["webhook_events_filter"] == ["completed"] and r.headers["cache-control"] == "no-cache"
    tag = r.headers["etag"]
    # If-None-Match compares weakly (RFC 9110 §13.1.2): the tag with or without W/, in a list, or `*`.
    for header in (tag, tag.removeprefix("W/"), f'"other", {tag}', "*"):
        r304 = client.get(f"/v1/jobs/{jid}", headers={"If-None-Match": header})
        assert r304.status_code == 304 and r304.content == b"" and r304.headers["etag"] == tag, header
        assert r304.headers["retry-after"]
    assert client.get(f"/v1/jobs/{jid}", headers={"If-None-Match": '"other"'}).status_code == 200
    # The first job leaves the queue: this one's position, hence its ETag, changes.
    first = client.get("/v1/jobs", params={"page_size": 2}).json()["items"][1]["id"]
    client.post(f"/v1/jobs/{first}/cancel")
    moved = client.get(f"/v1/jobs/{jid}", headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved.json()["queue_position"] == 1 and moved.headers["etag"] != tag
    r = client.get("/v1/jobs/job_missing", headers={"If-None-Match": "*"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


def test_job_error_codes_are_the_stores(client):
    from typing import get_args

    from api.schemas import JobError
    from store import RETRYABLE, ErrorCode

    codes = {c.value for c in ErrorCode}
    assert set(get_args(JobError.model_fields["code"].annotation)) == codes == set(RETRYABLE)
    assert "disk_full" in codes and RETRYABLE["disk_full"] is True
    published = client.get("/openapi.json").json()["components"]["schemas"]["JobError"]["properties"]["code"]
    assert set(published["enum"]) == codes
