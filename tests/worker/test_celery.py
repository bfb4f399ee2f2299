"""Integration: real Celery worker subprocesses on the real Redis, real tiny reconstructions.

Redis at 127.0.0.1:6379 (db 15, queue names unique per test). Missing Redis skips locally and
fails when NFRECON_REQUIRE_REDIS=1 (CI).
"""

from __future__ import annotations

import io
import os
import signal

import pytest
import trimesh
from fastapi.testclient import TestClient

from api.app import create_app
from service.settings import Settings
from store import utcnow
from tests.service_fixtures import (
    cleanup_redis_prefix,
    create_sdf_job,
    long_options,
    pool_children,
    require_redis,
    sphere_file,  # noqa: F401 (fixture)
    start_worker,
    unique_prefix,
    upload,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_settings(tmp_path):
    url = require_redis()
    prefix = unique_prefix()
    settings = Settings(data_dir=tmp_path / "data", broker_url=url, queue_prefix=prefix, reaper_enabled=False,
                        republish_on_startup=False, heartbeat_interval_s=0.5, progress_interval_s=0.2,
                        stale_after_s=2.0, max_attempts=2, cancel_grace_s=20.0)
    yield settings
    cleanup_redis_prefix(url, prefix)


@pytest.fixture
def api(redis_settings):
    with TestClient(create_app(redis_settings)) as c:
        yield c


def _status(api, jid):
    return api.get(f"/v1/jobs/{jid}").json()


def test_end_to_end_upload_create_poll_download(api, redis_settings, tmp_path, sphere_file):  # noqa: F811
    worker = start_worker(redis_settings, tmp_path, "e2e")
    try:
        # A real worker's parent announces itself in Redis: /v1/info lists it and its queues.
        (w,) = wait_for(lambda: api.get("/v1/info").json()["workers"], 30, what="the worker's presence")
        assert w["hostname"].startswith("e2e-") and sorted(w["queues"]) == sorted(
            [redis_settings.gpu_queue, redis_settings.cpu_queue])
        uid = upload(api, sphere_file).json()["id"]
        jid = create_sdf_job(api, uid).json()["id"]
        job = wait_for(lambda: (j := _status(api, jid))["status"] in ("succeeded", "failed", "canceled") and j,
                       180, interval=0.5, what="job to finish")
        assert job["status"] == "succeeded", job["error"]
        assert job["attempt"] == 1 and job["metrics"]["steps"] == 30 and job["queue_position"] is None
        mesh_bytes = api.get(f"/v1/jobs/{jid}/artifacts/mesh.ply").content
        mesh = trimesh.load(io.BytesIO(mesh_bytes), file_type="ply")
        assert len(mesh.faces) > 100
        # the sphere of radius 0.5 comes back at about that radius
        radius = float(abs(mesh.vertices - mesh.vertices.mean(axis=0)).max())
        assert 0.3 < radius < 0.7
    finally:
        worker.stop()
    # A clean shutdown removes the presence key at once (a crash lets it expire).
    assert api.get("/v1/info").json()["workers"] == []


def test_cancel_a_running_job(api, redis_settings, tmp_path, sphere_file):  # noqa: F811
    worker = start_worker(redis_settings, tmp_path, "cancel")
    try:
        uid = upload(api, sphere_file).json()["id"]
        jid = create_sdf_job(api, uid, overrides=long_options()).json()["id"]
        wait_for(lambda: (_status(api, jid).get("progress") or {}).get("phase") == "train", 120, what="training")
        r = api.post(f"/v1/jobs/{jid}/cancel")
        assert r.status_code == 202 and r.json()["status"] == "canceling"
        job = wait_for(lambda: (j := _status(api, jid))["status"] == "canceled" and j, 30, what="canceled")
        assert job["progress"]["step"] < 3000
        assert any("canceled" in line for line in api.get(f"/v1/jobs/{jid}/logs").json()["lines"])
        assert api.get(f"/v1/jobs/{jid}/artifacts").status_code == 409
    finally:
        worker.stop()


def test_killed_worker_job_is_requeued_and_runs_once_more(api, redis_settings, tmp_path, sphere_file):  # noqa: F811
    services = api.app.state.services
    uid = upload(api, sphere_file).json()["id"]
    first = start_worker(redis_settings, tmp_path, "doomed")
    try:
        jid = create_sdf_job(api, uid).json()["id"]
        wait_for(lambda: (_status(api, jid).get("progress") or {}).get("phase") == "train", 120, what="training")
        os.killpg(first.proc.pid, signal.SIGKILL)  # the whole worker: parent and pool child
    finally:
        first.stop()
    assert _status(api, jid)["status"] == "running"
    # The heartbeat stops; the reaper requeues (attempt 1 of 2) and re-publishes.
    reaper = api.app.state.reaper
    wait_for(lambda: reaper.run_once()["requeued"] == 1, 20, interval=0.5, what="reaper requeue")
    assert _status(api, jid)["status"] == "queued"
    second = start_worker(redis_settings, tmp_path, "rescuer")
    try:
        job = wait_for(lambda: (j := _status(api, jid))["status"] in ("succeeded", "failed") and j, 180,
                       interval=0.5, what="second attempt")
    finally:
        second.stop()
    assert job["status"] == "succeeded", job["error"]
    assert job["attempt"] == 2
    job_dir = services.artifacts.job_dir(jid)
    assert sorted(p.name for p in job_dir.iterdir()) == ["artifacts", "input", "job.log"]
    names = [a["name"] for a in api.get(f"/v1/jobs/{jid}/artifacts").json()["items"]]
    assert names.count("mesh.ply") == 1
    log = api.get(f"/v1/jobs/{jid}/logs").json()["lines"]
    assert any("attempt 1/2" in x for x in log) and any("attempt 2/2" in x for x in log)


def test_killed_pool_child_is_taken_over_without_the_reaper(api, redis_settings, tmp_path, sphere_file):  # noqa: F811
    uid = upload(api, sphere_file).json()["id"]
    worker = start_worker(redis_settings, tmp_path, "child")
    try:
        jid = create_sdf_job(api, uid).json()["id"]
        wait_for(lambda: (_status(api, jid).get("progress") or {}).get("phase") == "train", 120, what="training")
        children = pool_children(worker.proc.pid)
        assert children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        # reject_on_worker_lost requeues the message; the task re-checks once the heartbeat is stale
        job = wait_for(lambda: (j := _status(api, jid))["status"] in ("succeeded", "failed") and j, 180,
                       interval=0.5, what="takeover")
        assert job["status"] == "succeeded", job["error"]
        assert job["attempt"] == 2 and job["finished_at"] and utcnow()
    finally:
        worker.stop()


def test_image_job_end_to_end(api, redis_settings, tmp_path):
    """An image upload fitted by a real worker: fitted image, PSNR curve and metrics come back."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:24, 0:32]
    rgb = np.stack([xx / 31, yy / 23, ((xx - 16) ** 2 + (yy - 12) ** 2 < 40).astype(float)], axis=-1)
    src = tmp_path / "tiny.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(src)
    worker = start_worker(redis_settings, tmp_path, "image")
    try:
        up = upload(api, src).json()
        assert up["kind"] == "image" and up["validation"]["width"] == 32
        body = {"inputs": [up["id"]], "spec": {"task": "image", "preset": "fast",
                "overrides": {"train": {"steps": 150}, "image": {"output_scale": 2.0}}}}
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        job = wait_for(lambda: (j := _status(api, jid))["status"] in ("succeeded", "failed", "canceled") and j,
                       180, interval=0.5, what="image job to finish")
        assert job["status"] == "succeeded", job["error"]
        names = {a["name"] for a in api.get(f"/v1/jobs/{jid}/artifacts").json()["items"]}
        assert {"fitted.png", "fitted_x2.png", "psnr_curve.json", "psnr_curve.png", "metrics.json"} <= names
        fitted = Image.open(io.BytesIO(api.get(f"/v1/jobs/{jid}/artifacts/fitted.png").content))
        upscaled = Image.open(io.BytesIO(api.get(f"/v1/jobs/{jid}/artifacts/fitted_x2.png").content))
        assert fitted.size == (32, 24) and upscaled.size == (64, 48)
        assert job["metrics"]["psnr"] > 20
    finally:
        worker.stop()
