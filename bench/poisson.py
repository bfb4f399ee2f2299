"""Screened Poisson surface reconstruction (Open3D): the baseline row of the SDF benchmark.

Run `python -m bench.poisson [--cloud ...] [--gt ...] [--depth 8]`: reconstructs the sparse noisy
bunny and prints the time and the metrics against the GT mesh (nfcore.metrics, 100k samples).
Clouds and GT meshes in ../shared/data share one frame (pointclouds/README.md), so no alignment.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import trimesh

from nfcore.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def poisson_reconstruct(
    points: np.ndarray,
    normals: np.ndarray,
    *,
    depth: int = 8,
    density_quantile: float | None = None,
    scale: float = 1.1,
    linear_fit: bool = False,
    n_threads: int = -1,
) -> trimesh.Trimesh:
    """Screened Poisson reconstruction of an oriented cloud, as a trimesh in the cloud's frame.

    Args:
        points, normals: (N, 3) positions and outward normals.
        depth: octree depth (resolution 2^depth over `scale` times the bbox).
        density_quantile: if set, drop vertices whose Poisson density is below this quantile
            (trims the surface Poisson invents far from the samples); None keeps the closed surface.
    """
    from nfcore.open3d_import import import_open3d

    try:
        o3d = import_open3d()
    except ImportError as exc:
        raise InputError(f"the Poisson baseline needs Open3D: {exc}") from exc
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    if points.shape != normals.shape or points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points and normals must both be (N, 3), got {points.shape} and {normals.shape}")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        pcd, depth=depth, width=0, scale=scale, linear_fit=linear_fit, n_threads=n_threads
    )
    if density_quantile is not None:
        densities = np.asarray(densities)
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    return trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=False)


def run(
    cloud: Path,
    gt: Path,
    *,
    depth: int = 8,
    density_quantile: float | None = None,
    n_samples: int = 100_000,
    iou: bool | None = None,
) -> dict:
    """Reconstruct `cloud` and score it against `gt`; returns seconds, mesh size and metrics.

    `iou=None` computes IoU whenever the GT is closed: untrimmed Poisson output is closed but has a
    few non-manifold edges (23 on the sparse bunny), so trimesh calls it not watertight, while
    ray-parity occupancy is still well defined.
    """
    from nfcore.io import read_mesh, read_point_cloud
    from nfcore.metrics import mesh_metrics

    pc = read_point_cloud(cloud, estimate_normals=False)
    start = time.perf_counter()
    mesh = poisson_reconstruct(pc.points, pc.normals, depth=depth, density_quantile=density_quantile)
    seconds = time.perf_counter() - start
    gt_mesh = read_mesh(gt)
    if iou is None:
        iou = gt_mesh.is_watertight and density_quantile is None
    metrics = mesh_metrics(mesh, gt_mesh, n_samples=n_samples, iou=iou)
    return {
        "method": f"poisson_depth{depth}",
        "cloud": cloud.name,
        "gt": gt.name,
        "seconds": seconds,
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "density_quantile": density_quantile,
        **metrics,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", type=Path, default=SHARED_DATA / "pointclouds" / "bunny_sparse_10k_noisy.ply")
    parser.add_argument("--gt", type=Path, default=SHARED_DATA / "meshes" / "bunny.ply")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--density-quantile", type=float, default=None)
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args(argv)
    result = run(args.cloud, args.gt, depth=args.depth, density_quantile=args.density_quantile, n_samples=args.samples)
    print(
        f"Poisson depth {args.depth} on {result['cloud']}: {result['seconds']:.2f} s, "
        f"Chamfer-L1 {result['chamfer_l1']:.5f}, F@0.5% {result['fscore@0.005']:.3f}, "
        f"F@1% {result['fscore@0.01']:.3f}, NC {result['normal_consistency']:.3f}, IoU {result['iou']}"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
