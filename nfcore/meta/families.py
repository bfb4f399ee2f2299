"""Generated shape families for meta-learning tests and the benchmark (no shape collection is offline).

A family is an implicit solid g(x; theta) < 0 with random parameters theta. Instance i of a split
("train" or "test") draws theta from `numpy.random.default_rng([family seed, split, i])`, so the
splits never share an instance and every instance is reproducible by (family, split, index).
The ground-truth mesh is marching cubes of g on a 128^3 grid over [-1, 1]^3 (closed: the solid lies
inside the grid), the inside test for SDF samples is g < 0 itself.

- `superquadrics`: |x/a|^(2/e2) + |y/b|^(2/e2))^(e2/e1) + |z/c|^(2/e1) <= 1 with half-axes a, b, c
  ~ U(0.35, 0.85) and exponents e1, e2 ~ U(0.3, 1.6) (boxy below 1, ellipsoid at 1, pinched above),
  turned by a random angle about z.
- `revolution`: solids of revolution about z (vases, bottles): radius r(t) = r0 + sum_k c_k sin(k pi t + phi_k)
  over the height t in [-1, 1] (r0 ~ U(0.3, 0.5), c_k ~ U(-0.12, 0.12) / k, k = 1..3, clamped to
  >= 0.08), half-height h ~ U(0.55, 0.85), flat caps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from nfcore.errors import InputError

SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Instance:
    """One generated solid: its closed mesh and inside test, in the generator's frame."""

    family: str
    split: str
    index: int
    params: dict
    mesh: trimesh.Trimesh
    inside: Callable[[np.ndarray], np.ndarray]  # (M, 3) -> (M,) bool


def _superquadric(rng: np.random.Generator):
    a, b, c = rng.uniform(0.35, 0.85, 3)
    e1, e2 = rng.uniform(0.3, 1.6, 2)
    angle = rng.uniform(0, np.pi / 2)
    cos, sin = np.cos(angle), np.sin(angle)

    def g(x: np.ndarray) -> np.ndarray:  # (M, 3) -> (M,)
        u = cos * x[:, 0] + sin * x[:, 1]
        v = -sin * x[:, 0] + cos * x[:, 1]
        xy = np.abs(u / a) ** (2 / e2) + np.abs(v / b) ** (2 / e2)
        f = xy ** (e2 / e1) + np.abs(x[:, 2] / c) ** (2 / e1)
        return f ** (e1 / 2) - 1.0  # the outer power makes g closer to a distance near the surface

    return g, {"a": a, "b": b, "c": c, "e1": e1, "e2": e2, "angle": angle}


def _revolution(rng: np.random.Generator):
    r0 = rng.uniform(0.3, 0.5)
    k = np.arange(1, 4)
    coef = rng.uniform(-0.12, 0.12, 3) / k
    phase = rng.uniform(0, 2 * np.pi, 3)
    h = rng.uniform(0.55, 0.85)

    def radius(t: np.ndarray) -> np.ndarray:
        return np.maximum(r0 + (coef * np.sin(k * np.pi * t[:, None] + phase)).sum(axis=1), 0.08)

    def g(x: np.ndarray) -> np.ndarray:
        rho = np.hypot(x[:, 0], x[:, 1])
        t = np.clip(x[:, 2] / h, -1, 1)
        return np.maximum(rho - radius(t), np.abs(x[:, 2]) - h)

    return g, {"r0": r0, "coef": coef.tolist(), "phase": phase.tolist(), "h": h}


FAMILIES: dict[str, tuple[int, Callable]] = {"superquadrics": (1301, _superquadric), "revolution": (1302, _revolution)}
"""name -> (family seed, parameter sampler returning (g, params))."""


def mesh_of(g: Callable[[np.ndarray], np.ndarray], resolution: int) -> trimesh.Trimesh:
    """Marching cubes of g's zero level (negative inside) on a resolution^3 grid over [-1, 1]^3."""
    axis = np.linspace(-1.0, 1.0, resolution, dtype=np.float64)
    values = np.empty((resolution,) * 3)
    for i in range(resolution):  # a slab at a time: the whole grid's points at once take gigabytes at 256^3
        slab = np.stack(np.meshgrid(axis[i:i + 1], axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
        values[i] = g(slab).reshape(resolution, resolution)
    verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=(axis[1] - axis[0],) * 3)
    # skimage orders the triangles of a "negative inside" volume outward already (positive volume).
    return trimesh.Trimesh(verts - 1.0, faces, process=True)


def instance(family: str, split: str, index: int, *, resolution: int = 128) -> Instance:
    """Instance `index` of `family`'s `split`."""
    if family not in FAMILIES:
        raise InputError(f"unknown shape family {family!r}; known: {', '.join(FAMILIES)}")
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    seed, sampler = FAMILIES[family]
    g, params = sampler(np.random.default_rng([seed, SPLITS[split], index]))
    return Instance(family, split, index, params, mesh_of(g, resolution), lambda p: g(np.asarray(p, np.float64)) < 0)


def family_shapes(family: str, split: str, count: int, *, seed: int = 0, n_points: int = 3000, noise: float = 0.005,
                  n_sdf: int = 50_000, start: int = 0):
    """`count` MetaShapes of a family split (noisy scans + SDF samples), with their instances.

    Returns [(MetaShape, Similarity, Instance)]: the similarity maps the instance's frame into the cube.
    """
    from nfcore.meta.data import shape_from_mesh

    out = []
    for i in range(start, start + count):
        inst = instance(family, split, i)
        rng = np.random.default_rng([seed, SPLITS[split], i])
        shape, sim = shape_from_mesh(inst.mesh, rng, n_points=n_points, noise=noise, n_sdf=n_sdf,
                                     inside=inst.inside, name=f"{family}-{split}-{i}")
        out.append((shape, sim, inst))
    return out
