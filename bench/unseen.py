"""Closed test meshes that no setting was tuned on: procedural shapes for `bench.stress --meshes`.

The rules in `nfcore.adaptive` were measured on the shared scans (bunny, spot, armadillo, rocker arm); this
writes shapes of other kinds, so that the stress grid can check that the settings carry over:

- `torus_knot`: a (2, 3) torus knot as a tube of radius 0.09 (thin, curved, genus 1, close passes);
- `bumpy_sphere`: a sphere whose radius varies by +-8% with spherical-harmonic-like bumps (smooth detail
  at several scales);
- `superquadric` and `revolution`: the held-out instance 0 of `nfcore.meta.families` (flat faces and sharp
  rims; a lathe profile with a cap edge).

Each is the zero level of an implicit function, meshed by marching cubes at `--resolution` and scaled so that
its bounding box fits [-1, 1]. Writes <out>/<name>.ply (binary PLY).

    python -m bench.unseen --out /tmp/unseen
    python -m bench.stress --meshes /tmp/unseen --shapes torus_knot bumpy_sphere --grid quick ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

KNOT_TUBE_RADIUS = 0.09


def torus_knot(x: np.ndarray) -> np.ndarray:
    """Distance-like function (M,) of the (2, 3) torus-knot tube; x is (M, 3)."""
    t = np.linspace(0.0, 2.0 * np.pi, 4000, endpoint=False)
    r = 0.55 + 0.25 * np.cos(3.0 * t)
    curve = np.stack([r * np.cos(2.0 * t), r * np.sin(2.0 * t), 0.25 * np.sin(3.0 * t)], axis=1)  # (4000, 3)
    distance, _ = cKDTree(curve).query(x, workers=-1)  # the polyline's samples are ~1e-3 apart: exact enough
    return distance - KNOT_TUBE_RADIUS


def bumpy_sphere(x: np.ndarray) -> np.ndarray:
    """Radial distance-like function (M,) of a sphere of radius 0.7 with bumps of several frequencies."""
    rho = np.linalg.norm(x, axis=1)
    u = x / np.maximum(rho[:, None], 1e-9)  # (M, 3) directions
    bumps = (0.035 * np.sin(5 * u[:, 0]) * np.cos(4 * u[:, 1]) + 0.025 * np.sin(9 * u[:, 2] + 1.0)
             + 0.02 * np.cos(13 * u[:, 0] * u[:, 1]))
    return rho - 0.7 * (1.0 + bumps)


def family_function(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The implicit function of `nfcore.meta.families`' held-out instance 0 of `name`."""
    from nfcore.meta.families import FAMILIES, SPLITS

    seed, sampler = FAMILIES[name]
    g, _ = sampler(np.random.default_rng([seed, SPLITS["test"], 0]))
    return g


SHAPES: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    "torus_knot": lambda: torus_knot,
    "bumpy_sphere": lambda: bumpy_sphere,
    "superquadric": lambda: family_function("superquadrics"),
    "revolution": lambda: family_function("revolution"),
}


def mesh_of(g: Callable[[np.ndarray], np.ndarray], resolution: int) -> trimesh.Trimesh:
    """g's zero level meshed on [-1, 1]^3 (nfcore.meta.families.mesh_of), scaled so that its box fits [-1, 1]."""
    from nfcore.meta.families import mesh_of as marching_cubes_of

    mesh = marching_cubes_of(g, resolution)
    mesh.apply_scale(1.9 / float(np.max(mesh.extents)))
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--resolution", type=int, default=256)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.shapes:
        mesh = mesh_of(SHAPES[name](), args.resolution)
        if not mesh.is_watertight:
            print(f"{name}: the mesh is not watertight", file=sys.stderr)
            return 1
        mesh.export(args.out / f"{name}.ply")
        print(f"{name}: {len(mesh.faces)} faces, genus {1 - mesh.euler_number // 2}, area {mesh.area:.3f}, "
              f"-> {args.out / (name + '.ply')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
