"""Occupancy benchmark: IoU, Chamfer and time on the shared closed meshes.

    python -m bench.occupancy                          # fast preset on every closed shared mesh
    python -m bench.occupancy --meshes spot bunny --preset balanced --sp off on
    nfrecon bench occupancy --quick                    # a small smoke run

Each fit goes through `nfcore.fit` (read, label, train, extract, evaluate, write), timed end to
end; `iou` is volumetric on held-out uniform points in the training cube, `iou near` on held-out
near-surface points, Chamfer-L1 and the mesh IoU are against the input mesh in the frame where
its bounding box's longest side is 1 (nfcore.metrics). Open meshes have no inside and are
skipped (mountain). Writes bench/results/occupancy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO.parent / "shared" / "data" / "meshes"
RESULTS = REPO / "bench" / "results"


def closed_meshes(folder: Path) -> dict[str, Path]:
    """Name -> path of the watertight meshes: from manifest.json's `watertight` when listed, else trimesh."""
    import trimesh

    manifest = folder / "manifest.json"
    listed = json.loads(manifest.read_text()) if manifest.is_file() else []
    watertight = {m["name"]: bool(m["watertight"]) for m in listed if isinstance(m, dict) and "watertight" in m}
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.ply")):
        closed = watertight.get(path.stem)
        if closed is None:
            closed = trimesh.load(path, force="mesh").is_watertight
        if closed:
            found[path.stem] = path
    return found


def run_one(path: Path, preset: str, sp: str, optimizer: str, steps: int | None, device: str) -> dict:
    """One occupancy fit; returns the figures the report shows."""
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    overrides: dict = {}
    if steps:
        overrides["train"] = {"steps": steps}
    if sp != "default":
        overrides["precondition"] = {"enabled": sp == "on"}
    if optimizer == "esgd":
        overrides["optimizer"] = {"type": "esgd"}
    config = resolve(MethodSpec(task="occupancy", preset=preset, overrides=overrides), device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(path, config, tmp, device=device)
    wall = time.perf_counter() - t0
    m = result.metrics
    return {
        "mesh": path.stem,
        "preset": preset,
        "optimizer": config.optimizer.type,
        "precondition": config.precondition_enabled(),
        "steps": m["steps"],
        "iou": m["iou"],
        "iou_near_surface": m["iou_near_surface"],
        "mesh_iou": m["mesh"]["iou"],
        "chamfer_l1": m["mesh"]["chamfer_l1"],
        "fscore@0.01": m["mesh"]["fscore@0.01"],
        "normal_consistency": m["mesh"]["normal_consistency"],
        "train_seconds": m["train_seconds"],
        "wall_seconds": wall,
        "n_faces": m["n_faces"],
    }


def _f(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def write_report(rows: list[dict], skipped: dict[str, str], out: Path, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "skipped": skipped}, indent=2))
    lines = [
        "# Occupancy: IoU, Chamfer and time on the shared closed meshes",
        "",
        f"{meta['device_name']}, {meta['threads']} thread(s); {meta['date']}; argv {meta['argv']}.",
        "",
        "| mesh | preset | optimizer | SP | steps | IoU | IoU near | mesh IoU | Chamfer-L1 | F@1% | NC | train s | wall s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mesh']} | {r['preset']} | {r['optimizer']} | {'yes' if r['precondition'] else 'no'} | {r['steps']} "
            f"| {_f(r['iou'])} | {_f(r['iou_near_surface'])} | {_f(r['mesh_iou'])} | {_f(r['chamfer_l1'], '.5f')} "
            f"| {_f(r['fscore@0.01'], '.3f')} | {_f(r['normal_consistency'], '.3f')} | {r['train_seconds']:.1f} | {r['wall_seconds']:.1f} |"
        )
    if skipped:
        lines += ["", *(f"- skipped {name}: {why}" for name, why in skipped.items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.occupancy", description=__doc__.splitlines()[0])
    p.add_argument("--meshes", nargs="*", help="names in the shared meshes folder (default: every closed one)")
    p.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    p.add_argument("--sp", nargs="+", default=["default"], choices=["default", "off", "on"], help="stochastic preconditioning")
    p.add_argument("--optimizers", nargs="+", default=["adam"], choices=["adam", "esgd"])
    p.add_argument("--steps", type=int, help="override the preset's steps")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data", default=str(MESHES), help="folder of meshes (default: ../shared/data/meshes)")
    p.add_argument("--out", default=str(RESULTS / "occupancy"))
    p.add_argument("--quick", action="store_true", help="smoke run: spot only, 100 steps")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.data)
    if not folder.is_dir():
        print(f"mesh folder not found at {folder}", file=sys.stderr)
        return 1
    available = closed_meshes(folder)
    skipped = {path.stem: "open mesh (not watertight): no inside" for path in folder.glob("*.ply") if path.stem not in available}
    names = args.meshes or list(available)
    if args.quick:
        names, args.steps = names[:1] if args.meshes else ["spot"], args.steps or 100
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"not a closed mesh in {folder}: {', '.join(unknown)} (closed: {', '.join(available)})", file=sys.stderr)
        return 1
    rows = []
    t_start = time.perf_counter()
    for name in names:
        for optimizer in args.optimizers:
            for sp in args.sp:
                row = run_one(available[name], args.preset, sp, optimizer, args.steps, args.device)
                rows.append(row)
                print(
                    f"{name:12s} {optimizer:5s} SP {'on ' if row['precondition'] else 'off'} {row['steps']:5d} steps  "
                    f"IoU {row['iou']:.4f}  near {row['iou_near_surface']:.4f}  mesh IoU {_f(row['mesh_iou'])}  "
                    f"CL1 {row['chamfer_l1']:.5f}  train {row['train_seconds']:6.1f}s  wall {row['wall_seconds']:6.1f}s",
                    flush=True,
                )
    meta = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU",
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "total_seconds": time.perf_counter() - t_start,
        "argv": argv if argv is not None else sys.argv[1:],
    }
    write_report(rows, skipped, Path(args.out), meta)
    print(f"wrote {Path(args.out).with_suffix('.json')} and .md ({meta['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
