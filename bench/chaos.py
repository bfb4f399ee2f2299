"""Failure campaign: a real `nfrecon serve` on a real Redis broker and a PostgreSQL job store, under faults.

Everything is real: a `redis-server` of our own on a free loopback port (never the shared one), a
fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end), `nfrecon serve --broker redis://...`
with its Celery worker subprocess, tiny sdf jobs. Scenarios:

1. kill-child: >= 20 jobs queued; the worker's pool child is SIGKILLed at random moments.
2. redis-restart (without, then with persistence): Redis is SIGKILLed and restarted mid-queue.
3. service-restart: `nfrecon serve` gets SIGTERM mid-queue and starts again; then a crash (SIGKILL
   of the API and the whole worker) and a start again. Every earlier record and artifact is re-read.
4. disk-full: a 20 MB tmpfs as the data directory, filled up: uploads, a running job, what is served.
5. pollers: 50 concurrent GET /v1/jobs/{id} pollers (each every 0.5 s) and a few concurrent uploaders
   for 2 minutes (`--poll-seconds`) while a fit runs on the same machine: latency median/p99/max, 5xx;
   then the same pollers back to back for 10 s (throughput).

For every job: lost = not terminal at the end of its scenario (or its record gone); duplicated =
finished more than once (two "succeeded in" log lines), or attempt leftovers or two copies of an
artifact; failed-with-reason = `failed` with an error code and detail. Recovery time = from the end
of a fault (broker back, service started again, disk freed) until a job of the scenario starts
running again.

Prints the figures and writes bench/results/chaos.json and chaos.md (only when every scenario ran, or
to `--out`). Takes about 12 minutes. Run it alone (it times things):
flock /tmp/nfrecon-bench.lock python -m bench.chaos

    python -m bench.chaos [--jobs 20] [--seed 0] [--poll-seconds 120] [--uploaders 4] [--scenarios pollers,disk-full]
                          [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = {"train": {"steps": 30, "batch_size": 512}, "extraction": {"resolution": 32}}
TERMINAL = ("succeeded", "failed", "canceled")
SCENARIOS = ("kill-child", "redis-restart", "service-restart", "pollers", "disk-full")
ENV = {
    "NFRECON_HEARTBEAT_INTERVAL_S": "0.5", "NFRECON_STALE_AFTER_S": "3", "NFRECON_PROGRESS_INTERVAL_S": "0.5",
    "NFRECON_REAPER_INTERVAL_S": "1", "NFRECON_MAX_ATTEMPTS": "2", "NFRECON_WEBHOOKS_ENABLED": "false",
    "NFRECON_MAX_QUEUE": "10000", "NFRECON_MAX_QUEUE_PER_KEY": "10000",
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def _ts(s: str | None) -> float | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


def _sphere(path: Path, n: int = 2000) -> Path:
    rng = np.random.default_rng(0)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.savetxt(path, np.hstack([0.5 * p, p]), fmt="%.6f")
    return path


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(x for x in status.read_text().splitlines() if x.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid.split()[1]) == pid:
            out.append(int(status.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---- the real components -------------------------------------------------------------------------


class Redis:
    """Our own redis-server on one loopback port; restart() keeps the port, `persistent` picks AOF or nothing."""

    def __init__(self, workdir: Path):
        from nfrecon.serve import free_port

        self.port, self.workdir, self.proc, self.persistent = free_port(), workdir, None, False
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, persistent: bool | None = None) -> None:
        from nfrecon.serve import _wait_port

        if persistent is not None:
            self.persistent = persistent
        mode = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      *mode, "--dir", str(self.workdir), "--loglevel", "warning"],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        _wait_port("127.0.0.1", self.port, 10)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def wipe(self) -> None:
        for f in self.workdir.rglob("*"):
            if f.is_file():
                f.unlink()


class Database:
    """A fresh PostgreSQL database for the campaign, dropped at the end."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = f"nfrecon_chaos_{uuid.uuid4().hex[:8]}"
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def _admin(self, sql: str) -> None:
        import psycopg

        conninfo = self.admin_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Serve:
    """`python -m nfrecon.serve` with the campaign's broker, database and data directory."""

    def __init__(self, data: Path, broker_url: str, db_url: str, prefix: str, log: Path, grace: float = 15.0):
        from nfrecon.serve import free_port

        self.data, self.broker_url, self.db_url, self.prefix, self.log, self.grace = \
            data, broker_url, db_url, prefix, log, grace
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> float:
        """Start and wait until /ready answers 200 and the worker announced itself; returns the seconds it took."""
        t0 = time.monotonic()
        env = dict(os.environ, **ENV, NFRECON_QUEUE_PREFIX=self.prefix,
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        out = open(self.log, "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nfrecon.serve", "--port", str(self.port), "--data-dir", str(self.data),
             "--broker", self.broker_url, "--database-url", self.db_url, "--shutdown-grace", str(self.grace),
             "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.data.parent, start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/ready", timeout=3).status_code == 200 and \
                        httpx.get(f"{self.base}/info", timeout=3).json()["workers"]:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"nfrecon serve exited: {self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        raise RuntimeError("nfrecon serve did not become ready")

    def worker_pid(self) -> int | None:
        if self.proc is None:
            return None
        return next((p for p in _children(self.proc.pid) if "celery" in _cmdline(p)), None)

    def pool_children(self) -> list[int]:
        w = self.worker_pid()
        return _children(w) if w else []

    def stop(self, timeout: float = 90) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.crash()
            rc = None
        self.proc = None
        return rc

    def crash(self) -> None:
        """SIGKILL the API and the worker with its pool: a machine losing power, as far as the data can tell."""
        if self.proc is None:
            return
        w = self.worker_pid()
        for pid in ([w] if w else []):
            try:
                os.killpg(pid, signal.SIGKILL)  # the worker runs in its own session (its pool child too)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None


# ---- jobs and their audit --------------------------------------------------------------------------


def upload(c: httpx.Client, path: Path) -> str:
    r = c.post("/uploads", params={"filename": path.name}, content=path.read_bytes())
    r.raise_for_status()
    return r.json()["id"]


def submit(c: httpx.Client, uid: str, overrides: dict | None = None) -> str:
    r = c.post("/jobs", json={"inputs": [uid], "spec": {"task": "sdf", "preset": "fast",
                                                        "overrides": overrides or TINY}})
    r.raise_for_status()
    return r.json()["id"]


def jobs_now(c: httpx.Client, ids: list[str]) -> dict[str, dict | None]:
    out = {}
    for j in ids:
        r = c.get(f"/jobs/{j}")
        out[j] = r.json() if r.status_code == 200 else None
    return out


def wait_terminal(c: httpx.Client, ids: list[str], timeout: float) -> dict[str, dict | None]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = jobs_now(c, ids)
        if all(j is None or j["status"] in TERMINAL for j in jobs.values()) or time.monotonic() > deadline:
            return jobs
        time.sleep(1.0)


def wait_running_after(c: httpx.Client, ids: list[str], t_wall: float, timeout: float) -> float | None:
    """Seconds from `t_wall` (time.time()) until a job of `ids` runs (or ended) with a claim after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for j in jobs_now(c, ids).values():
            if j is None:
                continue
            # started_at keeps the first start; a live run shows as a write (heartbeat) after t_wall
            hb = _ts(j.get("updated_at"))
            if j["status"] == "running" and hb and hb > t_wall:
                return time.time() - t_wall
            if j["status"] in TERMINAL and (_ts(j.get("finished_at")) or 0) > t_wall:
                return time.time() - t_wall
        time.sleep(0.25)
    return None


def audit(c: httpx.Client, data: Path, ids: list[str], jobs: dict[str, dict | None] | None = None) -> dict:
    """Lost, duplicated, failed-with-reason, attempts; every succeeded job's artifacts downloaded and checked."""
    jobs = jobs if jobs is not None else jobs_now(c, ids)
    res = {"jobs": len(ids), "succeeded": 0, "failed_with_reason": 0, "failed_without_reason": 0, "canceled": 0,
           "lost": 0, "duplicated": 0, "attempts_over_max": 0, "bad_artifacts": 0, "failure_codes": {},
           "lost_ids": [], "duplicated_ids": []}
    for jid in ids:
        j = jobs.get(jid)
        if j is None or j["status"] not in TERMINAL:
            res["lost"] += 1
            res["lost_ids"].append(jid)
            continue
        if j["attempt"] > j["max_attempts"]:
            res["attempts_over_max"] += 1
        job_dir = data / "jobs" / jid
        log = (job_dir / "job.log").read_text(errors="replace").splitlines() if (job_dir / "job.log").is_file() else []
        finished = sum(" succeeded in " in line for line in log)
        leftovers = [p.name for p in job_dir.glob(".attempt-*")] + [p.name for p in job_dir.glob(".old-*")]
        if j["status"] == "succeeded":
            res["succeeded"] += 1
            items = c.get(f"/jobs/{jid}/artifacts").json().get("items", [])
            names = [a["name"] for a in items]
            ok = "mesh.ply" in names and len(names) == len(set(names))
            for a in items:
                if a["name"] != "mesh.ply":
                    continue
                body = c.get(f"/jobs/{jid}/artifacts/mesh.ply").content
                ok = ok and hashlib.sha256(body).hexdigest() == a["sha256"] and len(body) == a["size"]
            res["bad_artifacts"] += not ok
            if finished != 1 or leftovers or len(names) != len(set(names)):
                res["duplicated"] += 1
                res["duplicated_ids"].append(jid)
        elif j["status"] == "failed":
            err = j.get("error") or {}
            if err.get("code") and err.get("detail"):
                res["failed_with_reason"] += 1
                res["failure_codes"][err["code"]] = res["failure_codes"].get(err["code"], 0) + 1
            else:
                res["failed_without_reason"] += 1
            if finished:
                res["duplicated"] += 1  # it succeeded once and was failed afterwards
                res["duplicated_ids"].append(jid)
        else:
            res["canceled"] += 1
    return res


# ---- scenarios -------------------------------------------------------------------------------------


def scenario_kill_child(srv: Serve, c: httpx.Client, uid: str, n_jobs: int, rng: random.Random) -> dict:
    ids = [submit(c, uid) for _ in range(n_jobs)]
    kills, hit, recover = 0, 0, []
    deadline = time.monotonic() + 60 + 12 * n_jobs
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 5.0))
        jobs = jobs_now(c, ids)
        if all(j and j["status"] in TERMINAL for j in jobs.values()):
            break
        running = [j for j in jobs.values() if j and j["status"] == "running"]
        children = srv.pool_children()
        if not children:
            continue
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kills += 1
        t_kill = time.time()
        if running:
            hit += 1
            r = wait_running_after(c, [running[0]["id"]], t_kill, 40)
            if r is not None:
                recover.append(r)
    jobs = wait_terminal(c, ids, 120)
    out = audit(c, srv.data, ids, jobs)
    out.update(kills=kills, kills_hitting_a_job=hit,
               recovery_s={"median": round(statistics.median(recover), 2) if recover else None,
                           "max": round(max(recover), 2) if recover else None})
    return out


