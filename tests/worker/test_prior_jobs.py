"""Priors in jobs through the API and a real Celery worker on the real Redis: a fit from a prior named by id,
a meta-train job registering its prior, a shape set that fails cleanly.

Skipped locally without Redis at 127.0.0.1:6379 (CI makes a missing Redis fail).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.priors_util import (
    TINY_META_CONFIG,
    TINY_SHAPES,
    make_prior_file,
    post_prior,
    sphere_meshes,
    sphere_zip,
)
from tests.service_fixtures import (
    cleanup_redis_prefix,
    create_sdf_job,
    finish_job,
    sphere_file,  # noqa: F401 (fixture)
    start_worker,
    upload,
    worker_test_settings,
)

pytestmark = pytest.mark.slow

PRIOR_FIT = {"train": {"steps": 10, "batch_size": 256}, "extraction": {"resolution": 24}}
"""A fit after the prior's inner steps: short, the prior does the work."""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API and one real worker (shared by this module's tests: a worker takes seconds to start)."""
    tmp = tmp_path_factory.mktemp("prior-jobs")
    settings = worker_test_settings(tmp)
    worker = start_worker(settings, tmp, "priors")
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        worker.stop()
        cleanup_redis_prefix(settings.broker_url, settings.queue_prefix)


def test_a_fit_from_a_prior_named_by_id_makes_a_mesh(api, sphere_file, tmp_path):  # noqa: F811
    pid = post_prior(api, make_prior_file(tmp_path / "p.safetensors")).json()["id"]
    uid = upload(api, sphere_file).json()["id"]
    r = create_sdf_job(api, uid, overrides={**PRIOR_FIT, "prior": {"id": pid, "inner_steps": 2}})
    assert r.status_code == 201, r.text
    # Deleting the prior once the job is submitted changes nothing for it (it has its own copy).
    assert api.delete(f"/v1/priors/{pid}").status_code == 204
    job = finish_job(api, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    # The recorded config names the prior by id and has its field; no server path anywhere.
    assert job["config"]["prior"] == {"id": pid, "path": None, "inner_steps": 2}
    assert job["config"]["encoding"]["type"] == "identity" and job["config"]["network"]["hidden_features"] == 32
    assert job["metrics"]["prior"]["id"] == pid and job["metrics"]["prior"]["inner_steps"] == 2
    assert "path" not in job["metrics"]["prior"]
    names = {a["name"] for a in api.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
    assert "mesh.ply" in names
    assert len(api.get(f"/v1/jobs/{job['id']}/artifacts/mesh.ply").content) > 1000
    config = json.loads(api.get(f"/v1/jobs/{job['id']}/artifacts/config.json").content)
    assert config == job["config"]
    metrics_file = api.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").text
    assert "safetensors" not in metrics_file and pid in metrics_file


def test_a_meta_train_job_registers_its_prior_and_a_fit_starts_from_it(api, sphere_file, tmp_path):  # noqa: F811
    zid = upload(api, sphere_zip(tmp_path / "spheres.zip")).json()["id"]
    r = api.post("/v1/jobs/meta-train", json={"inputs": [zid], "name": "balls",
                                              "spec": {"config": TINY_META_CONFIG, "shapes": TINY_SHAPES}})
    assert r.status_code == 201, r.text
    job = finish_job(api, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["stage"] == "done" and job["device"] == "cpu" and job["config"]["steps"] == TINY_META_CONFIG["steps"]
    m = job["metrics"]
    assert m["task"] == "meta-train" and m["n_shapes"] == 3 and m["meta_steps"] == TINY_META_CONFIG["steps"]
    pid = m["prior_id"]
    prior = api.get(f"/v1/priors/{pid}").json()
    assert prior["source_job"] == job["id"] and prior["name"] == "balls.safetensors"
    assert prior["inner_steps"] == TINY_META_CONFIG["inner_steps"] and prior["algorithm"] == "maml"
    assert prior["info"]["shapes"] == ["spheres/sphere_0.obj", "spheres/sphere_1.ply", "spheres/sphere_2.obj"]
    assert pid in [p["id"] for p in api.get("/v1/priors").json()["items"]]
    artifact = api.get(f"/v1/jobs/{job['id']}/artifacts/prior.safetensors").content
    assert artifact == api.get(f"/v1/priors/{pid}/file").content and len(artifact) > 1000

    uid = upload(api, sphere_file).json()["id"]
    r = create_sdf_job(api, uid, overrides={**PRIOR_FIT, "prior": {"id": pid}})
    assert r.status_code == 201, r.text
    fitted = finish_job(api, r.json()["id"])
    assert fitted["status"] == "succeeded", fitted["error"]
    assert fitted["metrics"]["prior"]["inner_steps"] == TINY_META_CONFIG["inner_steps"]


def test_a_shape_the_worker_cannot_read_fails_the_job_naming_it(api, tmp_path):
    zpath = sphere_zip(tmp_path / "broken.zip", radii=(0.5, 0.7), extra={"parts/broken.stl": b"solid x\nnonsense\n"})
    zid = upload(api, zpath).json()["id"]  # a readable zip: each mesh is parsed when the job runs
    r = api.post("/v1/jobs/meta-train", json={"inputs": [zid], "spec": {"config": TINY_META_CONFIG,
                                                                        "shapes": TINY_SHAPES}})
    assert r.status_code == 201, r.text
    job = finish_job(api, r.json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_input", job
    assert "parts/broken.stl" in job["error"]["detail"] and "shape-0002" not in job["error"]["detail"]
    assert api.get("/v1/priors").json()["items"] == [] or all(
        p["source_job"] != job["id"] for p in api.get("/v1/priors").json()["items"])


def test_a_meta_train_job_from_a_list_of_uploads_makes_a_prior_a_fit_uses(api, sphere_file, tmp_path):  # noqa: F811
    meshes = sphere_meshes(tmp_path / "m", radii=(0.4, 0.7))
    ids = [upload(api, p).json()["id"] for p in meshes] + [upload(api, sphere_file).json()["id"]]
    r = api.post("/v1/jobs/meta-train", json={"inputs": ids, "name": "listed",
                                              "spec": {"config": TINY_META_CONFIG, "shapes": TINY_SHAPES}})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    for uid in ids:  # the job has its own copies: deleting the uploads after submitting changes nothing
        assert api.delete(f"/v1/uploads/{uid}").status_code == 204
    job = finish_job(api, jid)
    assert job["status"] == "succeeded", job["error"]
    m = job["metrics"]
    assert m["task"] == "meta-train" and m["n_shapes"] == 3 and m["meta_steps"] == TINY_META_CONFIG["steps"]
    pid = m["prior_id"]
    assert m["prior"] == {"id": pid, "url": f"/v1/priors/{pid}"}
    # the prior is one of this key's priors, made by this job from these files
    listed = {p["id"]: p for p in api.get("/v1/priors").json()["items"]}
    assert pid in listed and listed[pid]["source_job"] == jid and listed[pid]["name"] == "listed.safetensors"
    assert listed[pid]["info"]["shapes"] == ["ball_0.obj", "ball_1.ply", "sphere.xyz"]
    assert api.get(f"/v1/jobs/{jid}/artifacts/prior.safetensors").content == api.get(f"/v1/priors/{pid}/file").content

    # a fit names it
    uid = upload(api, sphere_file).json()["id"]
    r = create_sdf_job(api, uid, overrides={**PRIOR_FIT, "prior": {"id": pid}})
    assert r.status_code == 201, r.text
    fitted = finish_job(api, r.json()["id"])
    assert fitted["status"] == "succeeded", fitted["error"]
    assert fitted["metrics"]["prior"]["id"] == pid and fitted["config"]["prior"]["id"] == pid
    assert fitted["metrics"]["prior"]["inner_steps"] == TINY_META_CONFIG["inner_steps"]
    assert fitted["config"]["network"]["hidden_features"] == TINY_META_CONFIG["network"]["hidden_features"]

    # a retry keeps the inputs (the uploads are long gone) and makes another prior
    r = api.post(f"/v1/jobs/{jid}/retry")
    assert r.status_code == 201, r.text
    again = finish_job(api, r.json()["id"])
    assert again["status"] == "succeeded", again["error"]
    assert again["inputs"] == job["inputs"] and again["metrics"]["n_shapes"] == 3
    assert again["metrics"]["prior_id"] not in (None, pid)
