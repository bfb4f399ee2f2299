"""Convergence study: Chamfer-L1 against training steps (samples seen) for the SDF presets.

    python -m bench.convergence                                   # CPU fast preset, 5 shared sparse clouds
    python -m bench.convergence --preset balanced --steps 500 1000 1500 --clouds sparse dense

Each fit runs the preset with `train.steps` = the budget, so the learning-rate and noise schedules
run their whole course in every budget (as a user asking for fewer steps gets). Samples seen =
steps x batch (on-surface points; as many off-surface samples are drawn). Chamfer-L1, F@0.5% and
normal consistency against the shape's mesh (bounding box longest side 1, nfcore.metrics). The
report gives, per cloud, each budget's Chamfer-L1 relative to the preset's own step count, and the
fewest steps within `--tolerance` of it: the evidence a preset's step count should rest on.
One subprocess per fit; writes bench/results/convergence_<preset>.{json,md}. Quality figures do
not depend on machine load; the seconds do (run it alone under `flock /tmp/nfrecon-bench.lock`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
SHAPES = ("bunny", "spot", "armadillo", "rocker_arm", "mountain")
CLOUD_FILES = {"sparse": "{shape}_sparse_10k_noisy.ply", "dense": "{shape}_dense_100k.ply"}


def run_one(spec: dict) -> dict:
    """One fit (in this process): the preset with `steps` training steps, scored against the mesh."""
    from nfcore import MethodSpec, resolve
    from nfcore.fit import fit

    config = resolve(MethodSpec(task="sdf", preset=spec["preset"], overrides={"train": {"steps": spec["steps"]}}),
                     spec["device"])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = fit(spec["cloud"], config, out, device=spec["device"], gt_path=spec["gt"])
        wall = time.perf_counter() - t0
    m = result.metrics
    gt = m["ground_truth"]
    return {"steps": spec["steps"], "batch_size": config.train.batch_size,
            "samples_seen": spec["steps"] * config.train.batch_size, "train_seconds": m["train_seconds"],
            "wall_seconds": wall, "chamfer_l1": gt["chamfer_l1"], "fscore@0.005": gt["fscore@0.005"],
            "normal_consistency": gt["normal_consistency"]}


def _in_subprocess(spec: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.convergence", "--single", json.dumps(spec)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"steps": spec["steps"], "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: dict[str, list[dict]], reference_steps: int, tolerance: float) -> list[dict]:
    """Per cloud: Chamfer-L1 of each budget relative to the reference budget, and the fewest steps within tolerance."""
    out = []
    for name, rows in runs.items():
        good = {r["steps"]: r["chamfer_l1"] for r in rows if "error" not in r}
        ref = good.get(reference_steps)
        if ref is None:
            continue
        within = sorted(s for s, v in good.items() if v <= ref * (1 + tolerance))
        out.append({"cloud": name, "reference_steps": reference_steps, "reference_chamfer_l1": ref,
                    "relative": {s: v / ref - 1 for s, v in sorted(good.items())},
                    "fewest_steps_within_tolerance": within[0] if within else None})
    return out


def write_report(result: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    meta, summary = result["meta"], result["summary"]
    steps = meta["steps"]
    lines = [
        f"# Convergence: Chamfer-L1 against steps, `{meta['preset']}` preset ({meta['device']}, {meta['date']})",
        "",
        f"`python -m bench.convergence {' '.join(meta['argv'])}`. One fit per cell with `train.steps` = the budget "
        f"(whole schedules), batch {meta['batch_size']} on-surface samples per step. Relative = Chamfer-L1 against "
        f"the preset's own {meta['reference_steps']} steps; the last column is the fewest steps within "
        f"{meta['tolerance']:.1%} of it.",
        "",
        "| cloud | " + " | ".join(f"{s} steps" for s in steps) + " | fewest within tolerance |",
        "|---|" + "---:|" * len(steps) + "---:|",
    ]
    for s in summary:
        rows = {r["steps"]: r for r in result["runs"][s["cloud"]] if "error" not in r}
        cells = []
        for n in steps:
            r = rows.get(n)
            rel = s["relative"].get(n)
            cells.append("-" if r is None else f"{r['chamfer_l1']:.6f} ({rel:+.1%})")
        lines.append(f"| {s['cloud']} | " + " | ".join(cells) + f" | {s['fewest_steps_within_tolerance']} |")
    lines += ["", "Training seconds (this machine; noisy when shared):", "",
              "| cloud | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for name, rows in result["runs"].items():
        by = {r["steps"]: r for r in rows if "error" not in r}
        lines.append(f"| {name} | " + " | ".join(f"{by[n]['train_seconds']:.1f}" if n in by else "-" for n in steps) + " |")
    if summary:
        per_budget = {n: [s["relative"][n] for s in summary if n in s["relative"]] for n in steps}
        per_budget = {n: v for n, v in per_budget.items() if v}
        worst = {n: max(v) for n, v in per_budget.items()}
        median = {n: statistics.median(v) for n, v in per_budget.items()}
        lines += ["", "| over the clouds | " + " | ".join(f"{s} steps" for s in steps) + " |",
                  "|---|" + "---:|" * len(steps),
                  "| median relative | " + " | ".join(f"{median[n]:+.2%}" if n in median else "-" for n in steps) + " |",
                  "| worst relative | " + " | ".join(f"{worst[n]:+.2%}" if n in worst else "-" for n in steps) + " |"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.convergence", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fast")
    p.add_argument("--steps", nargs="+", type=int, default=[400, 600, 800, 1200])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES))
    p.add_argument("--clouds", nargs="+", default=["sparse"], choices=list(CLOUD_FILES))
    p.add_argument("--tolerance", type=float, default=0.005, help="relative Chamfer-L1 counted as reached")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=None, help="default: bench/results/convergence_<preset>")
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:
        print(json.dumps(run_one(json.loads(args.single))))
        return 0
    from nfcore import MethodSpec, resolve

    preset_config = resolve(MethodSpec(task="sdf", preset=args.preset), args.device)
    reference = preset_config.train.steps
    steps = sorted(set(args.steps) | {reference})
    out = Path(args.out) if args.out else RESULTS / f"convergence_{args.preset}"
    runs: dict[str, list[dict]] = {}
    meta = {"preset": args.preset, "device": args.device, "steps": steps, "reference_steps": reference,
            "batch_size": preset_config.train.batch_size, "tolerance": args.tolerance,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": argv if argv is not None else sys.argv[1:]}
    for kind in args.clouds:
        for shape in args.shapes:
            cloud = DATA / "pointclouds" / CLOUD_FILES[kind].format(shape=shape)
            if not cloud.is_file():
                print(f"skipping {cloud} (absent)", file=sys.stderr)
                continue
            name = f"{shape}/{kind}"
            for n in steps:
                spec = {"preset": args.preset, "steps": n, "device": args.device, "cloud": str(cloud),
                        "gt": str(DATA / "meshes" / f"{shape}.ply")}
                row = _in_subprocess(spec, args.timeout)
                runs.setdefault(name, []).append(row)
                print(f"{name:22s} {n:6d} steps  " + (f"ERROR {row['error'].splitlines()[-1:]}" if "error" in row else
                      f"CL1 {row['chamfer_l1']:.6f}  F@0.5% {row['fscore@0.005']:.4f}  train {row['train_seconds']:.1f}s"),
                      flush=True)
            write_report({"meta": meta, "summary": summarise(runs, reference, args.tolerance), "runs": runs}, out)
    result = {"meta": meta, "summary": summarise(runs, reference, args.tolerance), "runs": runs}
    write_report(result, out)
    print(f"wrote {out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
