"""The kernel method as a job: through the API and a real Celery worker on the real Redis.

Skipped locally without Redis at 127.0.0.1:6379 (CI makes a missing Redis fail).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from nfcore.presets import preset_overrides
from tests.service_fixtures import (
    cleanup_redis_prefix,
    finish_job,
    sphere_file,  # noqa: F401 (fixture)
    start_worker,
    upload,
    worker_test_settings,
)

pytestmark = pytest.mark.slow

KERNEL_SPEC = {"task": "sdf", "method": "kernel", "preset": "fast", "overrides": {"extraction": {"formats": ["ply", "obj"]}}}




def test_a_kernel_job_runs_on_a_real_worker_and_fails_cleanly_when_it_must(tmp_path, sphere_file):  # noqa: F811
    settings = worker_test_settings(tmp_path)
    worker = start_worker(settings, tmp_path, "kernel")
    try:
        with TestClient(create_app(settings)) as api:
            uid = upload(api, sphere_file).json()["id"]
            r = api.post("/v1/jobs", json={"inputs": [uid], "spec": KERNEL_SPEC})
            assert r.status_code == 201, r.text
            job = finish_job(api, r.json()["id"])
            assert job["status"] == "succeeded", job["error"]
            assert job["spec"] == KERNEL_SPEC  # stored as submitted
            config = job["config"]
            assert config["method"] == "kernel" and job["device"] == "cpu"
            assert config["kernel"]["voxel_per_spacing"] == preset_overrides("sdf", "fast", "cpu", "kernel")["kernel"]["voxel_per_spacing"]
            names = {a["name"] for a in api.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
            assert {"mesh.ply", "mesh.obj", "metrics.json", "config.json", "normalization.json"} <= names
            metrics = json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").content)
            assert metrics["method"] == "kernel" and "solve" in metrics["timings"] and metrics["kernel"]["residual"] <= 1e-4
            assert json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/config.json").content) == config

            # A solve that cannot converge in its budget fails the job with the residual in the message.
            spec = {"task": "sdf", "method": "kernel", "overrides": {"kernel": {"max_iterations": 2, "tolerance": 1e-9}}}
            r = api.post("/v1/jobs", json={"inputs": [uid], "spec": spec})
            assert r.status_code == 201, r.text
            failed = finish_job(api, r.json()["id"])
            assert failed["status"] == "failed"
            assert failed["error"]["code"] == "method_diverged" and failed["error"]["retryable"] is False
            assert "residual" in failed["error"]["detail"]
    finally:
        worker.stop()
        cleanup_redis_prefix(settings.broker_url, settings.queue_prefix)


def test_the_kernel_method_for_another_task_is_a_validation_error_naming_the_field(tmp_path, sphere_file):  # noqa: F811
    settings = worker_test_settings(tmp_path)
    with TestClient(create_app(settings)) as api:
        uid = upload(api, sphere_file).json()["id"]
        r = api.post("/v1/jobs", json={"inputs": [uid], "spec": {"task": "occupancy", "method": "kernel"}})
        assert r.status_code == 422
        locs = [e["loc"] for e in r.json()["errors"]]
        assert ["body", "spec", "method"] in locs, r.json()
