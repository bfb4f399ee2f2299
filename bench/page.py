"""Web page benchmark: first page load in a fresh browser, and how late live progress reaches the page.

Runs headless Chromium (`bench.browser`) against a real `nfrecon serve` subprocess (embedded broker):

1. first load: `--loads` times, a fresh browser context each time (nothing cached), the seconds from
   navigation start until the page is usable (`window.nfrecon.ready`: the method form is built from the
   JSON Schema). One GET /v1/methods before, untimed: a fresh server imports torch on its first request,
   which is the API's start-up, not the page's load. Targets: median under 1 s.
2. progress latency: a real sdf job (`--steps` steps) watched on its job page; for every progress event, the
   milliseconds from the worker's update (`updated_at`) to the page handling it. Target: within 1 s.

Prints the figures and writes bench/results/page.json and page.md.

    python -m bench.page [--loads 7] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.browser import CHROMIUM_ARGS, VIEWPORT, chromium_path
from bench.service import percentile, sphere_xyz, start_serve, stop_serve

REPO = Path(__file__).resolve().parents[1]
LOAD_TARGET_S = 1.0
LATENCY_TARGET_MS = 1000.0


def first_load_seconds(browser, base: str) -> tuple[float, list]:
    """One load of / in a fresh context: seconds until usable, and the (path, ms) of each resource."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_function("window.nfrecon && window.nfrecon.ready")
        seconds = page.evaluate("performance.now()") / 1000
        resources = page.evaluate("performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname, "
                                  "Math.round(e.duration)])")
        return seconds, resources
    finally:
        context.close()


def progress_latencies(browser, base: str, upload_id: str, steps: int) -> list[float]:
    """Milliseconds from each progress update of a real job to its arrival on the job page."""
    spec = {"task": "sdf", "preset": "fast",
            "overrides": {"train": {"steps": steps, "batch_size": 512}, "extraction": {"resolution": 32}}}
    with httpx.Client(base_url=base + "/v1", timeout=60) as c:
        job_id = c.post("/jobs", json={"inputs": [upload_id], "name": "page bench", "spec": spec}).json()["id"]
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.goto(f"{base}/ui/#/jobs/{job_id}")
            page.wait_for_function("window.nfrecon && window.nfrecon.ready")
            deadline = time.monotonic() + 600
            while c.get(f"/jobs/{job_id}").json()["status"] not in ("succeeded", "failed", "canceled"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} did not finish within 600 s")
                time.sleep(0.5)
            page.wait_for_timeout(1000)  # the last events reach the page
            return [float(v) for v in page.evaluate("window.nfrecon.progressLatencies")]
        finally:
            context.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loads", type=int, default=7, help="fresh-context page loads to time")
    p.add_argument("--steps", type=int, default=400, help="training steps of the job whose progress is watched")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from nfrecon.serve import free_port

    path = chromium_path()
    if path is None:
        print("no Chromium found (apt-get install -y chromium, or set NFRECON_CHROMIUM)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        port = free_port()
        proc = start_serve("fakeredis", work / "data", port, work / "serve.log")
        base = f"http://127.0.0.1:{port}"
        try:
            httpx.get(f"{base}/v1/methods", timeout=60).raise_for_status()  # the server's one-off warm-up
            upload_id = httpx.post(f"{base}/v1/uploads", params={"filename": "ball.xyz"}, timeout=60,
                                   content=sphere_xyz(work / "ball.xyz").read_bytes()).json()["id"]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
                loads = [first_load_seconds(browser, base) for _ in range(args.loads)]
                latencies = progress_latencies(browser, base, upload_id, args.steps)
                browser.close()
        finally:
            stop_serve(proc)

    seconds = [s for s, _ in loads]
    slowest = max(loads, key=lambda x: x[0])
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "first_load_s": {"n": len(seconds), "median": statistics.median(seconds), "min": min(seconds),
                         "max": max(seconds), "values": [round(s, 3) for s in seconds],
                         "slowest_resources_ms": slowest[1], "target_median": LOAD_TARGET_S},
        "progress_latency_ms": {"n": len(latencies), "job_steps": args.steps,
                                "median": statistics.median(latencies) if latencies else None,
                                "p95": percentile(latencies, 95) if latencies else None,
                                "max": max(latencies) if latencies else None, "target": LATENCY_TARGET_MS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "page.json").write_text(json.dumps(result, indent=2))
    f, g = result["first_load_s"], result["progress_latency_ms"]
    lat = (f"{g['median']:.0f} | {g['p95']:.0f} | {g['max']:.0f}" if latencies else "no events | | ")
    lines = ["# Web page benchmark", "",
             f"Headless Chromium (SwiftShader) against `nfrecon serve` (embedded broker); {os.cpu_count()} CPUs, "
             "no GPU. First load: navigation start to the form built from the schema, fresh context each time. "
             f"Progress latency: worker's update to the job page, one {args.steps}-step sdf job.", "",
             "| first load median (s) | min (s) | max (s) | loads | progress latency median (ms) | p95 (ms) "
             "| max (ms) | events |",
             "|---|---|---|---|---|---|---|---|",
             f"| {f['median']:.3f} | {f['min']:.3f} | {f['max']:.3f} | {f['n']} | {lat} | {g['n']} |", "",
             f"Targets: first load median under {LOAD_TARGET_S:g} s; progress within {LATENCY_TARGET_MS:.0f} ms."]
    (args.out / "page.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
