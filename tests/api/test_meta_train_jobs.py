"""Meta-train jobs without a worker: shape-set uploads (zips) checked on arrival, the spec checked at submit."""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.api.priors_util import TINY_META_CONFIG, TINY_SHAPES, sphere_meshes, sphere_zip
from tests.hostile_corpus import bzip2_2gib, raw_zip
from tests.service_fixtures import create_sdf_job, upload


def _meta_job(client, uid, **spec):
    return client.post("/v1/jobs/meta-train", json={"inputs": [uid], "spec": {"config": TINY_META_CONFIG,
                                                                              "shapes": TINY_SHAPES, **spec}})


def test_a_zip_of_meshes_is_a_shape_set_and_makes_a_queued_meta_train_job(client, tmp_path, make_settings):
    zpath = sphere_zip(tmp_path / "spheres.zip", extra={"README.txt": b"three spheres", "__MACOSX/._sphere_0.obj": b"x"})
    r = upload(client, zpath)
    assert r.status_code == 201, r.text
    up = r.json()
    v = up["validation"]
    assert up["kind"] == "shapes" and up["format"] == "zip" and v["n_shapes"] == 3
    assert v["shapes"] == ["spheres/sphere_0.obj", "spheres/sphere_1.ply", "spheres/sphere_2.obj"]
    assert v["ignored"] == ["README.txt", "__MACOSX/._sphere_0.obj"]

    r = _meta_job(client, up["id"])
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["spec"]["task"] == "meta-train"
    assert job["spec"]["config"] == TINY_META_CONFIG and job["inputs"][0]["kind"] == "shapes"
    settings = make_settings()
    assert client.app.state.services.store.get_job(job["id"]).queue == settings.gpu_queue  # like other jobs
    cpu = _meta_job(client, up["id"], device="cpu").json()
    assert client.app.state.services.store.get_job(cpu["id"]).queue == settings.cpu_queue
    listed = client.get("/v1/jobs", params={"task": "meta-train"}).json()["items"]
    assert {j["id"] for j in listed} == {job["id"], cpu["id"]}
    # A finished meta-train job is retried with its own spec; presets and overrides are a fit's.
    client.post(f"/v1/jobs/{job['id']}/cancel")
    r = client.post(f"/v1/jobs/{job['id']}/retry", json={"preset": "fast"})
    assert r.status_code == 422 and ["body", "preset"] in [e["loc"] for e in r.json()["errors"]]
    r = client.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 201 and r.json()["spec"] == job["spec"] and r.json()["retry_of"] == job["id"]


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_bad_zips_are_refused_at_upload_naming_the_problem(client, tmp_path, make_settings):
    not_zip = tmp_path / "notazip.zip"
    not_zip.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    one = sphere_zip(tmp_path / "one.zip", radii=(0.5,))
    no_meshes = _zip(tmp_path / "docs.zip", {"a.txt": b"hello", "b.md": b"world"})
    # A member whose bytes no longer match its CRC.
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(corrupt, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.obj", b"v 0 0 0\n" * 50)
        zf.writestr("b.obj", b"v 1 1 1\n" * 50)
    data = bytearray(corrupt.read_bytes())
    data[data.index(b"v 0 0 0") + 2] = ord("9")
    corrupt.write_bytes(bytes(data))
    bomb = _zip(tmp_path / "bomb.zip", {"a.xyz": b"0" * 5_000_000, "b.xyz": b"0" * 10})
    # 1.6 KB of bzip2 inflating to 2 GiB, its header claiming 4800 bytes: refused before a byte is inflated.
    lying = tmp_path / "lying.zip"
    lying.write_bytes(raw_zip([("a.xyz", 12, bzip2_2gib(), 0, 4800), ("b.xyz", 0, b"1 2 3", zlib.crc32(b"1 2 3"), 5)]))
    cases = [(not_zip, "not a readable zip"), (one, "holds 1 shape file(s); meta-training needs at least 2"),
             (no_meshes, "holds 0 shape file(s)"), (corrupt, "member a.obj is corrupt"),
             (bomb, "decompression bomb"), (lying, "compression method 12")]
    for path, reason in cases:
        r = upload(client, path)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (path.name, r.text)
        assert r.json()["code"] == "invalid_input" and reason in r.json()["detail"], (path.name, r.json())
    assert [p.name for p in (make_settings().data_dir / "uploads").iterdir()] == [".incoming"]


def test_meta_train_specs_are_checked_at_submit(client, tmp_path, sphere_file, make_settings):
    shapes = upload(client, sphere_zip(tmp_path / "s.zip")).json()["id"]
    cloud = upload(client, sphere_file).json()["id"]

    r = _meta_job(client, cloud)
    assert r.status_code == 422 and r.json()["code"] == "invalid_input" and "zip of meshes" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"] == ["body", "inputs", 0]
    r = create_sdf_job(client, shapes)  # a shape set is no input of a fit
    assert r.status_code == 422 and "is a shapes" in r.json()["detail"]
    r = client.post("/v1/jobs/meta-train", json={"inputs": ["upl_nothere"]})
    assert r.status_code == 404 and r.json()["code"] == "upload_not_found"

    r = _meta_job(client, shapes, config={**TINY_META_CONFIG, "steps": 10**6})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    assert ["body", "spec", "config", "steps"] in [e["loc"] for e in r.json()["errors"]]
    r = _meta_job(client, shapes, config={"algorithm": "magic", "inner_stepz": 3})
    assert r.status_code == 422 and r.json()["code"] == "invalid_options"
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["body", "spec", "config", "algorithm"] in locs and ["body", "spec", "config", "inner_stepz"] in locs
    r = _meta_job(client, shapes, shapes={"n_points": 10**7})
    assert r.status_code == 422 and ["body", "spec", "shapes", "n_points"] in [e["loc"] for e in r.json()["errors"]]
    r = _meta_job(client, shapes, config={"network": {"type": "mlp", "hidden_features": 4096, "hidden_layers": 16}})
    assert r.status_code == 422 and "max_prior_bytes" in r.json()["detail"]
    r = client.post("/v1/jobs/meta-train", json={"inputs": [shapes], "spec": {"task": "sdf"}})
    assert r.status_code == 422  # not a meta-train spec
    assert client.get("/v1/jobs").json()["items"] == []  # nothing was queued by a refused request


def test_openapi_documents_priors_and_meta_train_jobs(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert {"/v1/priors", "/v1/priors/{prior_id}", "/v1/priors/{prior_id}/file", "/v1/jobs/meta-train"} <= set(paths)
    post = paths["/v1/priors"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    for path, method, status in (("/v1/priors", "post", "422"), ("/v1/priors", "post", "413"),
                                 ("/v1/priors/{prior_id}", "get", "404"), ("/v1/jobs/meta-train", "post", "422")):
        content = paths[path][method]["responses"][status]["content"]
        assert "application/problem+json" in content, (path, status)
        assert "/Problem" in str(content), (path, status)
    assert {"PriorPublic", "PriorList", "MetaTrainSpec", "MetaTrainJobCreate"} <= set(doc["components"]["schemas"])
    # The config is described by nfcore's MetaTrainConfig schema itself (fields, bounds, field unions).
    schemas = doc["components"]["schemas"]
    config = schemas["MetaTrainSpec"]["properties"]["config"]
    assert config["allOf"] == [{"$ref": "#/components/schemas/MetaTrainConfig"}]
    assert schemas["MetaTrainConfig"]["properties"]["algorithm"]["enum"] == ["maml", "reptile"]
    assert schemas["MetaTrainConfig"]["properties"]["steps"]["minimum"] == 1
    job_spec = doc["components"]["schemas"]["JobPublic"]["properties"]["spec"]
    assert any(s.get("$ref", "").endswith("/MetaTrainSpec") for s in job_spec["anyOf"])
    # a list of uploads as the inputs, and what refuses an entry of it
    inputs = schemas["MetaTrainJobCreate"]["properties"]["inputs"]
    assert inputs["minItems"] == 1 and inputs["maxItems"] > 2 and "meta_max_inputs" in inputs["description"]
    assert any(len(e["inputs"]) > 1 for e in schemas["MetaTrainJobCreate"]["examples"])
    meta = paths["/v1/jobs/meta-train"]["post"]
    assert '["body", "inputs", i]' in meta["description"] and "422" in meta["responses"]
    # Idempotency-Key on prior uploads: the header, the replay (200) and the stale key (409)
    assert any(p["name"].lower() == "idempotency-key" and p["in"] == "header" for p in post["parameters"])
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PriorPublic")
    assert "Idempotent-Replayed" in post["responses"]["200"]["headers"]
    assert "application/problem+json" in post["responses"]["409"]["content"]


# ---- a list of uploads as the shapes ----------------------------------------------------------------


def _list_job(client, ids, headers=None, **body):
    return client.post("/v1/jobs/meta-train", headers=headers or {},
                       json={"inputs": ids, "spec": {"config": TINY_META_CONFIG, "shapes": TINY_SHAPES}, **body})


def test_a_list_of_mesh_and_cloud_uploads_makes_a_job_with_its_own_copies(client, tmp_path, sphere_file, make_settings):
    meshes = [upload(client, p).json() for p in sphere_meshes(tmp_path / "m")]
    cloud = upload(client, sphere_file).json()
    assert [u["kind"] for u in meshes] == ["mesh", "mesh"] and cloud["validation"]["has_normals"]
    ids = [meshes[0]["id"], cloud["id"], meshes[1]["id"]]
    r = _list_job(client, ids, name="balls", headers={"Idempotency-Key": "list-1"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["spec"]["task"] == "meta-train"
    assert [i["upload_id"] for i in job["inputs"]] == ids
    assert [i["kind"] for i in job["inputs"]] == ["mesh", "pointcloud", "mesh"]
    assert [i["filename"] for i in job["inputs"]] == ["ball_0.obj", "sphere.xyz", "ball_1.ply"]
    # the same key and body replay the job; the same key with another list is refused
    again = _list_job(client, ids, name="balls", headers={"Idempotency-Key": "list-1"})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert again.headers["idempotent-replayed"] == "true"
    r = _list_job(client, ids[:2], name="balls", headers={"Idempotency-Key": "list-1"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"

    # The job's own copies, in order, with the uploads' bytes: deleting the uploads does not reach them.
    services = client.app.state.services
    copies = services.artifacts.job_listed_inputs(job["id"], "shapes")
    assert [p.name for p in copies] == ["shape-0000.obj", "shape-0001.xyz", "shape-0002.ply"]
    sources = [tmp_path / "m" / "ball_0.obj", sphere_file, tmp_path / "m" / "ball_1.ply"]
    assert [p.read_bytes() for p in copies] == [p.read_bytes() for p in sources]
    for uid in ids:
        assert client.delete(f"/v1/uploads/{uid}").status_code == 204
    assert [p.read_bytes() for p in services.artifacts.job_listed_inputs(job["id"], "shapes")] == [p.read_bytes() for p in sources]
    assert services.store.get_job(job["id"]).queue == make_settings().gpu_queue

    # A retry keeps the inputs (from the job's own copies: the uploads are gone).
    client.post(f"/v1/jobs/{job['id']}/cancel")
    r = client.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 201, r.text
    retried = r.json()
    assert retried["inputs"] == job["inputs"] and retried["spec"] == job["spec"] and retried["retry_of"] == job["id"]
    assert [p.read_bytes() for p in services.artifacts.job_listed_inputs(retried["id"], "shapes")] == [p.read_bytes() for p in sources]
    # Once the old job's copies expire, its retry says so.
    client.post(f"/v1/jobs/{retried['id']}/cancel")
    services.artifacts.remove_artifacts(retried["id"])
    r = client.post(f"/v1/jobs/{retried['id']}/retry")
    assert r.status_code == 410 and r.json()["code"] == "input_expired"


def test_bad_entries_of_a_list_are_422_naming_their_place(client, tmp_path, sphere_file, make_settings):
    m0, m1 = (upload(client, p).json()["id"] for p in sphere_meshes(tmp_path / "m"))
    bare = tmp_path / "bare.xyz"
    bare.write_text("\n".join(f"{x} {y} {z}" for x, y, z in np.random.default_rng(0).normal(size=(500, 3))))
    no_normals = upload(client, bare).json()
    assert no_normals["kind"] == "pointcloud" and not no_normals["validation"]["has_normals"]
    png = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(png)
    image = upload(client, png).json()["id"]
    shapes = upload(client, sphere_zip(tmp_path / "s.zip")).json()["id"]
    cases = [
        ([m0, "upl_nothere"], 1, "upload_not_found", "no upload with id"),
        ([m0, no_normals["id"], m1], 1, "invalid_input", "without normals"),
        ([image, m0], 0, "invalid_input", "is a image"),
        ([m0, m1, shapes], 2, "invalid_input", "zip of shapes"),
        ([m0, m1, m0], 2, "invalid_input", "listed twice"),
    ]
    for ids, i, code, reason in cases:
        r = _list_job(client, ids)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (ids, r.text)
        body = r.json()
        assert body["code"] == code and reason in body["detail"], (ids, body)
        assert body["errors"][0]["loc"] == ["body", "inputs", i], (ids, body)
    # one mesh alone is neither a shape set nor a list
    r = _list_job(client, [m0])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "inputs", 0]
    assert "list of 2 or more" in r.json()["detail"]
    r = _list_job(client, [])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][:2] == ["body", "inputs"]
    assert client.get("/v1/jobs").json()["items"] == []  # nothing was queued by a refused request
    assert [p.name for p in (make_settings().data_dir / "jobs").iterdir()] == []


def test_a_list_is_capped_and_owner_scoped(make_settings, tmp_path):
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    with TestClient(create_app(make_settings(api_keys="key-a,key-b", meta_max_inputs=2))) as c:
        paths = sphere_meshes(tmp_path / "m", radii=(0.4, 0.6, 0.8))
        mine = [upload(c, p, headers=a).json()["id"] for p in paths]
        theirs = upload(c, paths[0], headers=b).json()["id"]
        r = _list_job(c, mine, headers=a)
        assert r.status_code == 422 and r.json()["code"] == "too_many_inputs"
        assert r.json()["errors"][0]["loc"] == ["body", "inputs"] and "at most 2" in r.json()["detail"]
        r = _list_job(c, [mine[0], theirs], headers=a)  # another key's upload is unknown to this key
        assert r.status_code == 422 and r.json()["code"] == "upload_not_found"
        assert r.json()["errors"][0]["loc"] == ["body", "inputs", 1]
        assert _list_job(c, mine[:2], headers=a).status_code == 201
        assert c.get("/v1/jobs", headers=b).json()["items"] == []
