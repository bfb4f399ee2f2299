"""Normal estimation benchmark: how many estimated normals point the wrong way, old vs new orientation.

    python -m bench.normals                      # shared clouds (10k noisy, 100k clean) + synthetic shapes
    python -m bench.normals --only synthetic     # or: shared
    python -m bench.normals --repeats 3          # medians of 3 timings

Methods (both estimate PCA normals over k = 30 neighbours first, as `read_point_cloud` does):
- old: Open3D `orient_normals_consistent_tangent_plane(30)` then one global flip so that normals point
  away from the centroid on average (nfcore/io/points.py before nfcore/normals.py);
- new: `nfcore.normals.estimate_oriented_normals` (visibility votes, MST propagation from the voted
  seeds, global sign from the votes; a votes-free consistent orientation for open sheets).
The true normals are used only to score: `wrong` is the fraction with dot(estimated, true) < 0.
Clouds: the shared `<shape>_sparse_10k_noisy.ply` and `<shape>_dense_100k.ply` (skipped when
../shared/data is absent), and synthetic shapes sampled with trimesh (`synthetic_clouds`): closed
(sphere, torus, thin box, two nearby spheres, a surface of revolution) and open (a height field,
an open tube), each at 10k points with noise 0.5% of the bounding-box diagonal (per-coordinate std,
as the shared clouds) and 100k points without noise. Seconds are the whole estimation (PCA included),
medians of `--repeats`. Writes bench/results/normals.{json,md}. Run it under
`flock /tmp/nfrecon-bench.lock` on shared machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import trimesh

REPO = Path(__file__).resolve().parents[1]
CLOUDS = REPO.parent / "shared" / "data" / "pointclouds"
RESULTS = REPO / "bench" / "results"
SHARED_SHAPES = ["bunny", "spot", "armadillo", "rocker_arm", "mountain"]
OPEN_SHAPES = {"mountain", "heightfield", "open_tube"}
NOISE = 0.005
"""Per-coordinate noise std as a fraction of the bounding-box diagonal (as the shared sparse clouds)."""


# ---------------------------------------------------------------------------------------------
# Synthetic shapes


def _heightfield(n: int = 80) -> trimesh.Trimesh:
    """An open, wavy height field over [-1, 1]^2 (faces wound so that normals point up, +z)."""
    u = np.linspace(-1.0, 1.0, n)
    x, y = np.meshgrid(u, u, indexing="ij")
    z = 0.25 * np.sin(2.5 * x) * np.cos(2.0 * y) + 0.15 * np.exp(-4 * (x * x + y * y))
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    i = np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]  # (n-1, n-1) lower-left corners
    a, b, c, d = i, i + n, i + n + 1, i + 1
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if mesh.face_normals[:, 2].mean() < 0:
        mesh.invert()
    return mesh


def _open_tube() -> trimesh.Trimesh:
    """A cylinder without its caps (normals outward)."""
    tube = trimesh.creation.cylinder(radius=0.5, height=2.0, sections=96)
    side = np.abs(tube.face_normals[:, 2]) < 0.5
    return trimesh.Trimesh(tube.vertices, tube.faces[side], process=False)


def synthetic_meshes() -> dict[str, trimesh.Trimesh]:
    """Test shapes not in the shared data: closed ones with outward normals, and two open ones."""
    two = trimesh.util.concatenate([
        trimesh.creation.icosphere(subdivisions=4, radius=0.5).apply_translation([-0.53, 0, 0]),
        trimesh.creation.icosphere(subdivisions=4, radius=0.5).apply_translation([0.53, 0, 0]),
    ])  # two spheres 0.06 apart
    profile = np.array([[0.0, -1.0], [0.55, -1.0], [0.6, -0.8], [0.35, -0.3], [0.25, 0.1], [0.5, 0.6],
                        [0.55, 0.9], [0.45, 1.0], [0.0, 1.0]])  # (r, z): a closed vase-like profile
    vase = trimesh.creation.revolve(profile, sections=96)
    if vase.volume < 0:
        vase.invert()
    return {
        "sphere": trimesh.creation.icosphere(subdivisions=4, radius=1.0),
        "torus": trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=96, minor_sections=48),
        "thin_box": trimesh.creation.box(extents=[1.0, 1.0, 0.06]),
        "two_spheres": two,
        "revolution": vase,
        "heightfield": _heightfield(),
        "open_tube": _open_tube(),
    }


def sample(mesh: trimesh.Trimesh, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points on the mesh (area-weighted) with their face normals, plus Gaussian noise of std
    `noise` x bounding-box diagonal per coordinate; (n, 3) each."""
    rng = np.random.default_rng(seed)
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=rng)
    normals = np.asarray(mesh.face_normals[faces], dtype=np.float64)
    diag = float(np.linalg.norm(mesh.bounds[1] - mesh.bounds[0]))
    points = np.asarray(points, dtype=np.float64) + rng.normal(scale=noise * diag, size=(n, 3))
    return points, normals


