"""Meta-training shapes: an oriented cloud (what adaptation sees) and optional ground-truth SDF samples.

Every shape is mapped into the training cube exactly as `fit` maps its input (`fit_similarity` of
the cloud), so a prior is learned in the frame it is used in. The inner loop fits the cloud with
the SDF task's loss; the outer loss regresses ground-truth SDF samples where the shape came from a
closed mesh (MetaSDF), else it scores the adapted field on the cloud again (level-set only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from nfcore.errors import InputError
from nfcore.io import read_mesh, read_point_cloud
from nfcore.io.meshes import sample_surface
from nfcore.normalize import Similarity, fit_similarity

MESH_SUFFIXES = (".obj", ".off", ".stl", ".glb", ".ply")
CLOUD_SUFFIXES = (".xyz", ".ply", ".npz", ".npy")


@dataclass
class MetaShape:
    """One meta-training shape in the training cube, on one device.

    Attributes:
        points: (N, 3) cloud positions in [-1, 1].
        normals: (N, 3) unit normals.
        sdf_points: (M, 3) query points, or None (no ground truth: cloud-only outer loss).
        sdf_values: (M,) signed distances at them, cube units (negative inside).
        name: where it came from.
    """

    points: torch.Tensor
    normals: torch.Tensor
    sdf_points: torch.Tensor | None = None
    sdf_values: torch.Tensor | None = None
    name: str = ""

    def to(self, device: torch.device | str) -> MetaShape:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return MetaShape(move(self.points), move(self.normals), move(self.sdf_points), move(self.sdf_values), self.name)


def noisy_cloud(
    mesh: trimesh.Trimesh, n_points: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A sparse noisy oriented scan of `mesh`: (n, 3) positions moved by N(0, (noise * longest side)^2), clean normals."""
    points, normals = sample_surface(mesh, n_points, seed=int(rng.integers(2**31)))
    extent = float(np.ptp(mesh.vertices, axis=0).max())
    points = points + rng.normal(0.0, noise * extent, points.shape).astype(np.float32)
    return points.astype(np.float32), normals.astype(np.float32)


def sdf_samples(
    mesh: trimesh.Trimesh,
    inside: Callable[[np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator,
    *,
    near_sigma: float = 0.02,
    dense: int = 200_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth SDF samples around `mesh`: half near the surface, half uniform in its padded bounding box.

    |SDF| is the distance to `dense` area-weighted surface samples (exact up to their spacing,
    about 1e-3 of the size at 200k), the sign comes from `inside` (True inside).
    Returns (n, 3) points and (n,) signed distances, in the mesh's frame.
    """
    surface, _ = sample_surface(mesh, dense, seed=int(rng.integers(2**31)))
    lo, hi = mesh.bounds
    extent = float((hi - lo).max())
    n_near = n // 2
    near = surface[rng.integers(0, len(surface), n_near)] + rng.normal(0, near_sigma * extent, (n_near, 3))
    pad = 0.1 * extent
    uniform = rng.uniform(lo - pad, hi + pad, (n - n_near, 3))
    q = np.concatenate([near, uniform]).astype(np.float32)
    dist, _ = cKDTree(surface).query(q, k=1, workers=-1)
    sign = np.where(inside(q), -1.0, 1.0)
    return q, (sign * dist).astype(np.float32)


def shape_from_mesh(
    mesh: trimesh.Trimesh,
    rng: np.random.Generator,
    *,
    n_points: int = 3000,
    noise: float = 0.005,
    n_sdf: int = 50_000,
    inside: Callable[[np.ndarray], np.ndarray] | None = None,
    margin: float = 0.1,
    name: str = "",
) -> tuple[MetaShape, Similarity]:
    """A MetaShape from a closed mesh: a sparse noisy scan plus SDF samples, mapped into the cube by the scan's frame.

    Args:
        inside: (M, 3) -> (M,) bool inside test in the mesh's frame; None = ray parity on the mesh
            (Open3D; the mesh must be closed). Meshes that are not closed give a cloud-only shape.
    """
    points, normals = noisy_cloud(mesh, n_points, noise, rng)
    sim = fit_similarity(points, margin=margin)
    q = d = None
    if inside is None and mesh.is_watertight:
        from nfcore.metrics import has_inside_test, inside_mesh

        if has_inside_test():
            inside = lambda p: inside_mesh(mesh, p)  # noqa: E731
    if inside is not None:
        q, d = sdf_samples(mesh, inside, n_sdf, rng)
        q, d = sim.to_unit(q).astype(np.float32), (d * sim.scale).astype(np.float32)
    shape = MetaShape(
        torch.as_tensor(sim.to_unit(points).astype(np.float32)),
        torch.as_tensor(normals),
        None if q is None else torch.as_tensor(q),
        None if d is None else torch.as_tensor(d),
        name,
    )
    return shape, sim


def _expand(sources: Sequence[str | Path]) -> list[Path]:
    """Files named, files in named directories (sorted), and the lines of named .txt/.lst lists."""
    out: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            out += sorted(p for p in src.iterdir() if p.suffix.lower() in MESH_SUFFIXES + CLOUD_SUFFIXES)
        elif src.suffix.lower() in (".txt", ".lst"):
            lines = [ln.strip() for ln in src.read_text().splitlines()]
            out += [(src.parent / ln) for ln in lines if ln and not ln.startswith("#")]
        elif src.exists():
            out.append(src)
        else:
            raise InputError(f"meta-training input not found: {src}")
    return out


def load_shapes(
    sources: Sequence[str | Path],
    *,
    seed: int = 0,
    n_points: int = 3000,
    noise: float = 0.005,
    n_sdf: int = 50_000,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[MetaShape]:
    """Shapes from files: meshes (a noisy scan + SDF samples when closed) and oriented clouds (as they are).

    Args:
        sources: files, directories of files, or .txt lists of paths (one a line, relative to the list).
        n_points, noise: the scan drawn from each mesh (noise: std as a fraction of the longest side).
        progress: `progress(i, n, name)` after each file.
    Raises:
        InputError: a file cannot be read, or fewer than 2 shapes were found.
    """
    paths = _expand(sources)
    if len(paths) < 2:
        raise InputError(f"meta-training needs at least 2 shapes, found {len(paths)} in {', '.join(map(str, sources))}")
    rng = np.random.default_rng(seed)
    shapes = []
    for i, path in enumerate(paths):
        mesh = None
        if path.suffix.lower() in MESH_SUFFIXES:
            try:
                candidate = read_mesh(path)
                mesh = candidate if len(candidate.faces) else None
            except InputError:
                if path.suffix.lower() not in CLOUD_SUFFIXES:
                    raise
        if mesh is not None:
            shape, _ = shape_from_mesh(mesh, rng, n_points=n_points, noise=noise, n_sdf=n_sdf, name=path.name)
        else:
            cloud = read_point_cloud(path, seed=seed)
            sim = fit_similarity(cloud.points)
            shape = MetaShape(torch.as_tensor(sim.to_unit(cloud.points).astype(np.float32)),
                              torch.as_tensor(cloud.normals), name=path.name)
        shapes.append(shape)
        if progress is not None:
            progress(i + 1, len(paths), path.name)
    return shapes
