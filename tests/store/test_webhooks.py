"""The webhook outbox on SQLite and PostgreSQL: events derived once from job rows, leased claims."""

from __future__ import annotations

from datetime import timedelta

from store import JobStatus, JobWebhook, WebhookStore, utcnow
from tests.store.test_jobs import make_job


def _subscribe(store, job_id: str, events=("start", "completed")) -> WebhookStore:
    hooks = WebhookStore(store.engine)
    with store.Session() as s:
        s.add(JobWebhook(job_id=job_id, url="http://127.0.0.1:9/h", events=list(events), done=False))
        s.commit()
    return hooks


def _events(hooks: WebhookStore, job_id: str) -> list[str]:
    return sorted(d.event for d in hooks.deliveries(job_id))


def test_events_are_queued_once_when_they_happen(store):
    make_job(store, "job_a")
    hooks = _subscribe(store, "job_a")
    other = WebhookStore(store.engine)  # a second API replica's dispatcher
    assert hooks.enqueue_events() == 0 and _events(hooks, "job_a") == []
    job = store.claim("job_a", "w1", stale_before=utcnow() - timedelta(hours=1))
    assert hooks.enqueue_events() == 1 and other.enqueue_events() == 0
    assert _events(hooks, "job_a") == ["start"]
    store.finish("job_a", job.attempt, JobStatus.succeeded)
    assert other.enqueue_events() == 1 and hooks.enqueue_events() == 0
    assert _events(hooks, "job_a") == ["completed", "start"]
    assert hooks.subscription("job_a").done is True


def test_filter_deleted_jobs_and_never_started_jobs(store):
    make_job(store, "job_c")
    hooks = _subscribe(store, "job_c", events=["completed"])
    store.request_cancel("job_c")  # queued -> canceled: never started
    hooks.enqueue_events()
    assert _events(hooks, "job_c") == ["completed"]
    make_job(store, "job_d")
    _subscribe(store, "job_d")
    store.delete_job("job_d")
    hooks.enqueue_events()
    assert hooks.subscription("job_d") is None and hooks.deliveries("job_d") == []


def test_claims_are_exclusive_until_the_lease_ends(store):
    for jid in ("job_1", "job_2", "job_3"):
        make_job(store, jid, status=JobStatus.canceled.value)
        _subscribe(store, jid, events=["completed"])
    a, b = WebhookStore(store.engine), WebhookStore(store.engine)
    a.enqueue_events()
    first = a.claim_due(lease_s=60)
    assert len(first) == 3 and b.claim_due(lease_s=60) == []
    a.record_attempt(first[0].id, status="pending", status_code=500, error="HTTP 500",
                     next_attempt_at=utcnow() - timedelta(seconds=1))
    a.record_attempt(first[1].id, status="delivered", status_code=204, error=None)
    (again,) = b.claim_due(lease_s=60)  # the retried one only: released and due
    assert again.id == first[0].id and again.attempts == 1 and again.last_error == "HTTP 500"
    done = [d for d in a.deliveries("job_1") + a.deliveries("job_2") + a.deliveries("job_3") if d.status == "delivered"]
    assert len(done) == 1 and done[0].delivered_at is not None and done[0].locked_until is None
