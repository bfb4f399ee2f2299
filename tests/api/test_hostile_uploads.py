"""Hostile uploads (tests/hostile_corpus.py) against a real app: every one gets a 4xx problem+json naming
the problem, the API stays healthy after each, bombs leave its memory bounded; slow bodies get 408;
unsafe filenames are cleaned; an error answer keeps the connection; downloads honour ETag and Range."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from nfrecon.serve import http_protocol
from service.settings import Settings
from store import JobStatus
from tests.hostile_corpus import CASES, UNSAFE_FILENAMES, png_chunk
from tests.service_fixtures import embedded_broker, sphere_file, unique_prefix, upload  # noqa: F401 (fixtures)

BOMB_RSS_BUDGET = 150 << 20
"""How much the API process's peak RSS may grow while it answers one bomb (parsers run elsewhere)."""
PEAKS: dict[str, int] = {}


def _settings(root: Path, broker: str, **overrides) -> Settings:
    values = dict(data_dir=root / "data", broker_url=broker, queue_prefix=unique_prefix(), reaper_enabled=False,
                  republish_on_startup=False, webhooks_enabled=False)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory, embedded_broker):  # noqa: F811
    with TestClient(create_app(_settings(tmp_path_factory.mktemp("hostile"), embedded_broker))) as c:
        yield c


def _reset_peak_rss() -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each bomb's peak is measured alone.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/self/status")


def _assert_problem(r, status: int, code: str | tuple[str, ...], says: tuple[str, ...] = ()) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    codes = (code,) if isinstance(code, str) else code
    assert body["code"] in codes, body
    assert body["status"] == status and body["title"] and body["detail"]
    for words in says:
        assert words.lower() in body["detail"].lower(), (words, body["detail"])
    return body


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_upload_is_refused_and_api_stays_up(hostile_client, case):
    data = case.data()
    assert len(data) <= 128 << 10, "the corpus holds small files only"
    measured = case.bomb and _reset_peak_rss()
    before = _rss("VmRSS")
    t0 = time.perf_counter()
    r = hostile_client.post("/v1/uploads", params={"filename": case.filename}, content=data)
    seconds = time.perf_counter() - t0
    body = _assert_problem(r, case.status, case.code, case.says)
    # The answer names the client's file, never a storage path.
    assert "/uploads/" not in body["detail"] and "input." not in body["detail"]
    assert hostile_client.get("/v1/health").json() == {"status": "ok"}
    assert seconds < 30, f"{case.id} took {seconds:.1f} s"
    if measured:
        growth = _rss("VmHWM") - before
        PEAKS[case.id] = growth
        print(f"\n{case.id}: API peak RSS +{growth / 2**20:.1f} MiB over {before / 2**20:.0f} MiB, {seconds:.2f} s")
        assert growth < BOMB_RSS_BUDGET, f"{case.id}: API peak RSS grew by {growth / 2**20:.0f} MiB"


def test_nothing_from_refused_uploads_is_kept(hostile_client):
    listing = hostile_client.app.state.services.settings.data_dir / "uploads"
    leftovers = [p.name for p in listing.iterdir() if p.name != ".incoming"] if listing.is_dir() else []
    assert leftovers == []


@pytest.mark.parametrize(("sent", "kept"), UNSAFE_FILENAMES, ids=[f"name{i}" for i in range(len(UNSAFE_FILENAMES))])
def test_unsafe_filenames_are_cleaned(hostile_client, sphere_file, sent, kept):  # noqa: F811
    r = upload(hostile_client, sphere_file, filename=sent)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["filename"] == kept
    assert len(body["filename"].encode()) <= 255
    for value in r.headers.values():
        assert "\r" not in value and "\n" not in value and "X-Injected" not in value
    assert hostile_client.get(f"/v1/uploads/{body['id']}").json()["filename"] == kept


def test_filename_that_cleans_to_nothing_is_refused(hostile_client, sphere_file):  # noqa: F811
    r = upload(hostile_client, sphere_file, filename="\u202e\r\n. . .")
    _assert_problem(r, 422, "filename_required")


