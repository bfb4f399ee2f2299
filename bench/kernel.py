"""Kernel method benchmark: the training-free solve (method "kernel") against screened Poisson on the same clouds.

    python -m bench.kernel                          # sparse-noisy 10k clouds vs Poisson depth 8, 1M clouds vs depth 10
    python -m bench.kernel --suites sparse --repeats 3
    python -m bench.kernel --suites dense --dense-shapes bunny --dense-points 1000000
    python -m bench.kernel --suites scene --repeats 1           # 10M-point room scene -> bench/results/kernel_scene.{json,md}

Suites:
- sparse: the shared `<shape>_sparse_10k_noisy.ply` clouds; the kernel method (preset `balanced`) and
  Poisson depth 8. Targets: at most 2 s on 2 CPU cores, Chamfer-L1 no worse than Poisson depth 8.
- dense: `--dense-points` points sampled from each shared mesh (area-weighted, face normals, seed 0,
  written to a temporary .npy outside the repo); the kernel method and Poisson depth 10. Targets: at
  most 30 s, peak memory at most 4 GiB, Chamfer-L1 within 3% of Poisson depth 10.
- scene: `--scene-points` points (default 10M) sampled from a room-sized scene of shared meshes on a floor
  slab (bench/scene.py: seeded, non-overlapping objects; cloud and GT mesh in a temporary directory);
  the kernel method with each of `--scene-presets` (CPU `balanced` caps the depth at 8, `quality` at 9
  with 2 marching-cubes samples per voxel edge) and Poisson at `--scene-poisson-depth`. Target: at most
  10 minutes and 8 GiB on 2 CPU cores. Its rows go to a report of their own (`--scene-out`, default
  bench/results/kernel_scene.{json,md}) so the sparse/dense medians in kernel.{json,md} stay.
Each run is its own process (peak memory = that run's RSS); times are medians of `--repeats`.
Kernel `wall_seconds` is the whole `nfcore.fit.fit` call without ground truth (read, analyse, solve,
extract, fit residuals, write); Poisson's is its reconstruction call on already loaded points (as in
bench/sdf.py), so the comparison favours Poisson. Metrics: nfcore.metrics.mesh_metrics against the
shape's mesh (GT bounding box longest side 1, 100k samples; the scene 1M). Writes bench/results/kernel.{json,md}
(sparse, dense) and bench/results/kernel_scene.{json,md} (scene).
Run it under `flock /tmp/nfrecon-bench.lock` on shared machines.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
SPARSE_SHAPES = ["bunny", "spot", "armadillo", "rocker_arm", "mountain"]
METRICS = ("chamfer_l1", "fscore@0.01", "fscore@0.005", "normal_consistency")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_kernel(spec: dict) -> dict:
    """The kernel method through nfcore.fit, then scored against the GT mesh (outside the timing)."""
    from nfcore.fit import fit
    from nfcore.io import read_mesh
    from nfcore.metrics import mesh_metrics
    from nfcore.spec import MethodSpec, resolve

    overrides = spec.get("overrides") or {}
    if spec.get("max_points"):  # the scene's 10M points exceed the input default (5M)
        overrides = {**overrides, "input": {**overrides.get("input", {}), "max_points": spec["max_points"]}}
    config = resolve(MethodSpec(task="sdf", method="kernel", preset=spec["preset"], overrides=overrides), "cpu")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(spec["cloud"], config, tmp, device="cpu")
    wall = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    gt = mesh_metrics(result.mesh, read_mesh(spec["gt"]), iou=False, n_samples=spec.get("metric_samples", 100_000))
    k = result.metrics["kernel"]
    t = result.metrics["timings"]
    return {**{key: spec[key] for key in ("name", "shape", "suite")}, "method": f"kernel-{spec['preset']}",
            "wall_seconds": wall, "solve_extract_seconds": t["solve"] + t["extract"], "timings": t,
            "peak_memory_bytes": peak, "depth": k["depth"], "unknowns": k["unknowns"], "voxels": k["voxels"],
            "iterations": k["iterations"], "points": result.metrics["n_points"],
            "residual": k["residual"], "faces": result.metrics["n_faces"], **{m: gt[m] for m in METRICS}}


def run_poisson(spec: dict) -> dict:
    from bench.poisson import poisson_reconstruct
    from nfcore.io import read_mesh, read_point_cloud
    from nfcore.metrics import mesh_metrics

    cloud = read_point_cloud(spec["cloud"], estimate_normals=False, max_points=20_000_000)
    t0 = time.perf_counter()
    mesh = poisson_reconstruct(cloud.points, cloud.normals, depth=spec["depth"])
    wall = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    gt = mesh_metrics(mesh, read_mesh(spec["gt"]), iou=False, n_samples=spec.get("metric_samples", 100_000))
    return {**{key: spec[key] for key in ("name", "shape", "suite")}, "method": f"poisson-d{spec['depth']}",
            "wall_seconds": wall, "peak_memory_bytes": peak, "depth": spec["depth"], "faces": len(mesh.faces),
            **{m: gt[m] for m in METRICS}}


def sample_dense_cloud(shape: str, n: int, out_dir: Path) -> Path:
    """`n` points on the shared mesh (area-weighted, face normals, seed 0) as an (n, 6) .npy in `out_dir`."""
    import numpy as np
    import trimesh

    from nfcore.io import read_mesh

    mesh = read_mesh(DATA / "meshes" / f"{shape}.ply")
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=0)
    path = out_dir / f"{shape}_{n}.npy"
    np.save(path, np.c_[points, mesh.face_normals[faces]].astype(np.float32))
    return path


def _in_subprocess(spec: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.kernel", "--single", json.dumps(spec)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {**{k: spec.get(k) for k in ("name", "shape", "suite")}, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_row(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    row = dict(ok[0] if ok else runs[0])
    for key in ("wall_seconds", "solve_extract_seconds", "peak_memory_bytes"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            row[key] = statistics.median(vals)
            row[f"{key}_runs"] = vals
    row["repeats"] = len(ok)
    return row


def _fmt(v, spec=".4g"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


REPORT_COLUMNS = ["name", "method", "wall_seconds", "solve_extract_seconds", "peak_memory_bytes", "depth", "chamfer_l1",
                  "fscore@0.005", "fscore@0.01", "normal_consistency", "faces"]
SCENE_COLUMNS = REPORT_COLUMNS[:6] + ["unknowns", "iterations"] + REPORT_COLUMNS[6:]


def write_report(rows: list[dict], out: Path, meta: dict, cols: list[str] = REPORT_COLUMNS) -> None:
    """`out`.json (rows and meta) and `out`.md (a table of `cols`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Kernel method vs screened Poisson ({meta['device']}, {meta['date']}, medians of {meta['repeats']})", "",
             "Kernel wall = the whole `fit` (read, analyse, solve, extract, residuals, write); Poisson wall = its "
             "reconstruction call only. Metrics against the GT mesh (bbox longest side 1)." +
             (f" {meta['note']}" if meta.get("note") else ""), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
            continue
        vals = [r.get(c) for c in cols]
        vals[cols.index("peak_memory_bytes")] = f"{(r.get('peak_memory_bytes') or 0) / 2**20:.0f} MiB"
        lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.kernel", description=__doc__.splitlines()[0])
    p.add_argument("--suites", nargs="+", default=["sparse", "dense"], choices=["sparse", "dense", "scene"])
    p.add_argument("--shapes", nargs="+", default=SPARSE_SHAPES, help="shapes of the sparse suite")
    p.add_argument("--dense-shapes", nargs="+", default=["bunny", "spot"])
    p.add_argument("--dense-points", type=int, default=1_000_000)
    p.add_argument("--scene-points", type=int, default=10_000_000)
    p.add_argument("--scene-objects", type=int, default=8)
    p.add_argument("--scene-noise", type=float, default=0.0, help="position noise std of the scene cloud, metres")
    p.add_argument("--scene-presets", nargs="+", default=["balanced", "quality"])
    p.add_argument("--scene-poisson-depth", type=int, default=9, help="0 skips Poisson on the scene")
    p.add_argument("--scene-metric-samples", type=int, default=1_000_000,
                   help="GT and reconstruction samples of the scene's metrics (100k samples 33 m^2 every ~2 cm: too coarse)")
    p.add_argument("--scene-out", default=str(RESULTS / "kernel_scene"))
    p.add_argument("--preset", default="balanced")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--poisson-repeats", type=int, default=None, help="default: --repeats (sparse), 1 (dense: minutes each)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(RESULTS / "kernel"))
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.single:
        spec = json.loads(args.single)
        print(json.dumps(run_poisson(spec) if spec["kind"] == "poisson" else run_kernel(spec)))
        return 0
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nfrecon-bench-kernel-") as tmp:
        specs = []
        if "sparse" in args.suites:
            for shape in args.shapes:
                base = {"shape": shape, "suite": "sparse", "gt": str(DATA / "meshes" / f"{shape}.ply"),
                        "cloud": str(DATA / "pointclouds" / f"{shape}_sparse_10k_noisy.ply")}
                specs.append(({**base, "kind": "kernel", "preset": args.preset, "name": f"{shape}/sparse10k"}, args.repeats))
                specs.append(({**base, "kind": "poisson", "depth": 8, "name": f"{shape}/sparse10k"},
                              args.poisson_repeats or args.repeats))
        if "dense" in args.suites:
            for shape in args.dense_shapes:
                cloud = sample_dense_cloud(shape, args.dense_points, Path(tmp))
                base = {"shape": shape, "suite": "dense", "gt": str(DATA / "meshes" / f"{shape}.ply"), "cloud": str(cloud)}
                label = f"{shape}/dense{args.dense_points // 1000}k"
                specs.append(({**base, "kind": "kernel", "preset": args.preset, "name": label}, args.repeats))
                specs.append(({**base, "kind": "poisson", "depth": 10, "name": label}, args.poisson_repeats or 1))
        if "scene" in args.suites:
            from bench.scene import write_scene

            cloud, gt, _ = write_scene(args.scene_points, Path(tmp) / "scene", noise=args.scene_noise,
                                       n_objects=args.scene_objects)
            base = {"shape": "scene", "suite": "scene", "gt": str(gt), "cloud": str(cloud),
                    "name": f"scene{args.scene_objects}/{args.scene_points / 1e6:g}M", "max_points": args.scene_points,
                    "metric_samples": args.scene_metric_samples}
            for preset in args.scene_presets:
                specs.append(({**base, "kind": "kernel", "preset": preset}, args.repeats))
            if args.scene_poisson_depth:
                specs.append(({**base, "kind": "poisson", "depth": args.scene_poisson_depth}, args.poisson_repeats or 1))
        for spec, repeats in specs:
            row = _median_row([_in_subprocess(spec, args.timeout) for _ in range(repeats)])
            rows.append(row)
            if "error" in row:
                print(f"{row['name']:24s} {spec['kind']:8s} ERROR {row['error'].splitlines()[-1:]}", flush=True)
                continue
            print(f"{row['name']:24s} {row['method']:16s} wall {row['wall_seconds']:7.2f}s  "
                  f"peak {row['peak_memory_bytes'] / 2**30:5.2f} GiB  depth {row['depth']}  CL1 {row['chamfer_l1']:.6f}  "
                  f"F@0.5% {row['fscore@0.005']:.3f}  F@1% {row['fscore@0.01']:.3f}  NC {row['normal_consistency']:.3f}",
                  flush=True)
    meta = {"device": "cpu", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats,
            "argv": argv if argv is not None else sys.argv[1:]}
    scene_rows = [r for r in rows if r.get("suite") == "scene"]
    other_rows = [r for r in rows if r.get("suite") != "scene"]
    if other_rows:
        write_report(other_rows, Path(args.out), meta)
        print(f"wrote {Path(args.out).with_suffix('.json')} and .md")
    if scene_rows:
        note = (f"Scene: {args.scene_objects} shared meshes on a 4 x 3 m floor slab (bench/scene.py, seed 0), "
                f"{args.scene_points} points, noise {args.scene_noise:g} m; metrics in units of the scene's longest "
                f"side (4 m): Chamfer-L1 0.001 = 4 mm; {args.scene_metric_samples} metric samples per mesh (with the "
                "default 100k every method scored Chamfer-L1 0.00228-0.00229: the samples' own spacing).")
        write_report(scene_rows, Path(args.scene_out), {**meta, "note": note}, cols=SCENE_COLUMNS)
        print(f"wrote {Path(args.scene_out).with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
