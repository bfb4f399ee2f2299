"""Warm start benchmark: Chamfer-L1 against training steps, from the usual init and from the kernel init.

    python -m bench.warmstart                                   # bunny + spot, CPU `fast`
    python -m bench.warmstart --shapes bunny spot armadillo --default-steps 200 400 800 --kernel-steps 100 200 400

For each shared `<shape>_sparse_10k_noisy.ply` cloud and each step budget, one `nfcore.fit.fit` of the
sdf neural method with the preset (`--preset`, CPU) and `train.steps` = the budget (so the learning-rate
and noise schedules run their whole course in every budget, as a user asking for fewer steps gets),
from the usual init (`init.kind: default`) and from the kernel init (`init.kind: kernel`, whose solve
and distillation are timed separately). Metrics: nfcore.metrics.mesh_metrics against the shape's mesh
(GT bounding box longest side 1). The target of each cloud is the usual init's Chamfer-L1 at its
largest budget; the report gives, per init, the fewest steps (and their seconds: solve + distill +
train for the kernel init) whose fit reaches it. Writes bench/results/warmstart.{json,md} after
every run. Run it under `flock /tmp/nfrecon-bench.lock` on shared machines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"


def _run(shape: str, preset: str, init: str, steps: int, distill_steps: int, lr_factor: float) -> dict:
    from nfcore import MethodSpec, resolve
    from nfcore.fit import fit

    overrides = {"train": {"steps": steps}, "init": {"kind": init, "distill_steps": distill_steps, "lr_factor": lr_factor}}
    config = resolve(MethodSpec(task="sdf", preset=preset, overrides=overrides), "cpu")
    cloud = DATA / "pointclouds" / f"{shape}_sparse_10k_noisy.ply"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = fit(cloud, config, out, device="cpu", gt_path=DATA / "meshes" / f"{shape}.ply")
        wall = time.perf_counter() - t0
    m = result.metrics
    init_stats = m["init"]
    warm_seconds = init_stats.get("seconds", 0.0)
    return {
        "shape": shape, "preset": preset, "init": init, "steps": steps,
        "distill_steps": init_stats.get("distill_steps", 0),
        "solve_seconds": init_stats.get("solve_seconds", 0.0),
        "distill_seconds": init_stats.get("distill_seconds", 0.0),
        "train_seconds": m["train_seconds"],
        "fit_seconds": warm_seconds + m["train_seconds"],  # what reaching the mesh's field cost
        "wall_seconds": wall,
        "chamfer_l1": m["ground_truth"]["chamfer_l1"],
        "fscore@0.005": m["ground_truth"]["fscore@0.005"],
        "normal_consistency": m["ground_truth"]["normal_consistency"],
    }


def _summary(runs: list[dict]) -> list[dict]:
    rows = []
    for shape in dict.fromkeys(r["shape"] for r in runs):
        default = sorted((r for r in runs if r["shape"] == shape and r["init"] == "default"), key=lambda r: r["steps"])
        kernel = sorted((r for r in runs if r["shape"] == shape and r["init"] == "kernel"), key=lambda r: r["steps"])
        if not default:
            continue
        target = default[-1]["chamfer_l1"]

        def first(rs, target=target):
            return next((r for r in rs if r["chamfer_l1"] <= target), None)

        d, k = first(default), first(kernel)
        rows.append({
            "shape": shape, "target_chamfer_l1": target,
            "default_steps": d["steps"] if d else None, "default_seconds": d["fit_seconds"] if d else None,
            "kernel_steps": k["steps"] if k else None, "kernel_seconds": k["fit_seconds"] if k else None,
            "step_ratio": (d["steps"] / k["steps"]) if d and k else None,
            "second_ratio": (d["fit_seconds"] / k["fit_seconds"]) if d and k else None,
        })
    return rows


def _write(runs: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = _summary(runs)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary}, indent=2))
    lines = [
        "# Warm start from the kernel solution (`init.kind: kernel`)",
        "",
        f"`python -m bench.warmstart {' '.join(args.argv)}` on 2 shared CPU cores, preset `{args.preset}`, "
        f"{args.distill_steps} distillation steps, training after them at {args.lr_factor:g} x the learning rates "
        f"(`init.lr_factor`), {args.threads} torch thread(s). Each row is one fit with `train.steps` = steps (full schedules).",
        "Seconds: kernel solve + distillation + training (extraction and metrics not included).",
        "",
        "| cloud | init | steps | solve s | distill s | train s | total s | Chamfer-L1 | F@0.5% | NC |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['shape']} | {r['init']} | {r['steps']} | {r['solve_seconds']:.2f} | {r['distill_seconds']:.2f} | "
                     f"{r['train_seconds']:.2f} | {r['fit_seconds']:.2f} | {r['chamfer_l1']:.6f} | "
                     f"{r['fscore@0.005']:.4f} | {r['normal_consistency']:.4f} |")
    lines += ["", "Steps and seconds to reach the usual init's Chamfer-L1 at its largest budget:", "",
              "| cloud | target Chamfer-L1 | default steps / s | kernel steps / s | steps saved (x) | seconds saved (x) |",
              "|---|---:|---|---|---:|---:|"]
    for s in summary:
        def cell(steps, secs):
            return "not reached" if steps is None else f"{steps} / {secs:.1f}"
        ratio = "-" if s["step_ratio"] is None else f"{s['step_ratio']:.1f}"
        sratio = "-" if s["second_ratio"] is None else f"{s['second_ratio']:.1f}"
        lines.append(f"| {s['shape']} | {s['target_chamfer_l1']:.6f} | {cell(s['default_steps'], s['default_seconds'])} | "
                     f"{cell(s['kernel_steps'], s['kernel_seconds'])} | {ratio} | {sratio} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["bunny", "spot"])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--default-steps", nargs="+", type=int, default=[200, 400, 800])
    parser.add_argument("--kernel-steps", nargs="+", type=int, default=[100, 200, 400])
    parser.add_argument("--distill-steps", type=int, default=300)
    parser.add_argument("--lr-factor", type=float, default=1.0, help="init.lr_factor of the kernel-init fits")
    parser.add_argument("--inits", nargs="+", default=["kernel", "default"], choices=["kernel", "default"])
    parser.add_argument("--name", default="warmstart", help="results file stem under bench/results/")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on 2 shared, busy cores a second OpenMP thread made steps "
                             "vary 10x from one to the next, whatever the init)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.argv = argv
    runs: list[dict] = []
    for shape in args.shapes:
        for init, budgets in (("kernel", args.kernel_steps), ("default", args.default_steps)):
            if init not in args.inits:
                continue
            for steps in budgets:
                run = _run(shape, args.preset, init, steps, args.distill_steps, args.lr_factor)
                runs.append(run)
                print(json.dumps(run), flush=True)
                _write(runs, args)
    for s in _summary(runs):
        print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