def synthetic_clouds(n_sparse: int = 10_000, n_dense: int = 100_000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (points, true normals): each synthetic shape, noisy sparse and clean dense."""
    out = {}
    for i, (name, mesh) in enumerate(synthetic_meshes().items()):
        out[f"{name}_sparse_{n_sparse // 1000}k_noisy"] = sample(mesh, n_sparse, NOISE, seed=10 + i)
        out[f"{name}_dense_{n_dense // 1000}k"] = sample(mesh, n_dense, 0.0, seed=100 + i)
    return out


def shared_clouds() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (points, true normals) for the shared clouds; empty when ../shared/data is absent."""
    from nfcore.io.points import load_raw

    out = {}
    for shape in SHARED_SHAPES:
        for kind in ("sparse_10k_noisy", "dense_100k"):
            path = CLOUDS / f"{shape}_{kind}.ply"
            if path.is_file():
                raw = load_raw(path)
                out[f"{shape}_{kind}"] = (raw.points, raw.normals)
    return out


# ---------------------------------------------------------------------------------------------
# Methods


def old_method(points: np.ndarray, k: int = 30) -> np.ndarray:
    """The orientation nfcore used before nfcore/normals.py: Open3D tangent-plane MST + centroid flip."""
    from nfcore.open3d_import import import_open3d

    o3d = import_open3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=k))
    pcd.orient_normals_consistent_tangent_plane(k)
    normals = np.asarray(pcd.normals, dtype=np.float64)
    if np.sum((points - points.mean(axis=0)) * normals) < 0:
        normals = -normals
    return normals


def _old_child(conn, points: np.ndarray, repeats: int) -> None:
    times, normals = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        normals = old_method(points)
        times.append(time.perf_counter() - t0)
    conn.send((normals, times))
    conn.close()