def scenario_redis_restart(srv: Serve, redis: Redis, c: httpx.Client, uid: str, persistent: bool,
                           n_jobs: int = 6) -> dict:
    ids = [submit(c, uid) for _ in range(n_jobs)]
    # mid-queue: the first job is running, the others wait in the broker
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(
            j and j["status"] == "running" for j in jobs_now(c, ids).values()):
        time.sleep(0.3)
    queued_at_fault = sum(j["status"] == "queued" for j in jobs_now(c, ids).values() if j)
    redis.kill()
    time.sleep(2.0)
    redis.start()
    t_back = time.time()
    ready_after = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        try:
            if httpx.get(f"{srv.base}/ready", timeout=3).status_code == 200:
                ready_after = time.monotonic() - t0
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    recovery = wait_running_after(c, ids, t_back, 60)
    jobs = wait_terminal(c, ids, 60 + 15 * n_jobs)
    out = audit(c, srv.data, ids, jobs)
    out.update(queued_at_fault=queued_at_fault, ready_after_s=ready_after and round(ready_after, 2),
               recovery_s=recovery and round(recovery, 2))
    return out


def scenario_service_restart(srv: Serve, c_factory, uid: str, earlier: list[str], crash: bool,
                             n_jobs: int = 5) -> dict:
    with c_factory() as c:
        ids = [submit(c, uid) for _ in range(n_jobs)]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(
                j and j["status"] == "running" for j in jobs_now(c, ids).values()):
            time.sleep(0.3)
        before = {j: (r or {}).get("status") for j, r in jobs_now(c, ids + earlier).items()}
    if crash:
        srv.crash()
        rc = None
    else:
        rc = srv.stop()
    start_s = srv.start()
    t_back = time.time()
    with c_factory() as c:
        recovery = wait_running_after(c, ids, t_back, 90)
        jobs = wait_terminal(c, ids, 90 + 15 * n_jobs)
        out = audit(c, srv.data, ids, jobs)
        # Every record and artifact from before the restart is still there and intact.
        old = audit(c, srv.data, earlier)
        after = {j: (r or {}).get("status") for j, r in jobs_now(c, earlier).items()}
    changed = [j for j in earlier if before.get(j) in TERMINAL and after.get(j) != before.get(j)]
    out.update(shutdown_rc=rc, start_s=start_s, recovery_s=recovery,
               earlier_jobs_checked=len(earlier), earlier_lost=old["lost"], earlier_bad_artifacts=old["bad_artifacts"],
               earlier_changed=len(changed))
    return out


