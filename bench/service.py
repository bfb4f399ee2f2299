"""Service benchmark: submit-to-start latency of queued jobs, and GET /v1/jobs/{id} latency under load.

Runs against a real `nfrecon serve` subprocess (API + Celery worker + broker), twice: with the
embedded broker (fakeredis, no Redis server) and with a real Redis (`--redis-url`, skipped when
none answers). For each:

1. submit-to-worker-start: after one warm-up job, N tiny jobs are queued at once behind one worker; for each job,
   `started_at - created_at` minus the time spent waiting behind earlier jobs is the dispatch
   latency (job i can start only after job i-1 finished: latency_i = started_i - max(created_i,
   finished_{i-1})). Median and p95.
2. API latency: then 50 concurrent pollers (asyncio + httpx) GET /v1/jobs/{id} of those jobs for a
   fixed time; median and p99 of the response times, and the request rate.

Prints the figures and writes bench/results/service.json and service.md.

    python -m bench.service [--jobs 50] [--pollers 50] [--poll-seconds 10] [--redis-url redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = {"train": {"steps": 10, "batch_size": 256}, "extraction": {"resolution": 16}}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def sphere_xyz(path: Path, n: int = 1000) -> Path:
    """An oriented cloud (x y z nx ny nz per line) on a sphere of radius 0.5."""
    rng = np.random.default_rng(0)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.savetxt(path, np.hstack([0.5 * p, p]), fmt="%.6f")
    return path


def start_serve(broker: str, data: Path, port: int, log: Path) -> subprocess.Popen:
    """`nfrecon serve` on `port` with `broker` ("fakeredis" or a Redis URL), returned once /v1/ready answers."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
               NFRECON_MAX_QUEUE="10000", NFRECON_MAX_QUEUE_PER_KEY="10000",
               NFRECON_HEARTBEAT_INTERVAL_S="1", NFRECON_PROGRESS_INTERVAL_S="1",
               NFRECON_QUEUE_PREFIX=f"bench-{os.getpid()}.")
    out = open(log, "wb")  # noqa: SIM115 (closed by the child's exit)
    proc = subprocess.Popen([sys.executable, "-m", "nfrecon.serve", "--port", str(port), "--data-dir", str(data),
                             "--broker", broker, "--log-level", "warning"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=data.parent)
    out.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"nfrecon serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("nfrecon serve did not become ready")


def stop_serve(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ts(s: str | None) -> float | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


async def _pollers(base: str, job_ids: list[str], n: int, seconds: float) -> tuple[list[float], dict[str, int]]:
    """Response times of the successful GETs, and a count of the failed ones by kind."""
    times: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        async def poll(i: int):
            jid = job_ids[i % len(job_ids)]
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.get(f"/jobs/{jid}")
                except httpx.HTTPError as exc:  # counted, not fatal: the figures say how many
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if r.status_code != 200:
                    errors[f"HTTP {r.status_code}"] = errors.get(f"HTTP {r.status_code}", 0) + 1
                    continue
                times.append(time.perf_counter() - t0)

        await asyncio.gather(*(poll(i) for i in range(n)))
    return times, errors


def run_one(broker: str, label: str, n_jobs: int, n_pollers: int, poll_seconds: float, work: Path) -> dict:
    from nfrecon.serve import free_port

    data = work / label / "data"
    data.mkdir(parents=True)
    port = free_port()
    proc = start_serve(broker, data, port, work / label / "serve.log")
    base = f"http://127.0.0.1:{port}/v1"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            uid = c.post("/uploads", params={"filename": "ball.xyz"},
                         content=sphere_xyz(work / "ball.xyz").read_bytes()).json()["id"]
            spec = {"method": "sdf", "preset": "fast", "inputs": [uid], "options": TINY}
            # One warm-up job: the worker is connected and the OS has torch in its page cache.
            warm = c.post("/jobs", json=spec).json()["id"]
            while c.get(f"/jobs/{warm}").json()["status"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.5)
            ids = [c.post("/jobs", json=spec).json()["id"] for _ in range(n_jobs)]
            deadline = time.monotonic() + 60 * n_jobs
            while time.monotonic() < deadline:
                jobs = [c.get(f"/jobs/{j}").json() for j in ids]
                if all(j["status"] in ("succeeded", "failed", "canceled") for j in jobs):
                    break
                time.sleep(2)
            # API latency on its own (worker idle): the two phases would otherwise slow each other
            # down on a small machine and neither figure would mean much.
            poll_times, poll_errors = asyncio.run(_pollers(base, ids, n_pollers, poll_seconds))
        jobs.sort(key=lambda j: _ts(j["started_at"]) or 0)
        dispatch, prev_finished = [], None
        for j in jobs:
            created, started = _ts(j["created_at"]), _ts(j["started_at"])
            if started is None:
                continue
            ready = created if prev_finished is None else max(created, prev_finished)
            dispatch.append(max(0.0, started - ready))
            prev_finished = _ts(j["finished_at"])
        statuses = {s: sum(j["status"] == s for j in jobs) for s in {j["status"] for j in jobs}}
        return {
            "broker": label, "jobs": n_jobs, "statuses": statuses,
            "submit_to_start_s": {"median": statistics.median(dispatch), "p95": percentile(dispatch, 95),
                                  "max": max(dispatch), "n": len(dispatch),
                                  "values": [round(v, 3) for v in dispatch]},
            "get_job_latency_ms": {"pollers": n_pollers, "requests": len(poll_times),
                                   "median": 1000 * statistics.median(poll_times),
                                   "p99": 1000 * percentile(poll_times, 99),
                                   "throughput_rps": len(poll_times) / poll_seconds, "errors": poll_errors},
        }
    finally:
        stop_serve(proc)


def _redis_ok(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=1).ping()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--pollers", type=int, default=50)
    p.add_argument("--poll-seconds", type=float, default=10.0)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs.append(run_one("fakeredis", "embedded-fakeredis", args.jobs, args.pollers, args.poll_seconds, work))
        if _redis_ok(args.redis_url):
            runs.append(run_one(args.redis_url, "redis", args.jobs, args.pollers, args.poll_seconds, work))
        else:
            print(f"no Redis at {args.redis_url}: skipping the Redis run")
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "workload": {"job_options": TINY, "jobs": args.jobs, "pollers": args.pollers,
                           "poll_seconds": args.poll_seconds}, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(result, indent=2))
    lines = ["# Service benchmark", "",
             f"{args.jobs} tiny sdf jobs queued at once behind one worker (prefork -c 1, fresh child per job); "
             f"then {args.pollers} concurrent pollers on GET /v1/jobs/{{id}} for {args.poll_seconds:g} s "
             "(SQLite job store, one uvicorn process). "
             f"{os.cpu_count()} CPUs, no GPU.", "",
             "| broker | submit-to-start median (s) | p95 (s) | max (s) | GET /jobs/{id} median (ms) | p99 (ms) | req/s "
             "| failed GETs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s, g = r["submit_to_start_s"], r["get_job_latency_ms"]
        failed = ", ".join(f"{k} {v}" for k, v in g.get("errors", {}).items()) or "0"
        lines.append(f"| {r['broker']} | {s['median']:.3f} | {s['p95']:.3f} | {s['max']:.3f} | {g['median']:.1f} "
                     f"| {g['p99']:.1f} | {g['throughput_rps']:.0f} | {failed} |")
    (args.out / "service.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
