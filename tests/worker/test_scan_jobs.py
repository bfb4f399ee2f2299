"""Several scans of one object as one job: through the API and a real Celery worker on the real Redis, and a retry.

Skipped locally without Redis at 127.0.0.1:6379 (CI makes a missing Redis fail).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.service_fixtures import cleanup_redis_prefix, finish_job, start_worker, upload, worker_test_settings
from tests.utils.analytic import ellipsoid_view_files

pytestmark = pytest.mark.slow

SPEC = {"task": "sdf", "method": "kernel", "preset": "fast", "overrides": {"input": {"registration": "on"}}}


def _views(tmp_path, n: int = 3) -> list:
    """Overlapping caps of an ellipsoid, without normals; the last one shifted by about a spacing."""
    return ellipsoid_view_files(tmp_path, n, points=2500, shift_last=0.006)


def test_a_job_of_several_scans_runs_on_a_real_worker_and_its_retry_keeps_them(tmp_path):
    settings = worker_test_settings(tmp_path)
    worker = start_worker(settings, tmp_path, "scans")
    try:
        with TestClient(create_app(settings)) as api:
            ids = [upload(api, p).json()["id"] for p in _views(tmp_path)]
            r = api.post("/v1/jobs", json={"inputs": ids, "spec": SPEC})
            assert r.status_code == 201, r.text
            job = finish_job(api, r.json()["id"])
            assert job["status"] == "succeeded", job["error"]
            assert [i["upload_id"] for i in job["inputs"]] == ids
            assert job["config"]["input"]["registration"] == "on"
            scans = job["metrics"]["scans"]
            assert scans["n_scans"] == 3 and [v["name"] for v in scans["views"]] == [
                "scan-0000.xyz", "scan-0001.xyz", "scan-0002.xyz"]
            assert scans["registered"] and scans["residual_after"] < scans["residual_before"]
            assert job["metrics"]["n_points"] == sum(v["n_points"] for v in scans["views"])
            metrics = json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").content)
            assert metrics["scans"]["views"][2]["translation_spacings"] > 0
            log = api.get(f"/v1/jobs/{job['id']}/logs").json()["lines"]
            assert any("input 3 scans" in line for line in log)

            # The uploads go away; a retry still has the job's own copies of all three.
            for uid in ids:
                assert api.delete(f"/v1/uploads/{uid}").status_code == 204
            r = api.post(f"/v1/jobs/{job['id']}/retry", json={})
            assert r.status_code in (200, 201, 202), r.text
            again = finish_job(api, r.json()["id"])
            assert again["status"] == "succeeded", again["error"]
            assert [i["upload_id"] for i in again["inputs"]] == ids and again["retry_of"] == job["id"]
            assert again["metrics"]["scans"]["n_scans"] == 3
    finally:
        worker.stop()
        cleanup_redis_prefix(settings.broker_url, settings.queue_prefix)
