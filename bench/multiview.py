"""Several overlapping range scans of one object, reconstructed as one surface (nfcore.scans).

Run `python -m bench.multiview [--shapes bunny spot] [--variants all-round no-underside] [--quick]`
(under `flock /tmp/nfrecon-bench.lock` on a shared machine). For each shared closed mesh it makes
synthetic range scans with Open3D's RaycastingScene: 8 pinhole views around the object (`all-round`:
six around at +-25 degrees of elevation, one above, one below; `no-underside`: eight around and above,
at +15 and +50 degrees, none below), hits at grazing angles dropped (as a scanner loses them), range
noise along each ray, then a known small rigid misregistration per view (a rotation about the view's
centroid and a translation, of fixed size in a random direction). Views are written without normals.

Each scan set is fitted through the real pipeline (`nfcore.fit.fit` with the list of files): merged
without registration (`input.registration: off`) and with it (`on`), by the neural method's `fast`
CPU preset and by the kernel method, next to Open3D screened Poisson depth 8 on the same merged cloud
(the fit's reader: the same registration and the same estimated normals; plus Poisson with density
trimming for the open variant). Scores: `nfcore.metrics.mesh_metrics` (Chamfer-L1 in the frame where
the GT bounding box's longest side is 1, F@1%, F@0.5%, normal consistency). The misregistration the
ICP removed is measured gauge-free: the RMS displacement of every (noise-free) scanned point from its
true place after the best common rigid motion (registration fixes scans relative to one another only).

Writes bench/results/multiview.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MESHES = REPO_ROOT.parent / "shared" / "data" / "meshes"
RESULTS = REPO_ROOT / "bench" / "results"
SHAPES = ("bunny", "spot", "armadillo", "rocker_arm")
VARIANTS = ("all-round", "no-underside")
KEYS = ("chamfer_l1", "fscore@0.01", "fscore@0.005", "normal_consistency")
UP = np.array([0.0, 1.0, 0.0])  # the shared meshes stand along +y (rocker arm: any axis is as good)


def view_directions(variant: str) -> list[tuple[float, float]]:
    """(azimuth, elevation) in degrees of each camera."""
    if variant == "all-round":
        return [(a, 25.0 if k % 2 == 0 else -25.0) for k, a in enumerate(range(0, 360, 60))] + [(0.0, 85.0),
                                                                                              (180.0, -85.0)]
    if variant == "no-underside":
        return [(a, 15.0) for a in range(0, 360, 90)] + [(a + 45.0, 50.0) for a in range(0, 360, 90)]
    raise ValueError(f"unknown variant {variant!r}")


def random_rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * math.radians(degrees)).as_matrix()


def make_scans(mesh, variant: str, *, pixels: int, noise: float, rot_deg: float, shift: float, seed: int) -> list[dict]:
    """Range scans of `mesh`: per view the true hit points, the misregistered noisy points and the perturbation.

    noise: range noise std, shift: translation length, both in fractions of the bbox diagonal.
    """
    from nfcore.open3d_import import import_open3d

    o3d = import_open3d()
    rng = np.random.default_rng(seed)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)))))
    lo, hi = mesh.bounds
    center, diag = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    views = []
    for az, el in view_directions(variant):
        a, e = math.radians(az), math.radians(el)
        direction = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        eye = center + 1.6 * diag * direction
        up = UP if abs(direction @ UP) < 0.95 else np.array([0.0, 0.0, 1.0])
        rays = scene.create_rays_pinhole(fov_deg=40.0, center=center.tolist(), eye=eye.tolist(), up=up.tolist(),
                                         width_px=pixels, height_px=pixels)
        hit = scene.cast_rays(rays)
        t = hit["t_hit"].numpy().reshape(-1)
        r = rays.numpy().reshape(-1, 6)
        n = hit["primitive_normals"].numpy().reshape(-1, 3)
        d = r[:, 3:] / np.linalg.norm(r[:, 3:], axis=1, keepdims=True)
        ok = np.isfinite(t)
        ok[ok] &= np.abs(np.einsum("ij,ij->i", d[ok], n[ok])) > 0.15  # grazing hits are lost by a real scanner
        tt = t[ok] * np.linalg.norm(r[ok, 3:], axis=1)
        true = r[ok, :3] + d[ok] * tt[:, None]
        measured = true + d[ok] * rng.normal(0.0, noise * diag, size=(len(true), 1))  # range noise along the ray
        rot = random_rotation(rng, rot_deg)
        move = rng.normal(size=3)
        move *= shift * diag / np.linalg.norm(move)
        c = true.mean(axis=0)
        perturb = np.eye(4)
        perturb[:3, :3] = rot
        perturb[:3, 3] = c - rot @ c + move
        views.append({"true": true, "points": measured @ rot.T + perturb[:3, 3], "perturb": perturb,
                      "azimuth": az, "elevation": el})
    return views


def write_xyz(points: np.ndarray, path: Path) -> Path:
    np.savetxt(path, points, fmt="%.7g")
    return path


def misregistration(views: list[dict], transforms: list[np.ndarray] | None, diag: float) -> float:
    """Gauge-free RMS displacement of the scanned points from their true places, in % of the bbox diagonal."""
    from nfcore.scans import kabsch

    true = np.concatenate([v["true"] for v in views])
    placed = []
    for i, v in enumerate(views):
        total = v["perturb"] if transforms is None else transforms[i] @ v["perturb"]
        placed.append(v["true"] @ total[:3, :3].T + total[:3, 3])
    placed = np.concatenate(placed)
    g = kabsch(placed, true)
    err = placed @ g[:3, :3].T + g[:3, 3] - true
    return float(100 * np.sqrt((err ** 2).sum(axis=1).mean()) / diag)


def run_case(shape: str, variant: str, args: argparse.Namespace) -> dict:
    from bench.poisson import poisson_reconstruct
    from nfcore.fit import fit
    from nfcore.io import read_mesh
    from nfcore.metrics import mesh_metrics
    from nfcore.scans import read_merged_cloud
    from nfcore.spec import MethodSpec, resolve

    gt_path = MESHES / f"{shape}.ply"
    gt = read_mesh(gt_path)
    diag = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    views = make_scans(gt, variant, pixels=args.pixels, noise=args.noise, rot_deg=args.rotation, shift=args.shift,
                       seed=args.seed)
    case: dict = {"shape": shape, "variant": variant, "views": len(views),
                  "points": int(sum(len(v["points"]) for v in views)),
                  "points_per_view": [int(len(v["points"])) for v in views], "runs": {}}
    print(f"{shape} {variant}: {len(views)} views, {case['points']} points", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write_xyz(v["points"], Path(tmp) / f"view{i}.xyz") for i, v in enumerate(views)]
        for registration in ("off", "on"):
            overrides = {"input": {"registration": registration}}
            row: dict = {}
            t0 = time.perf_counter()
            icfg = resolve(MethodSpec(task="sdf", overrides=overrides), "cpu").input
            cloud, report = read_merged_cloud(paths, icfg, seed=0)
            merge_seconds = time.perf_counter() - t0
            transforms = [np.array(v["transform"]) for v in report["views"]]
            row["merge"] = {
                "seconds": merge_seconds, "residual_before": report["residual_before"],
                "residual_after": report["residual_after"], "within_scan_residual": report["within_scan_residual"],
                "residual_ratio": report["residual_ratio"], "rounds": report["rounds"],
                "moved": sum(v["registered"] for v in report["views"]),
                "misregistration_before": misregistration(views, None, diag),
                "misregistration_after": misregistration(views, transforms, diag),
                "rotation_degrees": [v["rotation_degrees"] for v in report["views"]],
                "translation_spacings": [v["translation_spacings"] for v in report["views"]],
            }
            for name, method, preset in (("neural-fast", "neural", "fast"), ("kernel", "kernel", "balanced")):
                config = resolve(MethodSpec(task="sdf", method=method, preset=preset, overrides=overrides), "cpu")
                t0 = time.perf_counter()
                try:
                    result = fit(paths, config, Path(tmp) / f"{name}-{registration}", device="cpu", gt_path=gt_path)
                    g = result.metrics["ground_truth"]
                    row[name] = {"seconds": time.perf_counter() - t0, **{k: g.get(k) for k in KEYS},
                                 "trim": (result.metrics.get("trim") or {}).get("applied")}
                except Exception as exc:  # a failed fit is a finding, reported in its row
                    row[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  registration {registration} {name}: {row[name]}", flush=True)
            poissons = [("poisson8", None)] + ([("poisson8-trim", 0.05)] if variant == "no-underside" else [])
            for name, quantile in poissons:
                t0 = time.perf_counter()
                try:
                    recon = poisson_reconstruct(cloud.points, cloud.normals, depth=8, density_quantile=quantile)
                    seconds = time.perf_counter() - t0
                    scores = mesh_metrics(recon, gt, iou=False)
                    row[name] = {"seconds": seconds, **{k: scores.get(k) for k in KEYS}}
                except Exception as exc:
                    row[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  registration {registration} {name}: {row[name]}", flush=True)
            case["runs"][registration] = row
    return case


METHODS = ("neural-fast", "kernel", "poisson8", "poisson8-trim")


def _f(v, spec=".5f") -> str:
    return "-" if v is None else format(v, spec)


def write_report(cases: list[dict], meta: dict, out: Path) -> None:
    from nfcore.scans import AUTO_RATIO

    out.mkdir(parents=True, exist_ok=True)
    (out / "multiview.json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=2))
    lines = ["# Several overlapping scans merged into one surface (bench.multiview)", "",
             f"{meta['command']}; {meta['machine']}; {meta['wall_seconds']:.0f} s in all.", "",
             f"Synthetic range scans (Open3D RaycastingScene, {meta['pixels']}x{meta['pixels']} px per view, grazing hits "
             f"dropped), range noise {meta['noise'] * 100:g}% of the bbox diagonal, each view misregistered by "
             f"{meta['rotation']:g} deg about its centroid and {meta['shift'] * 100:g}% of the diagonal; no normals. "
             "`off`: merged as given; `on`: ICP-registered (nfcore.scans). Chamfer-L1 in the frame where the GT "
             "bbox's longest side is 1; F@1%, F@0.5%, NC = normal consistency. Poisson: Open3D screened Poisson "
             "depth 8 on the same merged cloud with the same estimated normals (`-trim`: density quantile 0.05). "
             "Seconds are single runs on a machine other sessions shared (tests ran beside it): read them as rough.", "",
             "## Summary", "",
             "| shape | variant | points | misreg. before -> after (% diag) | removed | residual off -> on (spacings) "
             "| method | CD-L1 off | CD-L1 on | F@0.5% off | F@0.5% on | NC on | s (on) |",
             "|---|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        off, on = c["runs"].get("off", {}), c["runs"].get("on", {})
        mb, ma = on["merge"]["misregistration_before"], on["merge"]["misregistration_after"]
        removed = f"{1 - ma / mb:.0%}" if mb > 0 else "-"
        first = True
        for m in METHODS:
            if m not in on:
                continue
            a, b = off.get(m, {}), on.get(m, {})
            lead = (f"| {c['shape']} | {c['variant']} | {c['points']} | {mb:.3f} -> {ma:.3f} | {removed} | "
                    f"{on['merge']['residual_before']} -> {on['merge']['residual_after']} |") if first else "| | | | | | |"
            first = False
            lines.append(f"{lead} {m} | {_f(a.get('chamfer_l1'))} | {_f(b.get('chamfer_l1'))} | "
                         f"{_f(a.get('fscore@0.005'), '.3f')} | {_f(b.get('fscore@0.005'), '.3f')} | "
                         f"{_f(b.get('normal_consistency'), '.3f')} | {_f(b.get('seconds'), '.1f')} |")
    lines += ["", "## Medians over the cases", "", "| method | CD-L1 off | CD-L1 on | F@1% on | F@0.5% off | F@0.5% on | NC off | NC on |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in METHODS:
        def med(reg, key, m=m):
            vals = [c["runs"][reg][m].get(key) for c in cases if m in c["runs"].get(reg, {})]
            vals = [v for v in vals if v is not None]
            return statistics.median(vals) if vals else None
        if med("on", "chamfer_l1") is None:
            continue
        lines.append(f"| {m} | {_f(med('off', 'chamfer_l1'))} | {_f(med('on', 'chamfer_l1'))} | "
                     f"{_f(med('on', 'fscore@0.01'), '.3f')} | {_f(med('off', 'fscore@0.005'), '.3f')} | "
                     f"{_f(med('on', 'fscore@0.005'), '.3f')} | {_f(med('off', 'normal_consistency'), '.3f')} | "
                     f"{_f(med('on', 'normal_consistency'), '.3f')} |")
    lines += ["", "## Registration", "",
              f"`auto` registers when the overlap residual / within-scan residual ratio is above {AUTO_RATIO:g} "
              "(nfcore.scans.AUTO_RATIO). Residuals in spacings of the merged cloud.", "",
              "| shape | variant | residual ratio (as given) | auto registers | ratio once registered | within-scan residual "
              "| merge s off / on | ICP rounds | views moved | rotation applied (deg, max) | translation applied (spacings, max) |",
              "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|"]
    for c in cases:
        off, on = c["runs"]["off"]["merge"], c["runs"]["on"]["merge"]
        after = on["residual_after"] / on["within_scan_residual"] if on["within_scan_residual"] else None
        auto = "yes" if (off["residual_ratio"] or 0) > AUTO_RATIO else "no"
        lines.append(f"| {c['shape']} | {c['variant']} | {off['residual_ratio']} | {auto} | {_f(after, '.3f')} | "
                     f"{off['within_scan_residual']} | "
                     f"{off['seconds']:.1f} / {on['seconds']:.1f} | {on['rounds']} | {on['moved']}/{c['views']} | "
                     f"{max(on['rotation_degrees']):.3f} | {max(on['translation_spacings']):.2f} |")
    (out / "multiview.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--pixels", type=int, default=160, help="rays per side of each view's image")
    p.add_argument("--noise", type=float, default=0.001, help="range noise std, fraction of the bbox diagonal")
    p.add_argument("--rotation", type=float, default=0.3, help="misregistration rotation per view, degrees")
    p.add_argument("--shift", type=float, default=0.003, help="misregistration translation, fraction of the diagonal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cases = []
    for shape in args.shapes:
        for variant in args.variants:
            cases.append(run_case(shape, variant, args))
            meta = {"command": "python -m bench.multiview " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                    "wall_seconds": time.perf_counter() - t0, "pixels": args.pixels, "noise": args.noise,
                    "rotation": args.rotation, "shift": args.shift, "seed": args.seed}
            write_report(cases, meta, args.out)  # after every case: a cut-short run still reports what it measured
    print((args.out / "multiview.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
