"""Shared helpers and fixtures for the service tests (store, API, worker, serve).

Everything is real: SQLite files in tmp dirs, the real PostgreSQL and Redis when they answer,
fakeredis' TCP server (the embedded broker `nfrecon serve` ships) for API tests, real Celery
worker subprocesses and real nfcore fits on tiny inputs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# A real reconstruction small enough for a shared 2-core CI machine (seconds).
TINY_OPTIONS = {"train": {"steps": 30, "batch_size": 512}, "extraction": {"resolution": 32}}


def long_options(steps: int = 3000) -> dict:
    """A job that trains long enough to be canceled or killed mid-run."""
    return {"train": {"steps": steps, "batch_size": 512}, "extraction": {"resolution": 32}}


def sphere_xyz(path: Path, n: int = 2000, seed: int = 0) -> Path:
    """An oriented point cloud (x y z nx ny nz per line) on a sphere of radius 0.5."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.savetxt(path, np.hstack([0.5 * p, p]), fmt="%.6f")
    return path


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_redis() -> str:
    """The URL of the real Redis; skip when absent, but fail when NFRECON_REQUIRE_REDIS=1 (CI)."""
    if _port_open(REDIS_HOST, REDIS_PORT):
        import redis

        try:
            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=1).ping()
            return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
        except redis.RedisError:
            pass
    if os.environ.get("NFRECON_REQUIRE_REDIS") == "1":
        pytest.fail(f"Redis is required (NFRECON_REQUIRE_REDIS=1) but none answers at {REDIS_HOST}:{REDIS_PORT}")
    pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT}")


def postgres_available() -> bool:
    if not _port_open("127.0.0.1", 5432):
        return False
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2):
            return True
    except Exception:
        return False


def unique_prefix() -> str:
    return f"nfrecon-test-{uuid.uuid4().hex[:10]}."


def cleanup_redis_prefix(url: str, prefix: str) -> None:
    """Remove the queues and bindings this test run created on the shared Redis."""
    import redis

    r = redis.Redis.from_url(url)
    for pattern in (f"{prefix}*", f"_kombu.binding.{prefix}*"):
        keys = list(r.scan_iter(pattern))
        if keys:
            r.delete(*keys)
    r.close()


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[str]:
    """fakeredis' Redis-protocol TCP server in this process: the broker `nfrecon serve` embeds."""
    from nfrecon.serve import EmbeddedBroker

    broker = EmbeddedBroker("fakeredis")
    broker.start()
    yield broker.url
    broker.stop()


@pytest.fixture(scope="session")
def sphere_file(tmp_path_factory) -> Path:
    return sphere_xyz(tmp_path_factory.mktemp("inputs") / "sphere.xyz")


def start_worker(settings, log_dir: Path, name: str):
    """A real Celery worker subprocess with the production flags; returns once it is ready."""
    from nfrecon.serve import WorkerProcess, settings_env
    from worker.celery_app import worker_argv

    log = log_dir / f"{name}.log"
    worker = WorkerProcess(worker_argv(settings, hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h"),
                           settings_env(settings), restart=False, grace_s=10.0, log_file=log)
    worker.start()
    wait_for(lambda: log.is_file() and " ready." in log.read_text(errors="replace"), 90, what=f"worker {name} ready")
    return worker


def pool_children(pid: int) -> list[int]:
    """Child pids of a process (the prefork pool of a Celery worker), read from /proc."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                out.append(int(status.parent.name))
    return out


# ---- API helpers -------------------------------------------------------------------------------


def upload(client, path, *, filename=None, headers=None):
    with open(path, "rb") as f:
        return client.post("/v1/uploads", params={"filename": filename or path.name}, content=f.read(),
                           headers=headers or {})


def sdf_spec(overrides=None, preset="fast") -> dict:
    """A job's `spec` (a MethodSpec as JSON): a tiny SDF unless `overrides` say otherwise."""
    return {"task": "sdf", "preset": preset, "overrides": TINY_OPTIONS if overrides is None else overrides}


def create_sdf_job(client, upload_id, *, overrides=None, headers=None, **extra):
    body = {"spec": sdf_spec(overrides), "inputs": [upload_id], **extra}
    return client.post("/v1/jobs", json=body, headers=headers or {})


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTs and answers with the next scripted status."""

    def __init__(self, statuses: list[int] | None = None):
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"path": self.path, "headers": headers, "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


FINISHED = ("succeeded", "failed", "canceled")


def worker_test_settings(tmp_path, **extra):
    """Settings for a test with real workers on the real Redis: its own queues, quick heartbeats, no reaper."""
    from service.settings import Settings

    return Settings(data_dir=tmp_path / "data", broker_url=require_redis(), queue_prefix=unique_prefix(),
                    reaper_enabled=False, republish_on_startup=False, heartbeat_interval_s=0.5,
                    progress_interval_s=0.2, stale_after_s=2.0, **extra)


def finish_job(api, jid: str, timeout: float = 180) -> dict:
    """Poll GET /v1/jobs/{jid} until the job is finished; return it."""
    return wait_for(lambda: (j := api.get(f"/v1/jobs/{jid}").json())["status"] in FINISHED and j, timeout,
                    interval=0.5, what=f"job {jid} to finish")
