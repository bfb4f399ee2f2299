"""SDF benchmark: presets and encodings, with and without stochastic preconditioning, against Poisson.

    python -m bench.sdf                       # default matrix on the bunny (dense and sparse-noisy)
    python -m bench.sdf --shapes bunny spot --presets fast balanced --encodings hashgrid fourier
    nfrecon bench sdf --quick                 # a small smoke run

Each run is a separate process (so peak memory is that run's own), timed end to end (read,
train, extract, evaluate, write). Metrics are against the shape's ground-truth mesh in the frame
where its bounding box's longest side is 1 (nfcore.metrics). Writes bench/results/sdf.{json,md}.
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
# Table-free encodings keep all their capacity in the MLP: the presets' 2x64 MLP (sized for the
# hash grid) underfits with Fourier features (Chamfer-L1 0.00379 against 0.00322 with 3x128 on the
# sparse bunny), so the encoding comparison gives them a wider network.
ENCODING_NETWORKS = {"fourier": {"hidden_features": 128, "hidden_layers": 3}}
CLOUDS = {"dense": "{shape}_dense_100k.ply", "sparse": "{shape}_sparse_10k_noisy.ply"}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_fit(spec: dict) -> dict:
    """One fit, in this process: returns timings and metrics."""
    import torch

    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    device = spec.get("device", "cpu")
    config = resolve(MethodSpec(task="sdf", preset=spec["preset"], overrides=spec.get("overrides") or {}), device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(spec["cloud"], config, tmp, device=device, gt_path=spec["gt"])
    wall = time.perf_counter() - t0
    gt = result.metrics["ground_truth"]
    return {
        **{k: spec[k] for k in ("name", "shape", "cloud_kind", "preset")},
        "encoding": config.encoding.type,
        "precondition": config.precondition_enabled(),
        "steps": result.steps,
        "batch_size": config.train.batch_size,
        "wall_seconds": wall,
        # Without the ground-truth scoring (in the evaluate phase), which a user's fit does not run.
        "mesh_seconds": wall - result.metrics["timings"].get("evaluate", 0.0),
        "train_seconds": result.metrics["train_seconds"],
        "samples_per_second": result.metrics["samples_per_second"],
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else _peak_rss_bytes(),
        "chamfer_l1": gt["chamfer_l1"],
        "fscore@0.01": gt["fscore@0.01"],
        "fscore@0.005": gt["fscore@0.005"],
        "normal_consistency": gt["normal_consistency"],
        "iou": gt.get("iou"),
        "fit_residuals": result.metrics["fit_residuals"],
    }


def run_poisson(spec: dict) -> dict:
    """The screened Poisson baseline (Open3D) on the same cloud."""
    from bench.poisson import poisson_reconstruct
    from nfcore.io import read_mesh, read_point_cloud
    from nfcore.metrics import has_inside_test, mesh_metrics

    cloud = read_point_cloud(spec["cloud"])
    t0 = time.perf_counter()
    mesh = poisson_reconstruct(cloud.points, cloud.normals, depth=spec["depth"])
    wall = time.perf_counter() - t0
    gt_mesh = read_mesh(spec["gt"])
    gt = mesh_metrics(mesh, gt_mesh, iou=gt_mesh.is_watertight and has_inside_test())
    return {
        **{k: spec[k] for k in ("name", "shape", "cloud_kind")},
        "preset": f"poisson-d{spec['depth']}",
        "encoding": "-",
        "precondition": False,
        "steps": 0,
        "wall_seconds": wall,
        "samples_per_second": None,
        "peak_memory_bytes": _peak_rss_bytes(),
        **{k: gt.get(k) for k in ("chamfer_l1", "fscore@0.01", "fscore@0.005", "normal_consistency", "iou")},
    }


def _in_subprocess(spec: dict, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sdf", "--single", json.dumps(spec)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        return {**{k: spec.get(k) for k in ("name", "shape", "cloud_kind", "preset")}, "error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_matrix(args: argparse.Namespace) -> list[dict]:
    specs: list[dict] = []
    for shape in args.shapes:
        gt = DATA / "meshes" / f"{shape}.ply"
        for kind in args.clouds:
            cloud = DATA / "pointclouds" / CLOUDS[kind].format(shape=shape)
            base = {"shape": shape, "cloud_kind": kind, "cloud": str(cloud), "gt": str(gt), "device": args.device}
            if args.poisson_depth:
                specs.append({**base, "kind": "poisson", "depth": args.poisson_depth, "name": f"{shape}/{kind}/poisson",
                              "preset": "poisson"})
            for preset in args.presets:
                specs.append({**base, "kind": "fit", "preset": preset, "name": f"{shape}/{kind}/{preset}",
                              "overrides": _steps(args)})
            # Encodings with and without preconditioning, at equal steps (the balanced preset's).
            for enc in args.encodings:
                for sp in (True, False):
                    over = {"encoding": {"type": enc}, "precondition": {"enabled": sp}, **_steps(args)}
                    if enc in ENCODING_NETWORKS:
                        over["network"] = ENCODING_NETWORKS[enc]
                    specs.append({**base, "kind": "fit", "preset": args.encoding_preset, "overrides": over,
                                  "name": f"{shape}/{kind}/{enc}/{'sp' if sp else 'nosp'}"})
    return specs


def _steps(args) -> dict:
    return {"train": {"steps": args.steps}} if args.steps else {}


def _fmt(v, spec=".4g"):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def write_report(rows: list[dict], out: Path, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = ["name", "encoding", "precondition", "steps", "wall_seconds", "mesh_seconds", "samples_per_second", "peak_memory_bytes",
            "chamfer_l1", "fscore@0.01", "fscore@0.005", "normal_consistency", "iou"]
    lines = [f"# SDF benchmark ({meta['device']}, {meta['date']})", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
            continue
        vals = [r.get(c) for c in cols]
        vals[cols.index("peak_memory_bytes")] = f"{(r.get('peak_memory_bytes') or 0) / 2**20:.0f} MiB"
        lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sdf", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["bunny"])
    p.add_argument("--clouds", nargs="+", default=["sparse", "dense"], choices=list(CLOUDS))
    p.add_argument("--presets", nargs="*", default=["fast", "balanced"])
    p.add_argument("--encodings", nargs="*", default=["hashgrid", "fourier"])
    p.add_argument("--encoding-preset", default="balanced", help="preset under the encoding/SP comparison")
    p.add_argument("--steps", type=int, help="override the steps of every fit")
    p.add_argument("--poisson-depth", type=int, default=8, help="0 = no Poisson row")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=1, help="repeat each run; the report gives medians")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(RESULTS / "sdf"))
    p.add_argument("--quick", action="store_true", help="smoke run: fast preset, few steps, sparse cloud only")
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.single:
        spec = json.loads(args.single)
        row = run_poisson(spec) if spec["kind"] == "poisson" else run_fit(spec)
        print(json.dumps(row))
        return 0
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1
    if args.quick:
        args.presets, args.clouds, args.encodings, args.steps = ["fast"], ["sparse"], [], args.steps or 100
    rows = []
    for spec in build_matrix(args):
        runs = [_in_subprocess(spec, args.timeout) for _ in range(args.repeats)]
        ok = [r for r in runs if "error" not in r]
        row = dict(ok[0] if ok else runs[0])
        for key in ("wall_seconds", "mesh_seconds", "train_seconds", "samples_per_second"):
            vals = [r[key] for r in ok if r.get(key) is not None]
            if vals:
                row[key] = statistics.median(vals)
        row["repeats"] = len(ok)
        rows.append(row)
        msg = row.get("error", "").splitlines()[-1:] if "error" in row else None
        print(
            f"{row['name']:40s} " + (f"ERROR {msg}" if msg is not None else
            f"wall {row['wall_seconds']:7.1f}s  CL1 {row['chamfer_l1']:.5f}  F@1% {row['fscore@0.01']:.3f}  "
            f"F@0.5% {row['fscore@0.005']:.3f}  NC {row['normal_consistency']:.3f}  IoU {_fmt(row.get('iou'), '.3f')}"),
            flush=True,
        )
    meta = {"device": args.device, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": argv if argv is not None else sys.argv[1:]}
    write_report(rows, Path(args.out), meta)
    print(f"wrote {Path(args.out).with_suffix('.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
