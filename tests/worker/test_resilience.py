"""The queue survives its broker (issue 9): real redis-server processes of our own, real Celery workers.

Each test starts its own `redis-server` on a free loopback port (never the shared one), so that it
can stop and restart the broker under a running worker.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from nfrecon.serve import _wait_port, free_port
from service.settings import Settings
from tests.service_fixtures import (
    create_sdf_job,
    long_options,
    sphere_file,  # noqa: F401 (fixture)
    start_worker,
    unique_prefix,
    upload,
    wait_for,
)

pytestmark = pytest.mark.slow


class RedisServer:
    """A redis-server child on a fixed free port; `restart()` keeps the port (and, with AOF, the data)."""

    def __init__(self, workdir: Path, *, persistent: bool):
        if not shutil.which("redis-server"):
            pytest.skip("no redis-server on PATH")
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else \
            ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, start_new_session=True)
        _wait_port("127.0.0.1", self.port, 10)

    def kill(self) -> None:
        """SIGKILL: an outage (a crash loses whatever was not persisted)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis", persistent=False)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def api(tmp_path, redis_server):
    settings = Settings(data_dir=tmp_path / "data", broker_url=redis_server.url, queue_prefix=unique_prefix(),
                        reaper_enabled=False, republish_on_startup=False, heartbeat_interval_s=0.5,
                        progress_interval_s=0.2, stale_after_s=3.0, max_attempts=2, cancel_grace_s=20.0)
    with TestClient(create_app(settings)) as c:
        yield c


def _job(api, jid) -> dict:
    return api.get(f"/v1/jobs/{jid}").json()


def _finished(api, jid):
    job = _job(api, jid)
    return job if job["status"] in ("succeeded", "failed", "canceled") else None


def test_broker_outage_does_not_end_the_running_job(api, redis_server, tmp_path, sphere_file):  # noqa: F811
    """Redis dies for 3 s under a running job: the job still succeeds, never `failed: internal`."""
    settings = api.app.state.services.settings
    worker = start_worker(settings, tmp_path, "outage")
    try:
        uid = upload(api, sphere_file).json()["id"]
        jid = create_sdf_job(api, uid, overrides=long_options(150)).json()["id"]
        wait_for(lambda: (_job(api, jid).get("progress") or {}).get("phase") == "train", 60, what="training")
        redis_server.restart(down_s=3.0)  # the worker loses its broker connection mid-job
        # Before issue 9 Celery cancelled the task on the connection loss: SIGTERM to the child,
        # "failed, internal, SystemExit: -241" with an attempt left.
        job = wait_for(lambda: _finished(api, jid), 90, interval=0.5, what="the job to end")
    finally:
        worker.stop()
    assert job["status"] == "succeeded", job["error"]
    assert 1 <= job["attempt"] <= job["max_attempts"]
    assert [a["name"] for a in api.get(f"/v1/jobs/{jid}/artifacts").json()["items"]].count("mesh.ply") == 1


def test_sigterm_to_the_job_child_requeues_instead_of_failing(api, tmp_path, sphere_file):  # noqa: F811
    """The child of a job gets SIGTERM (a worker going away): the job goes back to the queue and runs again."""
    from tests.service_fixtures import pool_children

    services = api.app.state.services
    worker = start_worker(services.settings, tmp_path, "term")
    try:
        uid = upload(api, sphere_file).json()["id"]
        jid = create_sdf_job(api, uid, overrides=long_options(150)).json()["id"]
        wait_for(lambda: (_job(api, jid).get("progress") or {}).get("phase") == "train", 60, what="training")
        for pid in pool_children(worker.proc.pid):
            subprocess.run(["kill", "-TERM", str(pid)], check=False)
        # The runner hands the job back (queued, attempt not counted) and Celery redelivers the message.
        log_says = lambda: any("job requeued" in x for x in api.get(f"/v1/jobs/{jid}/logs").json()["lines"])  # noqa: E731
        wait_for(log_says, 30, what="the requeue")
        job = wait_for(lambda: _finished(api, jid), 90, interval=0.5, what="the second run")
    finally:
        worker.stop()
    assert job["status"] == "succeeded", job["error"]
    assert job["attempt"] == 1  # the shutdown did not use up an attempt
    lines = api.get(f"/v1/jobs/{jid}/logs").json()["lines"]
    assert sum("attempt 1/2" in x for x in lines) == 2 and not any("failed" in x for x in lines)


def test_queued_jobs_survive_a_broker_restart_without_persistence(api, redis_server, tmp_path,
                                                                  sphere_file):  # noqa: F811
    """Redis forgets its queue: /ready says so, the reaper re-publishes, and the jobs run in submission order."""
    services = api.app.state.services
    uid = upload(api, sphere_file).json()["id"]
    early = [create_sdf_job(api, uid).json()["id"] for _ in range(3)]
    assert api.get("/v1/ready").status_code == 200
    redis_server.restart()  # no AOF, no RDB: the three messages are gone
    time.sleep(2.1)  # PUBLISH_GRACE_S: a message is looked for only some time after its publish
    r = api.get("/v1/ready")
    assert r.status_code == 503 and "lost the messages of 3 queued job" in r.json()["broker"], r.json()
    late = create_sdf_job(api, uid).json()["id"]  # submitted after the restart: must not overtake them
    done = api.app.state.reaper.run_once()
    assert done["republished_lost"] == 3
    assert api.get("/v1/ready").status_code == 200
    worker = start_worker(services.settings, tmp_path, "after-restart")
    try:
        jobs = [wait_for(lambda j=j: _finished(api, j), 120, interval=0.5, what=f"job {j}") for j in [*early, late]]
    finally:
        worker.stop()
    assert [j["status"] for j in jobs] == ["succeeded"] * 4, [j["error"] for j in jobs]
    assert all(j["attempt"] == 1 for j in jobs)
    started = [j["started_at"] for j in jobs]
    assert started == sorted(started), "jobs did not run in submission order"
