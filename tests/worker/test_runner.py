"""run_job without Celery: real tiny fits, cooperative cancel, error codes, duplicate deliveries."""

from __future__ import annotations

import io
import threading
import zipfile

import trimesh

from store import JobStatus, utcnow
from tests.service_fixtures import create_sdf_job, long_options, upload, wait_for
from worker.runner import run_job


def test_run_job_succeeds_publishes_and_serves_artifacts(client, services, ctx, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    assert run_job(jid, ctx) == "succeeded"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "succeeded" and job["attempt"] == 1 and job["stage"] == "done"
    assert job["progress"]["fraction"] == 1.0
    # The finished job keeps its training curve (what the page plots), up to the last step; a short
    # listing leaves it out.
    curve = job["progress"]["curve"]
    assert curve and curve[-1]["step"] == 30 and {"surface", "eikonal"} <= set(curve[-1]["loss"])
    listed = next(j for j in client.get("/v1/jobs").json()["items"] if j["id"] == jid)
    assert listed["progress"]["fraction"] == 1.0 and not listed["progress"]["curve"]
    assert job["metrics"]["device"] == "cpu" and job["metrics"]["steps"] == 30 and job["metrics"]["run_seconds"] > 0
    assert job["expires_at"] is not None
    # A redelivered message for a finished job does nothing.
    assert run_job(jid, ctx) == "skipped"
    assert client.get(f"/v1/jobs/{jid}").json()["attempt"] == 1

    listing = client.get(f"/v1/jobs/{jid}/artifacts").json()
    names = {a["name"] for a in listing["items"]}
    assert {"mesh.ply", "metrics.json", "config.json"} <= names
    mesh_entry = next(a for a in listing["items"] if a["name"] == "mesh.ply")
    r = client.get(mesh_entry["url"])
    assert r.status_code == 200 and r.headers["etag"] == f'"{mesh_entry["sha256"]}"'
    assert r.headers["accept-ranges"] == "bytes" and len(r.content) == mesh_entry["size"]
    mesh = trimesh.load(io.BytesIO(r.content), file_type="ply")
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    part = client.get(mesh_entry["url"], headers={"Range": "bytes=10-29"})
    assert part.status_code == 206 and part.content == r.content[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{len(r.content)}"
    assert client.get(f"/v1/jobs/{jid}/artifacts/../../nfrecon.db").status_code == 404
    assert client.get(f"/v1/jobs/{jid}/artifacts/nothing.ply").json()["code"] == "artifact_not_found"
    z = client.get(listing["zip_url"])
    assert z.status_code == 200
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert {"mesh.ply", "job.log", "manifest.json"} <= set(zf.namelist())
        assert zf.read("mesh.ply") == r.content
    logs = client.get(f"/v1/jobs/{jid}/logs").json()
    assert logs["complete"] and any("succeeded" in line for line in logs["lines"])
    assert client.get(f"/v1/jobs/{jid}/logs", params={"offset": 1}).json()["lines"] == logs["lines"][1:]
    assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 409
    # Exactly one artifacts directory, no attempt leftovers.
    job_dir = services.artifacts.job_dir(jid)
    assert sorted(p.name for p in job_dir.iterdir()) == ["all.zip", "artifacts", "input", "job.log"]


def test_cooperative_cancel_stops_a_running_fit(client, services, ctx, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"], overrides=long_options()).json()["id"]
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("status", run_job(jid, ctx)))
    t.start()
    try:
        wait_for(lambda: (services.store.get_job(jid).progress or {}).get("phase") == "train", 60, what="training")
        r = client.post(f"/v1/jobs/{jid}/cancel")
        assert r.status_code == 202 and r.json()["status"] == "canceling"
    finally:
        t.join(60)
    assert result["status"] == "canceled"
    job = services.store.get_job(jid)
    assert job.status == "canceled" and job.progress["step"] < 3000
    assert client.get(f"/v1/jobs/{jid}/artifacts").status_code == 409
    assert not services.artifacts.artifacts_dir(jid).exists()


def test_invalid_input_fails_with_code_and_log_tail(client, services, ctx, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    path = services.artifacts.find_job_input(jid)
    path.unlink()  # the job's own copy is a hard link: replace it, never write through it
    path.write_text("1 2\n3 4\n")
    assert run_job(jid, ctx) == "failed"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["error"]["code"] == "invalid_input" and job["error"]["retryable"] is False
    assert job["error"]["log_tail"] and "invalid_input" in job["error"]["log_tail"][-1]


def test_exhausted_attempts_fail_with_worker_lost(client, services, ctx, sphere_file):
    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    store = services.store
    for attempt in (1, 2):  # two runs whose workers vanished
        assert store.claim(jid, "ghost", stale_before=utcnow()).attempt == attempt
        from datetime import timedelta

        assert store.requeue(jid, attempt, utcnow() + timedelta(seconds=5))
    assert run_job(jid, ctx) == "failed"
    job = store.get_job(jid)
    # Never a third run: the record keeps attempt == max_attempts (issue 9 saw "attempt 3 of 2").
    assert job.status == JobStatus.failed.value and job.attempt == 2 and job.error["code"] == "worker_lost"
    assert store.claim(jid, "late", stale_before=utcnow()) is None


def test_stale_last_attempt_is_failed_not_taken_over(client, services, ctx, sphere_file):
    from datetime import timedelta

    jid = create_sdf_job(client, upload(client, sphere_file).json()["id"]).json()["id"]
    store = services.store
    assert store.claim(jid, "ghost", stale_before=utcnow()).attempt == 1
    assert store.requeue(jid, 1, utcnow() + timedelta(seconds=5))
    assert store.claim(jid, "ghost2", stale_before=utcnow()).attempt == 2
    store._update(jid, heartbeat_at=utcnow() - timedelta(seconds=60))  # the second worker died too
    # A redelivered message finds the job running with a dead heartbeat and no attempt left.
    assert run_job(jid, ctx) == "failed"
    job = store.get_job(jid)
    assert job.attempt == 2 and job.error["code"] == "worker_lost" and "max_attempts=2" in job.error["detail"]


def test_exceptions_map_to_error_codes(ctx):
    import torch
    from celery.exceptions import SoftTimeLimitExceeded

    from nfcore.errors import InputError
    from nfcore.train import DivergedError
    from worker.runner import _classify

    ctx.timeout_errors = (SoftTimeLimitExceeded,)
    assert _classify(InputError("no normals"), ctx) == "invalid_input"
    assert _classify(DivergedError("loss became nan at step 3"), ctx) == "method_diverged"
    assert _classify(torch.cuda.OutOfMemoryError("CUDA out of memory"), ctx) == "out_of_memory"
    assert _classify(MemoryError(), ctx) == "out_of_memory"
    assert _classify(SoftTimeLimitExceeded(), ctx) == "timeout"
    assert _classify(KeyError("x"), ctx) == "internal"
