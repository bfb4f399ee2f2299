"""Embedded mode: `nfrecon serve` (python -m nfrecon serve) with fakeredis (no Redis server) serves a job end to end
and stops everything on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trimesh

from nfrecon.serve import EmbeddedBroker, free_port
from service.webhooks import verify
from tests.service_fixtures import TINY_OPTIONS, Receiver, sphere_xyz, wait_for

REPO = Path(__file__).resolve().parents[2]


def _processes_with(marker: str) -> list[int]:
    pids = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(cmd.parent.name))
        except OSError:
            continue
    return pids


def test_embedded_broker_speaks_redis():
    import redis

    with EmbeddedBroker("fakeredis") as broker:
        r = redis.Redis.from_url(broker.url)
        r.set("k", "v")
        assert r.get("k") == b"v"
        # kombu's Redis transport needs Lua (EVALSHA): fakeredis[lua] must be installed
        assert r.eval("return 1 + 1", 0) == 2
        r.close()
    with pytest.raises(ValueError):
        EmbeddedBroker("zookeeper")


@pytest.mark.slow
def test_serve_runs_one_job_end_to_end_without_redis_server(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = dict(os.environ, NFRECON_HEARTBEAT_INTERVAL_S="0.5", NFRECON_PROGRESS_INTERVAL_S="0.5",
               NFRECON_REAPER_INTERVAL_S="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "nfrecon", "serve", "--port", str(port), "--data-dir", str(data),
                             "--broker", "fakeredis", "--log-level", "info"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    marker = f"embedded-{proc.pid}@"
    base = f"http://127.0.0.1:{port}/v1"
    try:
        def healthy():
            try:
                return httpx.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, interval=0.5, what="nfrecon serve to be ready")
        assert _processes_with(marker), "the embedded worker subprocess is running"
        # The worker announces itself: /info lists it with the queues it serves.
        workers = wait_for(lambda: httpx.get(f"{base}/info", timeout=5).json()["workers"], 60, interval=0.5,
                           what="the worker's presence")
        assert workers[0]["hostname"].startswith("embedded-") and any(q.endswith("gpu") for q in workers[0]["queues"])
        cloud = sphere_xyz(tmp_path / "ball.xyz")
        with httpx.Client(base_url=base, timeout=30) as c, Receiver() as rx:
            up = c.post("/uploads", params={"filename": "ball.xyz"}, content=cloud.read_bytes())
            assert up.status_code == 201, up.text
            r = c.post("/jobs", json={"spec": {"task": "sdf", "preset": "fast", "overrides": TINY_OPTIONS},
                                      "inputs": [up.json()["id"]], "webhook": rx.url,
                                      "webhook_events_filter": ["start", "completed"]})
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            job = wait_for(lambda: (j := c.get(f"/jobs/{jid}").json())["status"] in ("succeeded", "failed") and j,
                           180, interval=0.5, what="the job")
            assert job["status"] == "succeeded", job["error"]
            mesh = trimesh.load(io.BytesIO(c.get(f"/jobs/{jid}/artifacts/mesh.ply").content), file_type="ply")
            assert len(mesh.faces) > 100
            # The service's own dispatcher sent both events, signed with the secret it publishes.
            wait_for(lambda: len(rx.requests) == 2, 30, what="the start and completed webhooks")
            events = rx.events()
            assert [e["type"] for e in events] == ["job.started", "job.completed"]
            assert events[1]["data"]["status"] == "succeeded" and events[1]["data"]["metrics"]
            secret = c.get("/webhooks/secret").json()["key"]
            assert all(verify(secret, req["headers"], req["body"]) for req in rx.requests)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert "embedded broker (fakeredis)" in text
    assert rc == 0, text[-3000:]
    assert _processes_with(marker) == [], "worker processes left behind"
    assert (data / "nfrecon.db").is_file()
