"""A room-sized test scene: shared meshes scaled to object sizes and placed on a floor slab, and clouds sampled from it.

    python -m bench.scene -n 10000000 -o /tmp/scene          # writes scene_10000000.npy (N, 6) and scene_gt.ply

The floor is a thin closed box (`floor_size` metres wide and deep, `thickness` high, top face at z = 0);
each object is one of the shared meshes (`bench.kernel.DATA / "meshes"`), scaled so that its longest side
is drawn from `object_size`, turned about the vertical axis by a random angle and set down on the floor
(lowest vertex at z = 0) where its footprint (the axis-aligned xy box after the turn, grown by `gap`)
overlaps no other object's and stays on the floor. Everything is seeded. The ground truth is the
concatenation of the parts (objects touch the floor but are not merged with it: points are sampled
from the union of the surfaces, which is what a scanner sees apart from the hidden contact patches).
Clouds are sampled area-weighted over the whole scene with face normals, `chunk` points at a time into
one preallocated (N, 6) float32 array, so generating 10M points needs about 1 GiB on top of the result.
Data is written where the caller says (a temporary directory), never into the repo.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import trimesh

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENE_SHAPES = ("bunny", "spot", "armadillo", "rocker_arm")
"""The closed shared meshes (the open `mountain` patch is not an object one puts on a floor)."""
UP_AXIS = {"bunny": 1, "spot": 1, "armadillo": 1}
"""Meshes modelled y-up (the scene is z-up); others are taken as they are."""


@dataclasses.dataclass
class PlacedObject:
    name: str
    footprint: np.ndarray
    """(2, 2) xy box [[xmin, ymin], [xmax, ymax]] in metres, without the gap."""
    size: float
    """Longest side in metres."""


@dataclasses.dataclass
class Scene:
    mesh: trimesh.Trimesh
    """Floor slab and objects concatenated (metres, z up)."""
    objects: list[PlacedObject]
    floor: np.ndarray
    """(2, 3) bounds of the floor slab."""


def build_scene(
    meshes: dict[str, trimesh.Trimesh],
    *,
    n_objects: int = 8,
    floor_size: tuple[float, float] = (4.0, 3.0),
    thickness: float = 0.08,
    object_size: tuple[float, float] = (0.35, 0.9),
    gap: float = 0.1,
    seed: int = 0,
    max_tries: int = 10_000,
) -> Scene:
    """Place `n_objects` copies of `meshes` (cycled in name order) on a floor slab without overlaps.

    Args:
        meshes: name -> closed mesh in any frame and scale (stood up by `UP_AXIS`, else z is up).
        floor_size: floor width and depth (x, y) in metres; thickness: slab height (its top is z = 0).
        object_size: range of each object's longest side in metres (uniform).
        gap: free space between footprints, metres.
    Raises:
        ValueError: the objects do not fit (no free spot found in `max_tries` draws).
    """
    rng = np.random.default_rng(seed)
    half = np.asarray(floor_size, dtype=np.float64) / 2.0
    floor = trimesh.creation.box(extents=(floor_size[0], floor_size[1], thickness))
    floor.apply_translation((0.0, 0.0, -thickness / 2.0))
    parts, placed = [floor], []
    names = sorted(meshes)
    for i in range(n_objects):
        name = names[i % len(names)]
        obj = meshes[name].copy()
        size = float(rng.uniform(*object_size))
        if UP_AXIS.get(name) == 1:  # y up -> z up
            obj.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1, 0, 0)))
        obj.apply_translation(-obj.bounds.mean(axis=0))
        obj.apply_scale(size / float(obj.extents.max()))
        obj.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * math.pi), (0, 0, 1)))
        lo, hi = obj.bounds[0, :2], obj.bounds[1, :2]  # (2,) footprint around the origin
        low, high = -half - lo + gap, half - hi - gap  # (2,) centres that keep the footprint (and gap) on the floor
        for _ in range(max_tries if np.all(low <= high) else 0):
            centre = rng.uniform(low, high)
            box = np.stack([lo + centre, hi + centre])  # (2, 2)
            if all(not _boxes_overlap(box, other.footprint, gap) for other in placed):
                break
        else:
            raise ValueError(f"object {i} ({name}, {size:.2f} m) does not fit on a {floor_size} m floor")
        obj.apply_translation((centre[0], centre[1], -obj.bounds[0, 2]))  # lowest vertex on the floor
        parts.append(obj)
        placed.append(PlacedObject(name=name, footprint=box, size=size))
    mesh = trimesh.util.concatenate(parts)
    return Scene(mesh=mesh, objects=placed, floor=floor.bounds.copy())


def _boxes_overlap(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Whether (2, 2) xy boxes `a` and `b` come closer than `gap`."""
    return bool(np.all(a[0] < b[1] + gap) and np.all(b[0] < a[1] + gap))


def sample_scene(
    mesh: trimesh.Trimesh, n: int, *, seed: int = 0, noise: float = 0.0, chunk: int = 2_000_000
) -> np.ndarray:
    """(n, 6) float32 points and unit face normals, area-weighted over `mesh`, `chunk` points at a time.

    Args:
        noise: std of Gaussian position noise in the mesh's units (0 = exact samples).
    """
    out = np.empty((n, 6), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pts, faces = trimesh.sample.sample_surface(mesh, m, seed=int(rng.integers(2**31)))
        if noise > 0:
            pts = pts + rng.normal(scale=noise, size=pts.shape)
        out[start : start + m, :3] = pts
        out[start : start + m, 3:] = mesh.face_normals[faces]
    return out


def load_shared_meshes(names: tuple[str, ...] = SCENE_SHAPES, data: Path = DATA) -> dict[str, trimesh.Trimesh]:
    """The shared meshes by name (read-only files under `data / "meshes"`)."""
    from nfcore.io import read_mesh

    return {name: read_mesh(data / "meshes" / f"{name}.ply") for name in names}


def write_scene(n: int, out_dir: Path, *, seed: int = 0, noise: float = 0.0, n_objects: int = 8) -> tuple[Path, Path, Scene]:
    """The scene's cloud as `out_dir/scene_<n>.npy` (n, 6) and its ground truth as `out_dir/scene_gt.ply`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = build_scene(load_shared_meshes(), n_objects=n_objects, seed=seed)
    gt = out_dir / "scene_gt.ply"
    scene.mesh.export(gt)
    cloud = out_dir / f"scene_{n}.npy"
    np.save(cloud, sample_scene(scene.mesh, n, seed=seed, noise=noise))
    return cloud, gt, scene


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.scene", description=__doc__.splitlines()[0])
    p.add_argument("-n", "--points", type=int, default=10_000_000)
    p.add_argument("-o", "--out", required=True, help="directory outside the repo")
    p.add_argument("--objects", type=int, default=8)
    p.add_argument("--noise", type=float, default=0.0, help="position noise std, metres")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cloud, gt, scene = write_scene(args.points, Path(args.out), seed=args.seed, noise=args.noise, n_objects=args.objects)
    for o in scene.objects:
        print(f"{o.name:12s} {o.size:.2f} m at x {o.footprint[:, 0].round(2)} y {o.footprint[:, 1].round(2)}")
    print(f"wrote {cloud} and {gt} ({len(scene.mesh.faces)} faces, area {scene.mesh.area:.2f} m^2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
