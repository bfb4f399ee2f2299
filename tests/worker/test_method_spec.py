"""The method spec from request to worker: stored as submitted, resolved where the job runs, retried unchanged.

Real Celery worker subprocesses on the real Redis (skipped locally without one, failing in CI).
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


# Every kind of override a user can state, including what used to be shorthands (preconditioning,
# output formats): the spec keeps them all, and a retry must run exactly this again.
FULL_SPEC = {
    "task": "sdf",
    "preset": "fast",
    "overrides": {
        "precondition": {"initial_scale": 0.05, "start": 0.1, "end": 0.9},
        "extraction": {"formats": ["obj", "ply"], "resolution": 32},
        "train": {"steps": 25, "batch_size": 256, "seed": 3},
        "encoding": {"type": "hashgrid", "n_levels": 4, "finest_resolution": 64},
        "network": {"type": "mlp", "hidden_features": 16, "hidden_layers": 1},
        "optimizer": {"type": "adam", "lr": 0.002},
        "sdf": {"eikonal_weight": 20.0},
    },
}




def test_retry_runs_the_identical_spec_and_config(tmp_path, sphere_file):  # noqa: F811
    settings = worker_test_settings(tmp_path)
    worker = start_worker(settings, tmp_path, "spec")
    try:
        with TestClient(create_app(settings)) as api:
            uid = upload(api, sphere_file).json()["id"]
            r = api.post("/v1/jobs", json={"inputs": [uid], "spec": FULL_SPEC})
            assert r.status_code == 201, r.text
            first = finish_job(api, r.json()["id"])
            assert first["status"] == "succeeded", first["error"]
            assert first["spec"] == FULL_SPEC and first["device"] == "cpu"
            config = first["config"]
            assert config["precondition"]["initial_scale"] == 0.05 and config["extraction"]["formats"] == ["obj", "ply"]
            assert config["train"]["batch_size"] == 256 and config["device"] == "cpu"
            # The artifacts carry the same resolved config.
            stored = json.loads(api.get(f"/v1/jobs/{first['id']}/artifacts/config.json").content)
            assert stored == config
            names = {a["name"] for a in api.get(f"/v1/jobs/{first['id']}/artifacts").json()["items"]}
            assert {"mesh.obj", "mesh.ply"} <= names

            r = api.post(f"/v1/jobs/{first['id']}/retry")
            assert r.status_code == 201, r.text
            second = finish_job(api, r.json()["id"])
            assert second["status"] == "succeeded", second["error"]
            assert second["retry_of"] == first["id"]
            assert second["spec"] == first["spec"] and second["config"] == first["config"]
            assert second["device"] == first["device"]
    finally:
        worker.stop()
        cleanup_redis_prefix(settings.broker_url, settings.queue_prefix)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_worker_resolves_the_spec_for_its_own_device(tmp_path, sphere_file, device):  # noqa: F811
    # A worker forced to CUDA (as on a GPU machine) must train with the CUDA preset, a CPU worker with
    # the CPU one. Without a GPU here the forced CUDA run then fails, but only after the worker has
    # resolved and recorded the config: that record is what this test checks.
    settings = worker_test_settings(tmp_path, worker_device=device)
    worker = start_worker(settings, tmp_path, f"dev-{device}")
    try:
        with TestClient(create_app(settings)) as api:
            uid = upload(api, sphere_file).json()["id"]
            spec = {"task": "sdf", "preset": "fast", "overrides": {"train": {"steps": 20}, "extraction": {"resolution": 32}}}
            r = api.post("/v1/jobs", json={"inputs": [uid], "spec": spec})
            assert r.status_code == 201, r.text
            job = finish_job(api, r.json()["id"])
            preset = preset_overrides("sdf", "fast", device)
            assert job["device"] == device and job["config"]["device"] == device
            assert job["config"]["train"]["batch_size"] == preset["train"]["batch_size"]
            assert job["config"]["encoding"]["n_levels"] == preset["encoding"]["n_levels"]
            assert job["config"]["train"]["steps"] == 20  # the user's override still wins
            assert job["spec"] == spec
            if device == "cpu":
                assert job["status"] == "succeeded", job["error"]
    finally:
        worker.stop()
        cleanup_redis_prefix(settings.broker_url, settings.queue_prefix)
