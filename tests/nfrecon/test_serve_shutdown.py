"""SIGTERM to `nfrecon serve` drains (issue 9): the running job finishes within the grace period, or goes
back to the queue; it is never failed because the service stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from nfrecon.serve import free_port
from store import JobStore, make_engine, sqlite_url
from tests.service_fixtures import long_options, sphere_xyz, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _serve(tmp_path: Path, grace: float, name: str):
    port = free_port()
    env = dict(os.environ, NFRECON_HEARTBEAT_INTERVAL_S="0.5", NFRECON_PROGRESS_INTERVAL_S="0.3",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed by the caller)
    proc = subprocess.Popen([sys.executable, "-m", "nfrecon", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "data"), "--broker", "fakeredis", "--shutdown-grace", str(grace)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"

    def ready():
        try:
            return httpx.get(f"{base}/ready", timeout=2).status_code == 200 and \
                httpx.get(f"{base}/info", timeout=2).json()["workers"]
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, interval=0.5, what="nfrecon serve with its worker")
    except BaseException:
        proc.kill()
        log.close()
        raise
    return proc, log, base


def _start_job(base: str, tmp_path: Path, steps: int) -> str:
    cloud = sphere_xyz(tmp_path / "ball.xyz")
    with httpx.Client(base_url=base, timeout=30) as c:
        uid = c.post("/uploads", params={"filename": "ball.xyz"}, content=cloud.read_bytes()).json()["id"]
        jid = c.post("/jobs", json={"spec": {"task": "sdf", "preset": "fast", "overrides": long_options(steps)},
                                    "inputs": [uid]}).json()["id"]
        wait_for(lambda: (c.get(f"/jobs/{jid}").json().get("progress") or {}).get("phase") == "train", 60,
                 what="training")
    return jid


def _stop(proc, log, timeout: float) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def _job(tmp_path: Path, jid: str):
    store = JobStore(make_engine(sqlite_url(tmp_path / "data" / "nfrecon.db")), create=False)
    try:
        return store.get_job(jid)
    finally:
        store.engine.dispose()


def test_sigterm_lets_the_running_job_finish(tmp_path):
    proc, log, base = _serve(tmp_path, grace=60, name="finish")
    jid = _start_job(base, tmp_path, steps=80)
    rc = _stop(proc, log, 90)
    text = (tmp_path / "finish.log").read_text(errors="replace")
    assert rc == 0, text[-3000:]
    job = _job(tmp_path, jid)
    # Before issue 9 the whole process group got SIGTERM: the job failed with "SystemExit: -241".
    assert job.status == "succeeded", (job.error, text[-3000:])
    assert job.attempt == 1 and job.metrics["steps"] == 80


def test_sigterm_requeues_a_job_that_outlasts_the_grace_period(tmp_path):
    proc, log, base = _serve(tmp_path, grace=1, name="requeue")
    jid = _start_job(base, tmp_path, steps=3000)
    rc = _stop(proc, log, 60)
    text = (tmp_path / "requeue.log").read_text(errors="replace")
    assert rc == 0, text[-3000:]
    job = _job(tmp_path, jid)
    assert job.status == "queued" and job.error is None, (job.status, job.error)
    assert job.attempt == 0  # the shutdown did not use up an attempt
    lines = (tmp_path / "data" / "jobs" / jid / "job.log").read_text().splitlines()
    assert any("job requeued" in x for x in lines)
    # The next start re-publishes it and a worker takes it up again.
    proc, log, base = _serve(tmp_path, grace=1, name="again")
    try:
        wait_for(lambda: httpx.get(f"{base}/jobs/{jid}", timeout=5).json()["status"] == "running", 60,
                 what="the requeued job to run again")
    finally:
        _stop(proc, log, 60)
