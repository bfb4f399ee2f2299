"""A meta-train job in run_job without Celery: progress in phase "meta-train", cooperative cancel, resumable checkpoint."""

from __future__ import annotations

import json
import threading

from nfcore.meta import MetaTrainConfig, load_shapes, meta_train
from service.metatrain import MetaTrainSpec, parse_config
from service.shapesets import ShapeSetLimits, extract_shapes
from tests.api.priors_util import TINY_META_CONFIG, TINY_SHAPES, sphere_zip
from tests.service_fixtures import upload, wait_for
from worker.runner import run_job


def _submit(client, tmp_path, **config) -> str:
    zid = upload(client, sphere_zip(tmp_path / "spheres.zip")).json()["id"]
    r = client.post("/v1/jobs/meta-train", json={"inputs": [zid], "spec": {"config": {**TINY_META_CONFIG, **config},
                                                                           "shapes": TINY_SHAPES}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_meta_train_job_reports_its_phase_and_stops_on_cancel(client, services, ctx, tmp_path):
    jid = _submit(client, tmp_path, steps=10_000, checkpoint_every=1)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("status", run_job(jid, ctx)))
    t.start()
    try:
        job = wait_for(lambda: (j := client.get(f"/v1/jobs/{jid}").json())["stage"] == "meta-train"
                       and (j["progress"] or {}).get("step") and j, 120, what="meta-training to report progress")
        p = job["progress"]
        assert p["phase"] == "meta-train" and p["total_steps"] == 10_000 and 0.1 <= p["fraction"] < 0.95
        assert job["config"]["steps"] == 10_000 and job["device"] == "cpu"  # the resolved MetaTrainConfig
        assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 202
    finally:
        t.join(120)
    assert result["status"] == "canceled"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "canceled" and job["error"] is None
    # Nothing was registered; the scratch files go (a canceled job is never resumed, a retry is a new job).
    assert client.get("/v1/priors").json()["items"] == []
    assert not services.artifacts.metatrain_checkpoint(jid).exists() and not services.artifacts.shapes_dir(jid).exists()


def test_a_later_attempt_resumes_meta_training_from_the_checkpoint(client, services, ctx, tmp_path):
    jid = _submit(client, tmp_path, steps=4, checkpoint_every=1)
    # A lost first attempt left a checkpoint at step 2 of the same config (as a killed worker would).
    spec = MetaTrainSpec.model_validate(services.store.get_job(jid).spec)
    cfg = parse_config(spec, ["spec"])
    cfg = cfg.model_copy(update={"progress_interval_s": min(cfg.progress_interval_s, services.settings.progress_interval_s)})
    shapes_dir = tmp_path / "shapes"
    extract_shapes(services.artifacts.find_job_input(jid), shapes_dir, ShapeSetLimits())
    shapes = load_shapes([shapes_dir], seed=cfg.seed, n_points=spec.shapes.n_points, noise=spec.shapes.noise,
                         n_sdf=spec.shapes.n_sdf)
    meta_train(shapes, MetaTrainConfig.model_validate({**json.loads(cfg.model_dump_json()), "steps": 2}),
               checkpoint_path=services.artifacts.metatrain_checkpoint(jid))
    assert run_job(jid, ctx) == "succeeded"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["metrics"]["resumed_from"] == 2 and job["metrics"]["prior_id"].startswith("pri_")
    assert not services.artifacts.metatrain_checkpoint(jid).exists()  # removed once the prior is registered
    assert not services.artifacts.shapes_dir(jid).exists()


def test_a_listed_shape_nfcore_cannot_read_fails_the_job_naming_the_upload(client, services, ctx, tmp_path):
    from tests.api.priors_util import sphere_meshes

    ids = [upload(client, p).json()["id"] for p in sphere_meshes(tmp_path / "m", radii=(0.4, 0.6, 0.8))]
    r = client.post("/v1/jobs/meta-train", json={"inputs": ids, "spec": {"config": TINY_META_CONFIG,
                                                                         "shapes": TINY_SHAPES}})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    # The job's copy of the second shape goes bad after submission (a disk error, say): replaced, not edited,
    # so the upload keeps its bytes.
    copy = services.artifacts.job_listed_inputs(jid, "shapes")[1]
    copy.unlink()
    copy.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    assert run_job(jid, ctx) == "failed"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["error"]["code"] == "invalid_input", job["error"]
    assert "ball_1.ply" in job["error"]["detail"] and "shape-0001" not in job["error"]["detail"], job["error"]
    assert client.get("/v1/priors").json()["items"] == []
