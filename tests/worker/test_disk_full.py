"""A job whose data directory fills up: `failed` with `disk_full`, nothing half-written served, and the
service works again once space is freed. A real full filesystem (a small tmpfs), a real fit."""

from __future__ import annotations

import errno

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from service.settings import Settings
from store import sqlite_url
from tests.service_fixtures import create_sdf_job, unique_prefix, upload
from tests.store.full_disk import fill, small_disk
from worker.runner import RunContext, _classify, run_job


@pytest.fixture
def full_disk_env(tmp_path, embedded_broker):
    with small_disk(tmp_path / "small", mb=8) as mnt:
        # The job store lives elsewhere: only the data directory fills up.
        settings = Settings(data_dir=mnt / "data", database_url=sqlite_url(tmp_path / "jobs.db"),
                            broker_url=embedded_broker, queue_prefix=unique_prefix(), reaper_enabled=False,
                            republish_on_startup=False, heartbeat_interval_s=0.3, progress_interval_s=0.2)
        with TestClient(create_app(settings)) as client:
            s = client.app.state.services
            ctx = RunContext(store=s.store, artifacts=s.artifacts, settings=settings, worker="test", device="cpu")
            yield client, ctx, mnt


def test_a_job_on_a_full_data_directory_fails_with_disk_full(full_disk_env, sphere_file):
    client, ctx, mnt = full_disk_env
    uid = upload(client, sphere_file).json()["id"]
    done = create_sdf_job(client, uid).json()["id"]
    assert run_job(done, ctx) == "succeeded"  # while there is room
    jid = create_sdf_job(client, uid).json()["id"]

    filler = fill(mnt)
    # A write error that lost its errno (torch.save's) counts as disk_full only while the disk is full,
    # and never hides an out-of-memory.
    assert _classify(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), ctx) \
        == "disk_full"
    assert _classify(type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), ctx) == "out_of_memory"
    assert run_job(jid, ctx) == "failed"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "failed"
    err = job["error"]
    assert err["code"] == "disk_full" and err["retryable"] is True and err["type"].endswith("/disk-full")
    assert "data directory is full" in err["detail"] and "No space left on device" in err["detail"]
    assert any("failed (disk_full)" in line for line in err["log_tail"])
    # Nothing of the failed attempt is kept or served.
    job_dir = ctx.artifacts.job_dir(jid)
    assert not list(job_dir.glob(".attempt-*")) and not ctx.artifacts.artifacts_dir(jid).exists()
    r = client.get(f"/v1/jobs/{jid}/artifacts")
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/v1/jobs/{jid}/artifacts/mesh.ply").status_code in (404, 409)
    # The earlier job's files are still served; its zip cannot be built now: 507, not 500.
    assert client.get(f"/v1/jobs/{done}/artifacts/mesh.ply").status_code == 200
    z = client.get(f"/v1/jobs/{done}/artifacts/all.zip")
    assert z.status_code == 507 and z.json()["code"] == "insufficient_storage"
    assert not list(ctx.artifacts.job_dir(done).glob(".all.zip.*"))  # no partial zip left behind
    assert client.get("/v1/health").status_code == 200

    # Space freed: the same job, retried, succeeds.
    filler.unlink()
    retry = client.post(f"/v1/jobs/{jid}/retry")
    assert retry.status_code == 201
    assert run_job(retry.json()["id"], ctx) == "succeeded"
    assert client.get(f"/v1/jobs/{done}/artifacts/all.zip").status_code == 200


def test_disk_full_is_recognised_behind_a_wrapping_error(tmp_path, ctx):
    # Libraries wrap the OSError of a failed write in errors of their own; the chain keeps it.
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("could not write mesh.ply") from inner
    except RuntimeError as exc:
        assert _classify(exc, ctx) == "disk_full"
    assert _classify(RuntimeError("something else"), ctx) == "internal"
    assert _classify(OSError(errno.EACCES, "Permission denied"), ctx) == "internal"
