"""The reaper on a real store and the embedded broker: lost jobs, stuck cancels, unpublished jobs, expiry."""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from service.reaper import Reaper
from store import utcnow
from tests.service_fixtures import create_sdf_job, upload


def _reaper(services):
    return Reaper(services.store, services.artifacts, services.settings, services.queue)


def _queue_length(services, queue: str) -> int:
    r = redis.Redis.from_url(services.settings.broker_url)
    try:
        return r.llen(queue)
    finally:
        r.close()


def test_lost_running_job_is_requeued_then_failed(client, services, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    store, queue = services.store, services.settings.gpu_queue
    before = _queue_length(services, queue)
    store.claim(jid, "w-dead", stale_before=utcnow())
    later = utcnow() + timedelta(seconds=5)  # heartbeat now older than stale_after (1 s)
    done = _reaper(services).run_once(later)
    assert done["requeued"] == 1
    job = store.get_job(jid)
    assert job.status == "queued" and job.attempt == 1 and job.published_at is not None
    assert _queue_length(services, queue) == before + 1  # re-published to the broker
    store.claim(jid, "w-dead-again", stale_before=utcnow())
    done = _reaper(services).run_once(utcnow() + timedelta(seconds=5))
    assert done["failed"] == 1
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost" and job["attempt"] == 2
    log = client.get(f"/v1/jobs/{jid}/logs").json()["lines"]
    assert any("requeued for attempt 2" in line for line in log) and any("no attempts left" in line for line in log)


def test_live_heartbeat_is_left_alone(client, services, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    services.store.claim(jid, "w-alive", stale_before=utcnow())
    assert _reaper(services).run_once()["requeued"] == 0
    assert services.store.get_job(jid).status == "running"


def test_stuck_cancel_is_forced(client, services, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    services.store.claim(jid, "w", stale_before=utcnow())
    assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 202
    done = _reaper(services).run_once(utcnow() + timedelta(seconds=0.5))  # cancel_grace_s = 0
    assert done["cancel_forced"] == 1
    assert client.get(f"/v1/jobs/{jid}").json()["status"] == "canceled"


def test_unpublished_jobs_are_published(client, services, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    services.store._update(jid, published_at=None)  # as if the broker had been down at creation
    assert _reaper(services).run_once()["published"] == 1
    assert services.store.get_job(jid).published_at is not None


def test_expiry_removes_artifacts_and_uploads(client, services, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    jid = create_sdf_job(client, uid).json()["id"]
    client.post(f"/v1/jobs/{jid}/cancel")
    services.store._update(jid, expires_at=utcnow() - timedelta(seconds=1))
    ttl = services.settings.upload_ttl_s
    done = _reaper(services).run_once(utcnow() + timedelta(seconds=ttl + 1))
    assert done["expired_jobs"] == 1 and done["expired_uploads"] == 1
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["artifacts_expired"] is True  # the record stays
    assert client.get(f"/v1/jobs/{jid}/artifacts").status_code == 410
    assert client.get(f"/v1/uploads/{uid}").status_code == 404
    assert services.artifacts.find_job_input(jid) is None
    r = client.post(f"/v1/jobs/{jid}/retry")
    assert r.status_code == 410 and r.json()["code"] == "input_expired"


def test_messages_the_broker_lost_are_republished_in_order(client, services, sphere_file):
    """A broker that forgot its lists (restart without persistence): only the lost jobs go out again, oldest first."""
    uid = upload(client, sphere_file).json()["id"]
    ids = [create_sdf_job(client, uid).json()["id"] for _ in range(3)]
    for jid in ids:  # published long enough ago to be looked for
        services.store._update(jid, published_at=utcnow() - timedelta(seconds=10))
    reaper = _reaper(services)
    assert reaper.lost_messages() == [] and reaper.run_once()["republished_lost"] == 0  # all held: nothing sent
    r = redis.Redis.from_url(services.settings.broker_url)
    try:
        held = services.queue.broker_job_ids()
        assert set(ids) <= held
        for key in r.scan_iter(f"{services.settings.gpu_queue}*"):  # what a restart without AOF does
            r.delete(key)
        assert [j.id for j in reaper.lost_messages()] == ids
        assert reaper.run_once()["republished_lost"] == 3
        assert set(ids) <= services.queue.broker_job_ids()
        # Re-published to the list workers read first, in submission order (kombu pops from the right).
        order = [json.loads(m)["headers"]["id"] for m in reversed(r.lrange(services.settings.gpu_queue, 0, -1))]
        assert order == ids
    finally:
        r.close()
    assert reaper.run_once()["republished_lost"] == 0
