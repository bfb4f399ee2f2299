"""Streamed uploads: validation report, 413 while streaming, 415, 422, idempotency, untrusted filenames, keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.service_fixtures import upload


def test_upload_reports_points_normals_and_bounds(client, sphere_file):
    r = upload(client, sphere_file)
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/uploads/{body['id']}"
    assert body["sha256"] == hashlib.sha256(sphere_file.read_bytes()).hexdigest()
    assert body["size"] == sphere_file.stat().st_size
    v = body["validation"]
    assert v["kind"] == "pointcloud" and v["n_points"] == 2000 and v["has_normals"] is True
    assert all(-0.51 < a < -0.45 for a in v["bbox_min"]) and all(0.45 < a < 0.51 for a in v["bbox_max"])
    assert client.get(f"/v1/uploads/{body['id']}").json()["sha256"] == body["sha256"]


def test_filename_is_never_a_path(client, sphere_file, make_settings):
    r = upload(client, sphere_file, filename="../../../etc/evil.xyz")
    assert r.status_code == 201
    body = r.json()
    assert body["filename"] == "evil.xyz"
    data = make_settings().data_dir
    stored = list((data / "uploads" / body["id"]).iterdir())
    assert [p.name for p in stored] == ["input.xyz"]
    assert not (data.parent / "etc").exists()


def test_unsupported_extension_and_media_type_are_415(client, sphere_file):
    r = upload(client, sphere_file, filename="cloud.las")
    assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unsupported_format" and ".las" in r.json()["detail"]
    r = upload(client, sphere_file, headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"


def test_too_large_is_413_from_length_and_while_streaming(make_settings, sphere_file):
    with TestClient(create_app(make_settings(max_upload_bytes=1000))) as c:
        r = upload(c, sphere_file)
        assert r.status_code == 413 and r.json()["code"] == "too_large"

        def chunks():  # no Content-Length: the limit must trip while the body streams
            for _ in range(50):
                yield b"0.1 0.2 0.3 0 0 1\n" * 10

        r = c.post("/v1/uploads", params={"filename": "big.xyz"}, content=chunks())
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        data = make_settings().data_dir
        assert list((data / "uploads" / ".incoming").iterdir()) == []  # partial file removed
        assert [p.name for p in (data / "uploads").iterdir()] == [".incoming"]


def test_malformed_file_is_422_naming_the_defect(client, tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1 2 3\nnot a number here\n")
    r = upload(client, bad)
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert "bad.xyz" in r.json()["detail"] and "uploads/" not in r.json()["detail"]
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    r = upload(client, empty)
    assert r.status_code == 422 and r.json()["code"] == "empty_file"
    r = client.post("/v1/uploads", content=b"1 2 3\n")
    assert r.status_code == 422 and r.json()["code"] == "filename_required"


def test_filename_from_content_disposition(client, sphere_file):
    r = client.post("/v1/uploads", content=sphere_file.read_bytes(),
                    headers={"Content-Disposition": 'attachment; filename="scan.xyz"'})
    assert r.status_code == 201 and r.json()["filename"] == "scan.xyz"


def test_idempotent_upload_replays_and_rejects_other_bytes(client, sphere_file, tmp_path):
    h = {"Idempotency-Key": "up-1"}
    first = upload(client, sphere_file, headers=h)
    again = upload(client, sphere_file, headers=h)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    other = tmp_path / "other.xyz"
    other.write_text(sphere_file.read_text().replace("0.", "0.0", 5))
    r = upload(client, other, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def test_delete_upload(client, sphere_file):
    uid = upload(client, sphere_file).json()["id"]
    assert client.delete(f"/v1/uploads/{uid}").status_code == 204
    r = client.get(f"/v1/uploads/{uid}")
    assert r.status_code == 404 and r.json()["code"] == "upload_not_found"


def test_api_keys_isolate_owners(make_settings, sphere_file):
    with TestClient(create_app(make_settings(api_keys="key-a,key-b"))) as c:
        assert c.get("/v1/health").status_code == 200  # unauthenticated
        r = c.get("/v1/info")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/v1/info", headers={"Authorization": "Bearer nope"}).status_code == 401
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        uid = upload(c, sphere_file, headers=a).json()["id"]
        assert c.get(f"/v1/uploads/{uid}", headers=a).status_code == 200
        assert c.get(f"/v1/uploads/{uid}", headers=b).status_code == 404
        r = c.post("/v1/jobs", json={"inputs": [uid], "spec": {"preset": "fast"}}, headers=b)
        assert r.status_code == 404 and r.json()["code"] == "upload_not_found"
        job = c.post("/v1/jobs", json={"inputs": [uid], "spec": {"preset": "fast"}}, headers=a)
        assert job.status_code == 201
        jid = job.json()["id"]
        assert c.get(f"/v1/jobs/{jid}", headers=b).status_code == 404
        assert c.get("/v1/jobs", headers=b).json()["items"] == []
        assert [j["id"] for j in c.get("/v1/jobs", headers=a).json()["items"]] == [jid]
        assert c.post(f"/v1/jobs/{jid}/cancel", headers=b).status_code == 404


def test_a_full_disk_is_507_not_500():
    # /dev/full answers every write with ENOSPC, as a full data directory does.
    import anyio

    from api.services.uploads import stream_to_file
    from service.errors import ProblemError

    async def chunks():
        for _ in range(64):
            yield b"x" * 65536

    with pytest.raises(ProblemError) as info:
        anyio.run(stream_to_file, chunks(), Path("/dev/full"), 1 << 30)
    assert info.value.status == 507 and info.value.code == "insufficient_storage"


def test_uploads_to_a_really_full_data_directory_are_507_and_leave_nothing(tmp_path, make_settings, sphere_file):
    from store import sqlite_url
    from tests.store.full_disk import fill, small_disk

    with small_disk(tmp_path / "small", mb=4) as mnt:
        settings = make_settings(data_dir=mnt / "data", database_url=sqlite_url(tmp_path / "jobs.db"))
        with TestClient(create_app(settings)) as c:
            filler = fill(mnt)
            for size in (1, 64 << 10, 1 << 20):  # one byte already finds no room
                payload = (sphere_file.read_bytes() * (size // sphere_file.stat().st_size + 1))[:size]
                r = c.post("/v1/uploads", params={"filename": "ball.xyz"}, content=payload)
                assert r.status_code == 507, (size, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["code"] == "insufficient_storage"
            form = c.post("/v1/jobs/form", files={"file": ("ball.xyz", sphere_file.read_bytes())},
                          data={"job": '{"spec": {"task": "sdf", "preset": "fast"}}'})
            assert form.status_code == 507 and form.json()["code"] == "insufficient_storage"
            assert not list((mnt / "data" / "uploads" / ".incoming").iterdir())  # no partial file left
            assert c.get("/v1/health").status_code == 200
            filler.unlink()
            assert upload(c, sphere_file).status_code == 201
