"""Health, readiness, info, methods and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from nfrecon.serve import free_port


def test_health_and_ready(client):
    assert client.get("/v1/health").json() == {"status": "ok"}
    r = client.get("/v1/ready")
    assert r.status_code == 200 and r.json() == {"ready": True, "database": "ok", "broker": "ok", "workers": 0}


def test_ready_is_503_when_the_broker_is_down(make_settings):
    settings = make_settings(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as c:
        r = c.get("/v1/ready")
    assert r.status_code == 503
    assert r.json()["database"] == "ok" and r.json()["broker"].startswith("error")


def test_info_reports_limits_and_queue(make_settings):
    with TestClient(create_app(make_settings(max_upload_bytes=12345, max_queue=7))) as c:
        info = c.get("/v1/info").json()
    assert info["limits"]["max_upload_bytes"] == 12345 and info["limits"]["max_queue"] == 7
    assert info["queue"] == {"queued": 0, "running": 0}
    assert info["auth"] is False and info["version"]
    assert info["workers"] == []  # no worker runs in the API tests


def test_worker_presence_shows_in_info_and_ready(make_settings):
    # The key a worker's parent keeps in the broker (worker/presence.py), written for real into the
    # embedded broker; the API lists it, and it is gone once the worker stops.
    import redis

    from service.presence import Presence, wait_until_gone

    settings = make_settings()
    with TestClient(create_app(settings)) as c:
        presence = Presence(settings.broker_url, settings.queue_prefix, "gpu0@test", [settings.gpu_queue],
                            interval_s=0.2).start()
        try:
            (w,) = c.get("/v1/info").json()["workers"]
            assert w["hostname"] == "gpu0@test" and w["queues"] == [settings.gpu_queue] and w["last_seen"]
            assert c.get("/v1/ready").json()["workers"] == 1
        finally:
            presence.stop()
        client = redis.Redis.from_url(settings.broker_url)
        assert wait_until_gone(client, settings.queue_prefix, "gpu0@test", 2)
        client.close()
        assert c.get("/v1/info").json()["workers"] == []


def test_methods_and_schema(client):
    items = client.get("/v1/methods").json()["items"]
    assert {m["name"] for m in items} == {"sdf", "image", "occupancy"}
    sdf = client.get("/v1/methods/sdf").json()
    schema = sdf["spec_schema"]
    assert set(schema["properties"]) == {"task", "method", "preset", "overrides"}
    # Which methods each task has: the kernel solve only for sdf, with its own presets per device.
    assert {m["name"]: m["methods"] for m in items} == {"sdf": ["neural", "kernel"], "image": ["neural"],
                                                         "occupancy": ["neural"]}
    kernel = sdf["method_preset_options"]["kernel"]
    assert kernel["cpu"]["balanced"]["method"] == "kernel" and "voxel_per_spacing" in kernel["cpu"]["balanced"]["kernel"]
    assert sdf["method_preset_options"]["neural"] == sdf["preset_options"]
    assert "kernel" in str(schema["properties"]["method"]) and "kernel" in schema["properties"]["overrides"]["properties"]
    overrides = schema["properties"]["overrides"]
    assert "precondition" in overrides["properties"] and "train" in overrides["properties"]
    # Presets are published per device: a GPU worker trains with bigger batches than a CPU one.
    cpu, cuda = sdf["preset_options"]["cpu"]["fast"], sdf["preset_options"]["cuda"]["fast"]
    assert cpu["train"]["steps"] > 0 and cuda["train"]["batch_size"] > cpu["train"]["batch_size"]
    # Every extension an upload accepts for images is advertised (not only png/jpg).
    image = client.get("/v1/methods/image").json()
    assert {".png", ".jpg", ".tif", ".webp", ".bmp"} <= set(image["input_formats"])
    r = client.get("/v1/methods/nerf")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "method_not_found"


def test_openapi_has_stable_ids_and_problem_responses(client):
    doc = client.get("/openapi.json").json()
    ops = [op for path in doc["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in ops]
    assert len(ids) == len(set(ids))
    assert {"create_upload", "create_job", "create_job_form", "get_job", "cancel_job", "retry_job", "delete_job",
            "job_logs", "job_events", "list_artifacts", "download_artifact", "download_zip"} <= set(ids)
    create = doc["paths"]["/v1/jobs"]["post"]
    assert {"201", "404", "409", "422", "429"} <= set(create["responses"])
    assert "application/problem+json" in create["responses"]["429"]["content"]
    assert "application/octet-stream" in doc["paths"]["/v1/uploads"]["post"]["requestBody"]["content"]
    assert "Problem" in doc["components"]["schemas"]


def test_unknown_route_is_a_problem(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