def scenario_disk_full(work: Path, redis: Redis, db_url: str, sphere: Path, size_mb: int = 20) -> dict:
    mnt = work / "small-disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs ({mounted.stderr.strip()}); run as root"}
    srv = Serve(mnt / "data", redis.url, db_url, f"chaos-disk-{os.getpid()}.", work / "disk-serve.log")
    out: dict = {"data_dir": f"tmpfs {size_mb} MB"}
    try:
        srv.start()
        with httpx.Client(base_url=srv.base, timeout=60) as c:
            uid = upload(c, sphere)
            before = submit(c, uid)  # a job that completes while there is room
            wait_terminal(c, [before], 120)
            # A long job, running while the disk fills up.
            running = submit(c, uid, {"train": {"steps": 200, "batch_size": 512},
                                      "extraction": {"resolution": 48}})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and c.get(f"/jobs/{running}").json()["status"] != "running":
                time.sleep(0.3)
            filler = mnt / "filler"
            with open(filler, "wb", buffering=0) as f:  # fill every byte left (unbuffered: close cannot fail)
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
                try:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                except OSError:
                    pass
            statvfs = os.statvfs(mnt)
            out["free_bytes_after_fill"] = statvfs.f_bavail * statvfs.f_frsize
            # uploads while full: 507 or 413, as problem+json
            answers = []
            for size in (64 << 10, 1 << 20):
                payload = sphere.read_bytes()
                payload = (payload * (size // len(payload) + 1))[:size]
                try:
                    r = c.post("/uploads", params={"filename": "big.xyz"}, content=payload)
                    answers.append({"bytes": size, "status": r.status_code,
                                    "content_type": r.headers.get("content-type", ""),
                                    "code": (r.json().get("code") if "json" in r.headers.get("content-type", "")
                                             else None)})
                except httpx.HTTPError as exc:
                    answers.append({"bytes": size, "status": None, "error": type(exc).__name__})
            out["uploads_when_full"] = answers
            out["uploads_ok"] = all(a["status"] in (507, 413) and "problem+json" in a.get("content_type", "")
                                    for a in answers)
            # jobs while full: the running one and one more
            # A job submitted while full: created (its input is a hard link) and failed by the worker, or 507.
            r = c.post("/jobs", json={"inputs": [uid], "spec": {"task": "sdf", "preset": "fast", "overrides": TINY}})
            out["submit_when_full"] = {"status": r.status_code, "code": r.json().get("code")}
            late = r.json()["id"] if r.status_code == 201 else None
            jobs = wait_terminal(c, [running] + ([late] if late else []), 180)
            out["jobs_when_full"] = {k: {"status": v["status"], "code": (v.get("error") or {}).get("code"),
                                         "retryable": (v.get("error") or {}).get("retryable"),
                                         "error": (v.get("error") or {}).get("detail")}
                                     for k, v in jobs.items() if v}
            # nothing half-written is served
            served_partial = 0
            for jid, j in jobs.items():
                if j and j["status"] != "succeeded":
                    r = c.get(f"/jobs/{jid}/artifacts")
                    served_partial += r.status_code == 200 and bool(r.json().get("items"))
                    served_partial += c.get(f"/jobs/{jid}/artifacts/mesh.ply").status_code == 200
            out["half_written_served"] = served_partial
            out["health_when_full"] = c.get("/health").status_code
            # free the disk: the service takes new work again
            filler.unlink()
            t_free = time.monotonic()
            after = submit(c, uid)
            done = wait_terminal(c, [after], 120)[after]
            out["recovery_s"] = round(time.monotonic() - t_free, 2) if done and done["status"] == "succeeded" else None
            out["after_free"] = done["status"] if done else None
            out.update(audit(c, srv.data, [before, running, *([late] if late else []), after]))
    finally:
        srv.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    return out


async def _load(base: str, jid: str, n: int, seconds: float, interval: float, uploaders: int = 0,
                upload_interval: float = 1.0, payload: bytes = b"") -> dict:
    """`n` clients polling one job for `seconds`, each every `interval` s (0: back to back), and
    `uploaders` clients each uploading `payload` every `upload_interval` s meanwhile (as an .xyz file).

    Returns the poll latencies (s), the upload latencies (s), and both sides' non-2xx answers and
    transport errors by kind.
    """
    polls: list[float] = []
    ups: list[float] = []
    poll_errors: dict[str, int] = {}
    upload_errors: dict[str, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=n + uploaders, max_keepalive_connections=n + uploaders)

    def count(errors: dict, key: str) -> None:
        errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        async def poll(i: int):
            await asyncio.sleep(interval * i / n)  # spread the clients over one interval
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.get(f"/jobs/{jid}")
                except httpx.HTTPError as exc:
                    count(poll_errors, type(exc).__name__)
                    continue
                if r.status_code != 200:
                    count(poll_errors, f"HTTP {r.status_code}")
                    continue
                polls.append(time.perf_counter() - t0)
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))

        async def upload_loop(i: int):
            await asyncio.sleep(upload_interval * i / max(uploaders, 1))
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/uploads", params={"filename": f"load-{i}.xyz"}, content=payload)
                except httpx.HTTPError as exc:
                    count(upload_errors, type(exc).__name__)
                    continue
                if r.status_code != 201:
                    count(upload_errors, f"HTTP {r.status_code}")
                else:
                    ups.append(time.perf_counter() - t0)
                    await client.delete(f"/uploads/{r.json()['id']}")  # keep the data directory small
                await asyncio.sleep(max(0.0, upload_interval - (time.perf_counter() - t0)))

        await asyncio.gather(*(poll(i) for i in range(n)), *(upload_loop(i) for i in range(uploaders)))
    return {"polls": polls, "uploads": ups, "poll_errors": poll_errors, "upload_errors": upload_errors}


