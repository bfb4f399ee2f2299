"""Webhooks: a real HTTP receiver on loopback gets signed job events; retries, give-up, validation."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from service.webhooks import verify
from store import JobStatus, utcnow
from tests.service_fixtures import Receiver, create_sdf_job, upload, wait_for


@pytest.fixture
def hook_client(make_settings):
    """An app whose dispatcher the test drives by hand (run_once), retrying after 0 s."""
    with TestClient(create_app(make_settings(webhooks_enabled=False, webhook_retry_base_s=1e-3,
                                             webhook_max_attempts=3, webhook_timeout_s=2))) as c:
        yield c


def _run(client, job_id: str, status: JobStatus = JobStatus.succeeded) -> None:
    """Move a job through running to `status` as a worker would (claim, then finish)."""
    store = client.app.state.services.store
    job = store.claim(job_id, "test-worker", stale_before=utcnow() - timedelta(hours=1))
    assert job is not None
    if status is not None:
        assert store.finish(job_id, job.attempt, status, metrics={"chamfer": 0.1})


def test_start_and_completed_events_are_signed_job_objects(hook_client, sphere_file):
    c = hook_client
    dispatcher = c.app.state.webhook_dispatcher
    uid = upload(c, sphere_file).json()["id"]
    with Receiver() as rx:
        r = create_sdf_job(c, uid, webhook=rx.url, webhook_events_filter=["start", "completed"])
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["webhook"] == rx.url and job["webhook_events_filter"] == ["completed", "start"]
        dispatcher.run_once()
        assert rx.requests == []  # queued: nothing has happened yet
        _run(c, job["id"], status=None)
        dispatcher.run_once()
        assert [e["type"] for e in rx.events()] == ["job.started"]
        store = c.app.state.services.store
        store.finish(job["id"], store.get_job(job["id"]).attempt, JobStatus.succeeded)
        dispatcher.run_once()
        dispatcher.run_once()  # nothing more to send
        events = rx.events()
        assert [e["type"] for e in events] == ["job.started", "job.completed"]
        assert events[1]["data"]["id"] == job["id"] and events[1]["data"]["status"] == "succeeded"
        assert events[0]["data"]["status"] in ("running", "succeeded")

        secret = c.get("/v1/webhooks/secret").json()["key"]
        assert secret.startswith("whsec_")
        for req in rx.requests:
            assert req["path"] == "/hook" and req["headers"]["content-type"] == "application/json"
            assert verify(secret, req["headers"], req["body"])
            assert not verify(secret, req["headers"], req["body"].replace(b'"status"', b'"statuS"'))
        assert len({r["headers"]["webhook-id"] for r in rx.requests}) == 2

    deliveries = c.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"]
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in deliveries] == [
        ("start", "delivered", 1, 204),
        ("completed", "delivered", 1, 204),
    ]


def test_default_filter_is_completed_and_failures_are_retried(hook_client, sphere_file):
    c = hook_client
    dispatcher = c.app.state.webhook_dispatcher
    uid = upload(c, sphere_file).json()["id"]
    with Receiver(statuses=[500, 503]) as rx:
        job = create_sdf_job(c, uid, webhook=rx.url).json()
        assert job["webhook_events_filter"] == ["completed"]
        _run(c, job["id"], JobStatus.failed)
        for _ in range(3):
            dispatcher.run_once()
            time.sleep(0.05)  # past the (1 ms, 4 ms) backoff
        # 500, 503, then 204: three POSTs of the same message
        assert len(rx.requests) == 3
        assert len({r["headers"]["webhook-id"] for r in rx.requests}) == 1
        assert rx.events()[0]["type"] == "job.completed" and rx.events()[0]["data"]["status"] == "failed"
    (d,) = c.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"]
    assert d["status"] == "delivered" and d["attempts"] == 3 and d["last_status_code"] == 204


def test_gives_up_after_max_attempts_and_on_410(hook_client, sphere_file):
    c = hook_client
    dispatcher = c.app.state.webhook_dispatcher
    uid = upload(c, sphere_file).json()["id"]
    with Receiver(statuses=[500] * 10) as rx:
        a = create_sdf_job(c, uid, webhook=rx.url).json()
        _run(c, a["id"])
        for _ in range(5):
            dispatcher.run_once()
            time.sleep(0.05)
        assert len(rx.requests) == 3  # webhook_max_attempts
    (d,) = c.get(f"/v1/jobs/{a['id']}/webhooks").json()["items"]
    assert d["status"] == "failed" and d["attempts"] == 3 and "500" in d["last_error"]

    with Receiver(statuses=[410]) as rx:
        b = create_sdf_job(c, uid, webhook=rx.url).json()
        _run(c, b["id"])
        for _ in range(3):
            dispatcher.run_once()
        assert len(rx.requests) == 1
    (d,) = c.get(f"/v1/jobs/{b['id']}/webhooks").json()["items"]
    assert d["status"] == "failed" and d["last_status_code"] == 410


def test_unreachable_receiver_is_retried_not_fatal(hook_client, sphere_file):
    c = hook_client
    uid = upload(c, sphere_file).json()["id"]
    rx = Receiver()
    url = rx.url
    rx.server.server_close()  # nothing listens on that port any more
    job = create_sdf_job(c, uid, webhook=url).json()
    _run(c, job["id"])
    c.app.state.webhook_dispatcher.run_once()
    (d,) = c.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"]
    assert d["status"] == "pending" and d["attempts"] == 1 and "Connect" in d["last_error"]
    assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"  # the job itself is untouched


def test_canceled_queued_job_sends_completed_only(hook_client, sphere_file):
    c = hook_client
    uid = upload(c, sphere_file).json()["id"]
    with Receiver() as rx:
        job = create_sdf_job(c, uid, webhook=rx.url, webhook_events_filter=["start", "completed"]).json()
        assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "canceled"
        c.app.state.webhook_dispatcher.run_once()
        assert [(e["type"], e["data"]["status"]) for e in rx.events()] == [("job.completed", "canceled")]


def test_bad_webhook_requests_are_422(hook_client, sphere_file):
    c = hook_client
    uid = upload(c, sphere_file).json()["id"]
    for bad in ("ftp://example.com/x", "not a url", "http://", "/relative/path", "http://e.com/" + "a" * 2100):
        r = create_sdf_job(c, uid, webhook=bad)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
        assert "webhook" in json.dumps(r.json())
    r = create_sdf_job(c, uid, webhook="http://example.com/h", webhook_events_filter=["output"])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-2:] == ["webhook_events_filter", 0]
    r = create_sdf_job(c, uid, webhook_events_filter=["start"])
    assert r.status_code == 422 and r.json()["code"] == "invalid_webhook"
    # Jobs without a webhook show none, and have no deliveries.
    plain = create_sdf_job(c, uid).json()
    assert plain["webhook"] is None and plain["webhook_events_filter"] is None
    assert c.get(f"/v1/jobs/{plain['id']}/webhooks").json() == {"items": []}


def test_retry_keeps_the_webhook_and_delete_removes_it(hook_client, sphere_file):
    c = hook_client
    uid = upload(c, sphere_file).json()["id"]
    job = create_sdf_job(c, uid, webhook="http://127.0.0.1:9/h").json()
    _run(c, job["id"], JobStatus.failed)
    again = c.post(f"/v1/jobs/{job['id']}/retry", json={}).json()
    assert again["webhook"] == "http://127.0.0.1:9/h" and again["webhook_events_filter"] == ["completed"]
    hooks = c.app.state.services.webhooks
    c.app.state.webhook_dispatcher.run_once()  # queues (and tries) the first job's completed event
    assert hooks.deliveries(job["id"])
    assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert hooks.subscription(job["id"]) is None and hooks.deliveries(job["id"]) == []


def test_each_api_key_has_its_own_secret(make_settings):
    with TestClient(create_app(make_settings(api_keys=["key-a", "key-b"], webhooks_enabled=False))) as c:
        a = c.get("/v1/webhooks/secret", headers={"Authorization": "Bearer key-a"}).json()["key"]
        b = c.get("/v1/webhooks/secret", headers={"Authorization": "Bearer key-b"}).json()["key"]
        assert a != b and a.startswith("whsec_") and b.startswith("whsec_")
        assert c.get("/v1/webhooks/secret").status_code == 401
        # The server secret persists in the data directory: a restart signs with the same keys.
        data_dir = c.app.state.services.settings.data_dir
    assert (data_dir / "webhook_secret").is_file()
    with TestClient(create_app(make_settings(api_keys=["key-a"], webhooks_enabled=False))) as c:
        assert c.get("/v1/webhooks/secret", headers={"Authorization": "Bearer key-a"}).json()["key"] == a


def test_dispatcher_loop_runs_inside_the_app(make_settings, sphere_file):
    with TestClient(create_app(make_settings(webhook_interval_s=0.1))) as c, Receiver() as rx:
        uid = upload(c, sphere_file).json()["id"]
        job = create_sdf_job(c, uid, webhook=rx.url).json()
        _run(c, job["id"])
        wait_for(lambda: rx.requests, 10, what="the completed webhook")
        assert rx.events()[0]["data"]["id"] == job["id"]


def test_openapi_documents_the_webhook(client):
    spec = client.get("/openapi.json").json()
    assert "job-event" in spec["webhooks"]
    body = spec["webhooks"]["job-event"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/WebhookEvent")
    props = spec["components"]["schemas"]["JobCreate"]["properties"]
    assert "webhook" in props and "webhook_events_filter" in props
    assert "/v1/webhooks/secret" in spec["paths"] and "/v1/jobs/{job_id}/webhooks" in spec["paths"]


def test_private_addresses_can_be_refused(make_settings, sphere_file):
    # On a public deployment the server must not be made to call its own network (SSRF).
    from store import JobWebhook

    with TestClient(create_app(make_settings(webhook_allow_private=False, webhooks_enabled=False))) as c, \
            Receiver() as rx:
        uid = upload(c, sphere_file).json()["id"]
        for url in (rx.url, "http://localhost:8080/h", "http://10.1.2.3/h", "http://169.254.169.254/latest",
                    "http://[::1]/h", "http://no-such-host.invalid/h"):
            r = create_sdf_job(c, uid, webhook=url)
            assert r.status_code == 422 and r.json()["code"] == "invalid_webhook", (url, r.text)
        assert create_sdf_job(c, uid, webhook="http://93.184.216.34/hook").status_code == 201  # a public address
        # A subscription that names a private host anyway (e.g. DNS changed since) is not called.
        job = create_sdf_job(c, uid).json()
        services = c.app.state.services
        with services.store.Session() as s:
            s.add(JobWebhook(job_id=job["id"], url=rx.url, events=["completed"], done=False))
            s.commit()
        _run(c, job["id"])
        c.app.state.webhook_dispatcher.run_once()
        (d,) = c.get(f"/v1/jobs/{job['id']}/webhooks").json()["items"]
        assert d["status"] == "failed" and "not called" in d["last_error"] and rx.requests == []
