"""Job store transitions on SQLite and PostgreSQL: every change is conditional, races lose cleanly."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from store import IdempotencyConflict, IdempotencyKey, Job, JobStatus, Upload, utcnow


def make_job(store, job_id="job_a", owner="", created=None, status="queued", max_attempts=2, task="sdf"):
    now = created or utcnow()
    job = Job(id=job_id, owner=owner, task=task, spec={"task": task, "preset": "fast", "overrides": {}}, inputs=[],
              queue="gpu", status=status, attempt=0, max_attempts=max_attempts, created_at=now, updated_at=now)
    return store.add_job(job)


def test_claim_is_exclusive_and_counts_attempts(store):
    make_job(store)
    stale = utcnow() - timedelta(seconds=10)
    job = store.claim("job_a", "w1", stale_before=stale)
    assert job is not None and job.status == "running" and job.attempt == 1 and job.worker == "w1"
    # A duplicate delivery while the first run's heartbeat is fresh gets nothing.
    assert store.claim("job_a", "w2", stale_before=stale) is None
    # Once the heartbeat is older than the threshold, a redelivery takes over with a new attempt.
    taken = store.claim("job_a", "w2", stale_before=utcnow() + timedelta(seconds=1))
    assert taken.attempt == 2 and taken.worker == "w2"
    # The first attempt can no longer write anything.
    assert store.heartbeat("job_a", 1) is None
    assert not store.set_progress("job_a", 1, "train", {"fraction": 0.5})
    assert not store.record_config("job_a", 1, {"device": "cuda"}, "cuda")
    assert store.record_config("job_a", 2, {"device": "cpu"}, "cpu")
    assert store.get_job("job_a").config == {"device": "cpu"} and store.get_job("job_a").device == "cpu"
    assert not store.finish("job_a", 1, JobStatus.succeeded)
    assert store.finish("job_a", 2, JobStatus.succeeded, metrics={"x": 1.0})
    assert store.get_job("job_a").status == "succeeded"
    # A finished job is never claimed again (redelivered message after success).
    assert store.claim("job_a", "w3", stale_before=utcnow() + timedelta(hours=1)) is None


def test_concurrent_claims_have_one_winner(store):
    make_job(store)
    wins = []

    def claim(name):
        if store.claim("job_a", name, stale_before=utcnow() - timedelta(seconds=10)) is not None:
            wins.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_job("job_a").attempt == 1


def test_cancel_queued_and_running(store):
    make_job(store, "job_q")
    assert store.request_cancel("job_q") == "canceled"
    assert store.claim("job_q", "w", stale_before=utcnow()) is None
    make_job(store, "job_r")
    job = store.claim("job_r", "w", stale_before=utcnow())
    assert store.request_cancel("job_r") == "canceling"
    assert store.heartbeat("job_r", job.attempt) == "canceling"
    assert store.finish("job_r", job.attempt, JobStatus.canceled)
    assert store.get_job("job_r").status == "canceled"
    # canceling with no worker left: forced by the reaper
    make_job(store, "job_s")
    job = store.claim("job_s", "w", stale_before=utcnow())
    store.request_cancel("job_s")
    assert store.force_cancel("job_s")
    assert not store.finish("job_s", job.attempt, JobStatus.succeeded)


def test_requeue_and_fail_lost(store):
    make_job(store, "job_l", max_attempts=2)
    job = store.claim("job_l", "w", stale_before=utcnow())
    later = utcnow() + timedelta(seconds=5)
    assert [j.id for j in store.stale_jobs(later)] == ["job_l"]
    assert store.stale_jobs(utcnow() - timedelta(seconds=5)) == []
    assert store.requeue("job_l", job.attempt, later)
    again = store.get_job("job_l")
    assert again.status == "queued" and again.attempt == 1 and again.published_at is None
    job = store.claim("job_l", "w2", stale_before=utcnow())
    assert job.attempt == 2
    assert store.fail_lost("job_l", 2, "gone", stale_before=utcnow() + timedelta(seconds=5), log_tail=["a", "b"])
    failed = store.get_job("job_l")
    assert failed.status == "failed" and failed.error["code"] == "worker_lost" and failed.error["retryable"]
    assert failed.error["log_tail"] == ["a", "b"]


def test_version_bumps_on_every_write(store):
    make_job(store)
    v0 = store.get_job("job_a").version
    job = store.claim("job_a", "w", stale_before=utcnow())
    store.set_progress("job_a", job.attempt, "train", {"fraction": 0.1})
    assert store.get_job("job_a").version == v0 + 2


def test_list_pagination_filters_and_owner(store):
    t0 = utcnow()
    for i in range(5):
        make_job(store, f"job_{i}", owner="alice", created=t0 + timedelta(seconds=i))
    make_job(store, "job_bob", owner="bob", created=t0)
    store.request_cancel("job_1")
    page1 = store.list_jobs("alice", limit=2)
    assert [j.id for j in page1] == ["job_4", "job_3"]
    page2 = store.list_jobs("alice", limit=2, before=(page1[-1].created_at, page1[-1].id))
    assert [j.id for j in page2] == ["job_2", "job_1"]
    assert [j.id for j in store.list_jobs("alice", statuses=["canceled"])] == ["job_1"]
    assert store.get_job("job_bob", owner="alice") is None
    assert store.count_jobs(["queued"], owner="alice") == 4
    # The queue is shared: job_bob, job_0 and job_2 (job_1 was canceled) run before job_3.
    assert store.queue_position(store.get_job("job_3")) == 4


def test_idempotency_key_conflict_and_expiry(store):
    now = utcnow()
    key = IdempotencyKey(owner="", scope="POST /v1/jobs", key="k1", fingerprint="f", resource_id="job_b",
                         created_at=now, expires_at=now + timedelta(hours=1))
    store.add_job(Job(id="job_b", owner="", task="sdf", spec={"task": "sdf"}, inputs=[], queue="gpu",
                      status="queued", created_at=now, updated_at=now), key)
    dup = IdempotencyKey(owner="", scope="POST /v1/jobs", key="k1", fingerprint="g", resource_id="job_c",
                         created_at=now, expires_at=now + timedelta(hours=1))
    with pytest.raises(IdempotencyConflict) as info:
        store.add_job(Job(id="job_c", owner="", task="sdf", spec={"task": "sdf"}, inputs=[],
                          queue="gpu", status="queued", created_at=now, updated_at=now), dup)
    assert info.value.existing.resource_id == "job_b"
    assert store.get_job("job_c") is None  # rolled back with the key
    assert store.purge_idempotency(now + timedelta(hours=2)) == 1
    assert store.get_idempotency("", "POST /v1/jobs", "k1") is None


def test_uploads_and_expiry(store):
    now = utcnow()
    store.add_upload(Upload(id="upl_1", owner="a", filename="x.xyz", path="uploads/upl_1/input.xyz", size=3,
                            sha256="0" * 64, media_type="text/plain", format="xyz", kind="pointcloud", report={},
                            created_at=now, expires_at=now + timedelta(seconds=5)))
    assert store.get_upload("upl_1", owner="b") is None
    assert store.get_upload("upl_1", owner="a").filename == "x.xyz"
    assert [u.id for u in store.expired_uploads(now + timedelta(seconds=10))] == ["upl_1"]
    assert store.delete_upload("upl_1") and store.get_upload("upl_1") is None


def test_sqlite_uses_wal(tmp_path):
    from sqlalchemy import text

    from store import make_engine, sqlite_url

    engine = make_engine(sqlite_url(tmp_path / "w.db"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_a_database_from_another_version_is_named_not_misused(tmp_path):
    import sqlalchemy as sa

    from store import JobStore, SchemaMismatch, make_engine, sqlite_url

    engine = make_engine(sqlite_url(tmp_path / "old.db"))
    with engine.begin() as conn:  # an older jobs table: no spec/device columns
        conn.execute(sa.text("CREATE TABLE nfrecon_jobs (id VARCHAR(40) PRIMARY KEY, method VARCHAR(32))"))
    with pytest.raises(SchemaMismatch, match="nfrecon_jobs .* lacks columns .*spec"):
        JobStore(engine)


def test_job_view_reads_job_position_and_webhook_in_one_statement(store):
    from sqlalchemy import event

    from store import JobWebhook

    t0 = utcnow()
    make_job(store, "job_1", owner="o", created=t0)
    make_job(store, "job_2", owner="o", created=t0 + timedelta(seconds=1))
    hook = JobWebhook(job_id="job_3", url="https://example.org/hook", events=["completed", "started"], done=False,
                      created_at=t0)
    now = t0 + timedelta(seconds=2)
    store.add_job(Job(id="job_3", owner="o", task="sdf", spec={"task": "sdf"}, inputs=[], queue="gpu",
                      status="queued", attempt=0, max_attempts=2, created_at=now, updated_at=now), None, [hook])
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute: the SQL)
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        view = store.get_job_view("job_3", "o")
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert len(statements) == 1
    assert view.job.id == "job_3" and view.queue_position == 3 == store.queue_position(view.job)
    assert view.webhook_url == "https://example.org/hook" and view.webhook_events == ["completed", "started"]
    first = store.get_job_view("job_1")
    assert first.queue_position == 1 and first.webhook_url is None and first.webhook_events is None
    # Only queued jobs have a position; another owner's job is not found.
    store.claim("job_1", "w", stale_before=utcnow())
    assert store.get_job_view("job_1").queue_position is None
    assert store.get_job_view("job_2").queue_position == 1
    assert store.get_job_view("job_2", "someone else") is None and store.get_job_view("job_missing") is None