def _ms(values: list[float]) -> dict:
    if not values:
        return {"median_ms": None, "p99_ms": None, "max_ms": None}
    return {"median_ms": round(1000 * statistics.median(values), 1), "p99_ms": round(1000 * percentile(values, 99), 1),
            "max_ms": round(1000 * max(values), 1)}


def scenario_pollers(srv: Serve, c: httpx.Client, uid: str, n: int, seconds: float, interval: float,
                     uploaders: int = 0, upload_interval: float = 1.0, payload: bytes = b"") -> dict:
    """A long fit runs while `n` pollers GET its job and `uploaders` clients upload files; latencies and 5xx."""
    jid = submit(c, uid, {"train": {"steps": 200000, "batch_size": 512}, "extraction": {"resolution": 32}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (c.get(f"/jobs/{jid}").json().get("progress") or {}).get("phase") != "train":
        time.sleep(0.3)
    step0 = (c.get(f"/jobs/{jid}").json().get("progress") or {}).get("step") or 0
    load = asyncio.run(_load(srv.base, jid, n, seconds, interval, uploaders, upload_interval, payload))
    job = c.get(f"/jobs/{jid}").json()
    fit_steps = ((job.get("progress") or {}).get("step") or 0) - step0
    c.post(f"/jobs/{jid}/cancel")
    wait_terminal(c, [jid], 60)
    times, errors = load["polls"], load["poll_errors"]
    server_errors = sum(v for k, v in errors.items() if k.startswith("HTTP 5"))
    upload_5xx = sum(v for k, v in load["upload_errors"].items() if k.startswith("HTTP 5"))
    return {"pollers": n, "interval_s": interval, "seconds": seconds, "requests": len(times),
            "throughput_rps": len(times) / seconds, **_ms(times),
            "errors": errors, "server_errors": server_errors, "fit_running": job["status"] == "running",
            "fit_steps_during_polling": fit_steps,
            "uploaders": uploaders, "upload_interval_s": upload_interval, "upload_bytes": len(payload),
            "uploads": len(load["uploads"]), "upload_latency": _ms(load["uploads"]),
            "upload_errors": load["upload_errors"], "upload_server_errors": upload_5xx}


# ---- report ----------------------------------------------------------------------------------------


def _row(name: str, r: dict) -> str:
    rec = r.get("recovery_s")
    if isinstance(rec, dict):
        rec = rec.get("max")
    rec_s = f"{rec:.1f}" if isinstance(rec, (int, float)) else "-"
    return (f"| {name} | {r.get('jobs', 0)} | {r.get('succeeded', 0)} | {r.get('failed_with_reason', 0)} "
            f"| {r.get('lost', 0)} | {r.get('duplicated', 0)} | {r.get('attempts_over_max', 0)} | {rec_s} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20, help="jobs of the kill-child scenario (at least 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pollers", type=int, default=50)
    p.add_argument("--poll-seconds", type=float, default=120.0,
                   help="how long the pollers and uploaders run during the fit (issue 9: 120; shorter for a quick look)")
    p.add_argument("--poll-interval", type=float, default=0.5,
                   help="seconds between one poller's requests (a client polling a job; 0 = back to back)")
    p.add_argument("--uploaders", type=int, default=4, help="clients uploading while the pollers run")
    p.add_argument("--upload-interval", type=float, default=1.0, help="seconds between one uploader's uploads")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)")
    p.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                   help="a PostgreSQL URL whose server may create a throwaway database")
    p.add_argument("--out", type=Path, default=None,
                   help="where chaos.json and chaos.md go (default: bench/results when every scenario ran, "
                        "else nowhere: a partial run only prints)")
    args = p.parse_args(argv)
    chosen = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    if not shutil.which("redis-server"):
        print("redis-server is not on PATH")
        return 2
    rng = random.Random(args.seed)
    t_start = time.monotonic()
    results: dict = {}
    db = Database(args.postgres)
    db.create()
    with tempfile.TemporaryDirectory(prefix="nfrecon-chaos-") as tmp:
        work = Path(tmp)
        redis = Redis(work / "redis")
        redis.start(persistent=False)
        data = work / "data"
        data.mkdir()
        srv = Serve(data, redis.url, db.url, f"chaos-{os.getpid()}.", work / "serve.log", grace=5.0)
        sphere = _sphere(work / "ball.xyz")
        try:
            srv.start()
            client = lambda: httpx.Client(base_url=srv.base, timeout=60)  # noqa: E731
            with client() as c:
                uid = upload(c, sphere)
                warm = submit(c, uid)
                wait_terminal(c, [warm], 120)
                if "kill-child" in chosen:
                    print("kill-child ...", flush=True)
                    results["kill_child"] = scenario_kill_child(srv, c, uid, args.jobs, rng)
                    print(json.dumps(results["kill_child"]), flush=True)
                if "redis-restart" in chosen:
                    print("redis-restart without persistence ...", flush=True)
                    results["redis_restart_no_persistence"] = scenario_redis_restart(srv, redis, c, uid, False)
                    print(json.dumps(results["redis_restart_no_persistence"]), flush=True)
            if "redis-restart" in chosen:
                # the same broker, now with AOF on
                redis.kill()
                redis.wipe()
                redis.start(persistent=True)
                with client() as c:
                    print("redis-restart with persistence ...", flush=True)
                    results["redis_restart_persistence"] = scenario_redis_restart(srv, redis, c, uid, True)
                    print(json.dumps(results["redis_restart_persistence"]), flush=True)
            if "service-restart" in chosen:
                with client() as c:
                    earlier = [j for j in c.get("/jobs", params={"page_size": 100}).json()["items"]]
                    earlier_ids = [j["id"] for j in earlier if j["status"] in TERMINAL]
                print("service restart (SIGTERM) ...", flush=True)
                results["service_restart_sigterm"] = scenario_service_restart(srv, client, uid, earlier_ids,
                                                                              crash=False)
                print(json.dumps(results["service_restart_sigterm"]), flush=True)
                print("service crash (SIGKILL) ...", flush=True)
                results["service_crash_sigkill"] = scenario_service_restart(srv, client, uid, earlier_ids, crash=True)
                print(json.dumps(results["service_crash_sigkill"]), flush=True)
            if "pollers" in chosen:
                print(f"{args.pollers} pollers and {args.uploaders} uploaders during a fit for "
                      f"{args.poll_seconds:g} s ...", flush=True)
                with client() as c:
                    results["pollers_during_fit"] = scenario_pollers(
                        srv, c, uid, args.pollers, args.poll_seconds, args.poll_interval,
                        uploaders=args.uploaders, upload_interval=args.upload_interval, payload=sphere.read_bytes())
                    print(json.dumps(results["pollers_during_fit"]), flush=True)
                    # The same clients back to back (no pause between polls): a throughput test, reported alongside.
                    results["pollers_back_to_back"] = scenario_pollers(srv, c, uid, args.pollers, 10.0, 0.0)
                    print(json.dumps(results["pollers_back_to_back"]), flush=True)
        finally:
            srv.stop()
        if "disk-full" in chosen:
            print("disk full ...", flush=True)
            try:
                results["disk_full"] = scenario_disk_full(work, redis, db.url, sphere)
            except Exception as exc:  # reported, not fatal: the other figures still stand
                results["disk_full"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(results["disk_full"]), flush=True)
        redis.kill()
    db.drop()
    total = time.monotonic() - t_start
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "load_avg": os.getloadavg()},
              "setup": {"broker": "redis-server (own, loopback)", "job_store": "PostgreSQL", "job_options": TINY,
                        "env": ENV, "seed": args.seed}, "total_seconds": round(total, 1), "scenarios": results}
    out_dir = args.out or (REPO / "bench" / "results" if set(chosen) == set(SCENARIOS) else None)
    lines = ["# Failure campaign", "",
             f"`python -m bench.chaos` against `nfrecon serve --broker redis://` (own redis-server) with a PostgreSQL "
             f"job store; tiny sdf jobs (30 steps, batch 512, resolution 32), max_attempts 2, heartbeat 0.5 s, "
             f"stale after 3 s, reaper every 1 s. {os.cpu_count()} CPUs, no GPU, shared machine "
             f"(load average at the end {os.getloadavg()[0]:.1f}). Total {total:.0f} s.", "",
             "| scenario | jobs | succeeded | failed with reason | lost | duplicated | attempts > max | recovery (s) |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"kill_child": "SIGKILL of the worker's child at random moments",
             "redis_restart_no_persistence": "Redis SIGKILL + restart, no persistence",
             "redis_restart_persistence": "Redis SIGKILL + restart, AOF",
             "service_restart_sigterm": "nfrecon serve SIGTERM + start",
             "service_crash_sigkill": "nfrecon serve SIGKILL (API + worker) + start",
             "disk_full": "data directory full (20 MB tmpfs)"}
    for key, name in names.items():
        if key in results and "jobs" in results[key]:
            lines.append(_row(name, results[key]))
    lines.append("")
    kc = results.get("kill_child", {})
    if kc:
        lines.append(f"- kill-child: {kc.get('kills')} SIGKILLs, {kc.get('kills_hitting_a_job')} during a job; "
                     f"failure codes {kc.get('failure_codes')}; recovery = kill to the job running again "
                     f"(median {kc.get('recovery_s', {}).get('median')}, max {kc.get('recovery_s', {}).get('max')} s).")
    for key in ("redis_restart_no_persistence", "redis_restart_persistence"):
        r = results.get(key, {})
        if r:
            lines.append(f"- {names[key]}: {r.get('queued_at_fault')} jobs queued at the fault; /v1/ready 200 again "
                         f"after {r.get('ready_after_s')} s; recovery = broker back to a job running again.")
    for key in ("service_restart_sigterm", "service_crash_sigkill"):
        r = results.get(key, {})
        if r:
            lines.append(f"- {names[key]}: start took {r.get('start_s', 0):.1f} s; {r.get('earlier_jobs_checked')} "
                         f"earlier finished jobs re-read: {r.get('earlier_lost')} lost, "
                         f"{r.get('earlier_bad_artifacts')} with bad artifacts, {r.get('earlier_changed')} changed.")
    d = results.get("disk_full", {})
    if d:
        full_jobs = [f"{j.get('status')} ({j.get('code')}, retryable {j.get('retryable')}): {j.get('error')}"
                     for j in (d.get("jobs_when_full") or {}).values()]
        lines.append(f"- disk full: uploads answered (bytes, status, code) "
                     f"{[(a.get('bytes'), a.get('status'), a.get('code')) for a in d.get('uploads_when_full', [])]}; "
                     f"a job submitted while full: HTTP {(d.get('submit_when_full') or {}).get('status')}; "
                     f"jobs while full: {full_jobs}; half-written artifacts served: "
                     f"{d.get('half_written_served')}; after freeing the disk a new job {d.get('after_free')} "
                     f"({d.get('recovery_s')} s). {d.get('skipped') or d.get('error') or ''}")
    for pl in (results.get("pollers_during_fit", {}), results.get("pollers_back_to_back", {})):
        if not pl:
            continue
        pace = f"each every {pl['interval_s']:g} s" if pl["interval_s"] else "back to back"
        ups = ""
        if pl.get("uploaders"):
            ul = pl["upload_latency"]
            ups = (f" Meanwhile {pl['uploaders']} uploaders (each a {pl['upload_bytes'] // 1024} KiB .xyz every "
                   f"{pl['upload_interval_s']:g} s, validated and stored): {pl['uploads']} uploads, median "
                   f"{ul['median_ms']} ms, p99 {ul['p99_ms']} ms, max {ul['max_ms']} ms, 5xx "
                   f"{pl['upload_server_errors']}, errors {pl['upload_errors'] or 0}.")
        lines.append(f"- {pl['pollers']} pollers ({pace}) for {pl['seconds']:g} s during a fit "
                     f"({pl['fit_steps_during_polling']} fit steps meanwhile): {pl['requests']} GET /v1/jobs/{{id}}, "
                     f"median {pl['median_ms']:.1f} ms, p99 {pl['p99_ms']:.1f} ms, max {pl['max_ms']:.1f} ms, "
                     f"{pl['throughput_rps']:.0f} req/s, 5xx {pl['server_errors']}, errors {pl['errors'] or 0}.{ups}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "chaos.json").write_text(json.dumps(result, indent=2, default=str))
        (out_dir / "chaos.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    bad = any(r.get("lost") or r.get("duplicated") or r.get("attempts_over_max") or r.get("server_errors")
              or r.get("upload_server_errors") for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