def old_method_timed(points: np.ndarray, repeats: int, timeout: float) -> tuple[np.ndarray | None, list[float]]:
    """old_method in a spawned process (Open3D's orientation can take minutes): (normals, seconds) or
    (None, []) when it ran past `timeout` seconds."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_old_child, args=(child, points, repeats), daemon=True)
    proc.start()
    child.close()
    result = parent.recv() if parent.poll(timeout) else None
    proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return (None, []) if result is None else result


def new_method(points: np.ndarray, k: int = 30, info: dict | None = None) -> np.ndarray:
    """nfcore.normals.estimate_oriented_normals with the defaults read_point_cloud uses."""
    from nfcore.normals import estimate_oriented_normals

    return estimate_oriented_normals(points, neighbors=k, info=info)


def measure(points: np.ndarray, truth: np.ndarray, repeats: int, old_timeout: float) -> dict:
    """Wrong-orientation fraction and median seconds for both methods on one cloud (old: None past its timeout)."""
    from nfcore.normals import wrong_fraction

    row: dict = {"points": int(len(points))}
    normals, times = old_method_timed(points, repeats, old_timeout)
    row["old_wrong"] = None if normals is None else wrong_fraction(normals, truth)
    row["old_seconds"] = statistics.median(times) if times else None
    times = []
    for _ in range(repeats):
        info: dict = {}
        t0 = time.perf_counter()
        normals = new_method(points, info=info)
        times.append(time.perf_counter() - t0)
    row["new_wrong"] = wrong_fraction(normals, truth)
    row["new_seconds"] = statistics.median(times)
    row["new_mode"] = info.get("mode")
    for key in ("seam", "seed_share", "point_conflict"):
        row[f"new_{key}"] = info.get(key)
    row["new_median_abs_cos"] = float(np.median(np.abs(np.sum(normals * truth, axis=1))))
    return row


def _fmt(value: float | None, spec: str, missing: str) -> str:
    return missing if value is None else format(value, spec)


def _markdown(rows: dict[str, dict], meta: dict) -> str:
    lines = [
        "# Normal estimation: wrong-orientation fraction, old vs new",
        "",
        f"`python -m bench.normals` on {meta['machine']}; seconds are medians of {meta['repeats']} "
        "(whole estimation, PCA included). `wrong` = fraction of estimated normals with "
        "dot(estimated, true) < 0. old = Open3D `orient_normals_consistent_tangent_plane` + centroid flip; "
        "new = `nfcore.normals.estimate_oriented_normals` (mode: `visibility` = voted seeds + propagation, "
        "`consistent` = votes-free orientation, chosen when the votes contradict each other as on an open sheet: "
        "seam = share of near-parallel seed neighbours voted opposite ways (> 0.02), seed share = seeds / seen "
        "points (< 0.7), point conflict = vote mass conflicting within points (> 0.1)). `timeout`: the old method "
        f"was stopped after its {meta['repeats']} run(s) together took more than {meta['old_timeout']:.0f} s. "
        "Open shapes: " + ", ".join(sorted(OPEN_SHAPES)) + ".",
        "",
        "| cloud | points | old wrong | old s | new wrong | new s | new mode | seam | seed share | point conflict "
        "| new median abs cos |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    timeout = "timeout"
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['points']} | {_fmt(r['old_wrong'], '.4f', 'timeout')} | "
            f"{_fmt(r['old_seconds'], '.2f', timeout)} | {r['new_wrong']:.4f} | "
            f"{r['new_seconds']:.2f} | {r['new_mode']} | {r['new_seam']:.3f} | {r['new_seed_share']:.3f} | "
            f"{r['new_point_conflict']:.3f} | {r['new_median_abs_cos']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["shared", "synthetic"], default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--old-timeout", type=float, default=60.0,
                        help="seconds after which the old method's runs (all repeats together) are stopped: a timeout")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    clouds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if args.only in (None, "shared"):
        clouds.update(shared_clouds())
    if args.only in (None, "synthetic"):
        clouds.update(synthetic_clouds())
    rows = {}
    for name, (points, truth) in clouds.items():
        rows[name] = measure(points, truth, args.repeats, args.old_timeout)
        r = rows[name]
        print(f"{name:28s} n={r['points']:6d}  old wrong {_fmt(r['old_wrong'], '.4f', 'timeout')} "
              f"({_fmt(r['old_seconds'], '.2f', f'> {args.old_timeout:.0f} for all runs')} s)  "
              f"new wrong {r['new_wrong']:.4f} ({r['new_seconds']:.2f} s) [{r['new_mode']}, seam "
              f"{r['new_seam']:.3f}, seeds {r['new_seed_share']:.3f}, conflict {r['new_point_conflict']:.3f}]", flush=True)
    meta = {"machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
            "repeats": args.repeats, "old_timeout": args.old_timeout}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "normals.json").write_text(json.dumps({"meta": meta, "clouds": rows}, indent=2) + "\n")
    (args.out / "normals.md").write_text(_markdown(rows, meta))
    print(f"wrote {args.out / 'normals.md'} and {args.out / 'normals.json'}")
    return rows


if __name__ == "__main__":
    main()