def _big_png(width: int, height: int) -> bytes:
    """A small file (a few hundred KiB) that decodes to width x height x 3 bytes."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_validation_memory_and_time_limits_are_422(tmp_path, embedded_broker):  # noqa: F811
    png = _big_png(6000, 6000)  # 108 MB of pixels
    assert len(png) < 512 << 10
    settings = _settings(tmp_path, embedded_broker, validation_memory_bytes=64 << 20)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/uploads", params={"filename": "wide.png"}, content=png)
        _assert_problem(r, 422, "validation_out_of_memory", ("wide.png", str(64 << 20)))
        assert c.get("/v1/health").status_code == 200
    settings = _settings(tmp_path, embedded_broker, validation_timeout_s=0.05)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/uploads", params={"filename": "wide.png"}, content=png)
        _assert_problem(r, 422, "validation_timeout", ("wide.png", "0.05 s"))
        assert c.get("/v1/health").status_code == 200
    settings = _settings(tmp_path, embedded_broker, validation_max_points=100)
    with TestClient(create_app(settings)) as c:
        lines = "".join(f"{i % 7} {i % 11} {i % 13}\n" for i in range(150))
        r = c.post("/v1/uploads", params={"filename": "many.xyz"}, content=lines.encode())
        _assert_problem(r, 422, "invalid_input", ("150 lines", "at most 100"))


# ---- a real server: timeouts and connections ---------------------------------------------------


class _Server:
    """uvicorn serving `app` on a free loopback port in a thread (the same server `nfrecon serve` runs)."""

    def __init__(self, app, **options):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options.setdefault("http", http_protocol())  # as nfrecon serve runs it
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body; b'' status 0 if the server closed first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_stalled_body_gets_408_and_the_connection_is_closed(tmp_path, embedded_broker):  # noqa: F811
    settings = _settings(tmp_path, embedded_broker, body_timeout_s=2.0)
    with _Server(create_app(settings)) as srv, srv.connect() as sock:
        sock.sendall(b"POST /v1/uploads?filename=big.xyz HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\nContent-Length: 300000000\r\n\r\n" + b"0" * 1024)
        t0 = time.perf_counter()
        status, headers, body = _read_response(sock)
        seconds = time.perf_counter() - t0
        print(f"\nstalled 300 MB body (1 KiB sent): {status} after {seconds:.2f} s (body_timeout_s=2)")
        assert status == 408, body
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "body_timeout"
        assert headers.get("connection") == "close"
        assert 1.5 < seconds < 6
        assert _closed_by_server(sock)
        with srv.connect() as other:
            other.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(other)[0] == 200


def test_stalled_json_body_gets_408(tmp_path, embedded_broker):  # noqa: F811
    settings = _settings(tmp_path, embedded_broker, body_timeout_s=1.0)
    with _Server(create_app(settings)) as srv, srv.connect() as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"spec\":")
        status, headers, body = _read_response(sock)
        assert status == 408 and headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "body_timeout" and "8 bytes received" in json.loads(body)["detail"]


def test_slow_headers_close_the_connection(tmp_path, embedded_broker):  # noqa: F811
    app = create_app(_settings(tmp_path, embedded_broker))
    with _Server(app, http=http_protocol(header_timeout_s=1.0)) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # no blank line: headers never end
            t0 = time.perf_counter()
            assert _closed_by_server(sock)
            seconds = time.perf_counter() - t0
            print(f"\nunfinished headers: connection closed after {seconds:.2f} s (header timeout 1 s)")
            assert 0.5 < seconds < 4
        with srv.connect() as sock:  # whole requests, on a kept-alive connection, are unaffected
            for _ in range(2):
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _read_response(sock)[0] == 200
                time.sleep(1.2)


def test_trickling_body_gets_408(tmp_path, embedded_broker):  # noqa: F811
    settings = _settings(tmp_path, embedded_broker, body_rate_grace_s=1.0, min_body_rate_bytes_s=10_000)
    with _Server(create_app(settings)) as srv, srv.connect() as sock:
        sock.sendall(b"POST /v1/uploads?filename=slow.xyz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        t0 = time.perf_counter()
        sock.settimeout(0.3)
        answer = b""
        while time.perf_counter() - t0 < 10:
            try:
                sock.sendall(b"0 0 0\n" * 10)  # 60 bytes every 0.3 s: 200 bytes/s
                answer = sock.recv(65536)
                if answer:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        seconds = time.perf_counter() - t0
        print(f"\ntrickled body (200 B/s, minimum 10 kB/s after 1 s): answered after {seconds:.2f} s")
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"body_too_slow" in answer
        assert seconds < 5


def test_content_length_over_the_limit_is_413_before_reading(tmp_path, embedded_broker):  # noqa: F811
    settings = _settings(tmp_path, embedded_broker, max_upload_bytes=1000)
    with _Server(create_app(settings)) as srv, srv.connect() as sock:
        sock.sendall(b"POST /v1/uploads?filename=a.xyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = _read_response(sock)  # answered without sending a byte of the body
        assert status == 413 and headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "too_large" and headers.get("connection") == "close"


def test_an_internal_error_keeps_the_connection(tmp_path, embedded_broker):  # noqa: F811
    app = create_app(_settings(tmp_path, embedded_broker))

    @app.get("/v1/_boom", include_in_schema=False)
    def boom():
        raise RuntimeError("deliberate")

    with _Server(app) as srv, srv.connect() as sock:
        sock.sendall(b"GET /v1/_boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = _read_response(sock)
        assert status == 500 and headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["code"] == "internal" and "RuntimeError" in problem["detail"]
        assert "deliberate" not in problem["detail"]  # no internals in the answer
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection
        assert _read_response(sock)[0] == 200


# ---- downloads: conditional and range requests (RFC 9110) ----------------------------------------


@pytest.fixture(scope="module")
def finished_job(hostile_client, tmp_path_factory):
    """A job made succeeded directly in the store, with two small artifacts."""
    c = hostile_client
    sphere = tmp_path_factory.mktemp("in") / "s.xyz"
    from tests.service_fixtures import sphere_xyz

    sphere_xyz(sphere)
    up = upload(c, sphere).json()
    job = c.post("/v1/jobs", json={"spec": {"task": "sdf", "preset": "fast"}, "inputs": [up["id"]]}).json()
    services = c.app.state.services
    claimed = services.store.claim(job["id"], "test", stale_before=__import__("store").utcnow())
    tmp = services.artifacts.attempt_dir(job["id"], claimed.attempt)
    (tmp / "mesh.ply").write_bytes(b"ply\n" + bytes(range(256)) * 8)
    (tmp / "metrics.json").write_text('{"chamfer_l1": 0.003}')
    services.artifacts.publish(job["id"], tmp)
    assert services.store.finish(job["id"], claimed.attempt, JobStatus.succeeded)
    return job["id"]


def test_artifact_etag_gives_304(hostile_client, finished_job):
    url = f"/v1/jobs/{finished_job}/artifacts/mesh.ply"
    r = hostile_client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ply"
    etag = r.headers["etag"]
    r2 = hostile_client.get(url, headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
    assert hostile_client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert hostile_client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    z = hostile_client.get(f"/v1/jobs/{finished_job}/artifacts/all.zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    zr = hostile_client.get(f"/v1/jobs/{finished_job}/artifacts/all.zip", headers={"If-None-Match": z.headers["etag"]})
    assert zr.status_code == 304


def test_artifact_ranges(hostile_client, finished_job):
    url = f"/v1/jobs/{finished_job}/artifacts/mesh.ply"
    full = hostile_client.get(url).content
    r = hostile_client.get(url, headers={"Range": "bytes=4-13"})
    assert r.status_code == 206 and r.content == full[4:14]
    assert r.headers["content-range"] == f"bytes 4-13/{len(full)}"
    r = hostile_client.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == full[-5:]
    r = hostile_client.get(url, headers={"Range": "bytes=5-2"})
    _assert_problem(r, 400, "invalid_range", ("bytes=5-2",))
    r = hostile_client.get(url, headers={"Range": "bytes=abc"})
    _assert_problem(r, 400, "invalid_range")
    r = hostile_client.get(url, headers={"Range": f"bytes={len(full) + 10}-"})
    _assert_problem(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{len(full)}"
    # An If-Range that does not match means: the whole, current file.
    r = hostile_client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == full
    # Another unit is ignored (RFC 9110 §14.2).
    assert hostile_client.get(url, headers={"Range": "items=0-3"}).status_code == 200


def test_a_validator_that_dies_is_an_answer_and_the_next_one_works(sphere_file):  # noqa: F811
    import signal

    from api.services.validation import ValidationLimits
    from nfcore.io.isolated import Inspector

    pool = Inspector(1)
    try:
        limits = ValidationLimits().child_limits()
        # No CPU time at all: the kernel stops the child with SIGXCPU before it can answer.
        out = pool.inspect(sphere_file, {**limits, "cpu_s": 0}, 30)
        assert out.status is None and out.exitcode == -signal.SIGXCPU and not out.timed_out
        out = pool.inspect(sphere_file, limits, 30)  # the same fork server, still serving
        assert out.status == "ok" and out.payload["n_points"] == 2000 and out.peak_rss_bytes > 0
    finally:
        pool.close()
