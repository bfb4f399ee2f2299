"""Marching cubes on the sparse grid only: block by block over the occupied voxels, then trimming.

The grid's voxels are grouped into blocks of `block` voxels per axis; for each block that holds
voxels, the field is sampled on the block's lattice (`upsample` samples per voxel edge) at the nodes
of its occupied voxels only, and scikit-image's marching cubes runs with a mask of those voxels.
Neighbouring blocks share their face planes: the vertices there are computed from the same values
at the same global lattice positions, so merging them exactly closes the seams. No array larger than
one block's lattice is allocated, whatever the depth.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from nfcore.kernel.grid import SparseGrid, decode, encode


def extract_sparse(
    fn: Callable[[torch.Tensor], torch.Tensor],
    grid: SparseGrid,
    *,
    block: int = 16,
    upsample: int = 1,
    level: float = 0.0,
    chunk_size: int = 1 << 20,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> trimesh.Trimesh:
    """The `level` set of `fn` inside the voxels of `grid`, as a mesh in cube coordinates.

    Args:
        fn: (M, 3) cube points -> (M,) values, negative inside (faces wind outward).
        block: voxels per block edge; upsample: lattice samples per voxel edge.
        progress: fraction of blocks done; should_stop: raises to cancel (called between blocks).
    Raises:
        ValueError: the field does not cross `level` in any voxel (an empty mesh is never returned).
    """
    dev = grid.device
    u = int(upsample)
    step = grid.h / u  # lattice spacing in cube units
    lat = block * u + 1  # lattice nodes per block edge
    vox = grid.voxels  # (V, 3)
    bkeys = encode(vox // block, (grid.resolution + block - 1) // block)
    order = torch.argsort(bkeys)
    bkeys, vox = bkeys[order], vox[order]
    blocks, counts = torch.unique_consecutive(bkeys, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    nb = (grid.resolution + block - 1) // block
    block_ijk = decode(blocks, nb).cpu().numpy()
    starts_np, counts_np = starts.cpu().numpy(), counts.cpu().numpy()
    vox_np = vox.cpu().numpy()
    sub = np.stack(np.meshgrid(*(np.arange(u + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)  # ((u+1)^3, 3)

    vertices, faces, offset = [], [], 0
    for bi in range(len(blocks)):
        if should_stop is not None and bi % 64 == 0:
            should_stop()
        origin = block_ijk[bi] * block  # first voxel of the block
        local = vox_np[starts_np[bi] : starts_np[bi] + counts_np[bi]] - origin  # (v, 3) voxels in the block
        # scikit-image visits the lattice cell spanning nodes i-1..i (per axis) where mask[i] is True,
        # so an occupied voxel's sub-cells are marked at their upper corner (checked in the tests).
        mask = np.zeros((lat, lat, lat), dtype=bool)
        for a in range(1, u + 1):
            for b in range(1, u + 1):
                for c in range(1, u + 1):
                    mask[local[:, 0] * u + a, local[:, 1] * u + b, local[:, 2] * u + c] = True
        # Lattice nodes touching an occupied voxel: each voxel's (u+1)^3 samples.
        nodes = (local[:, None, :] * u + sub[None]).reshape(-1, 3)  # (v (u+1)^3, 3) local lattice
        nodes = np.unique(nodes[:, 0] * lat * lat + nodes[:, 1] * lat + nodes[:, 2])
        ni = np.stack([nodes // (lat * lat), (nodes // lat) % lat, nodes % lat], -1)  # (k, 3)
        # Integer global lattice index times the step: a node has the same position in every block.
        gl = ni + origin * u  # (k, 3)
        x = torch.from_numpy(gl).to(dev).to(torch.float32) * step - 1.0
        values = np.concatenate([fn(x[s : s + chunk_size]).detach().float().cpu().numpy()
                                 for s in range(0, len(x), chunk_size)])
        if not np.isfinite(values).all():
            raise ValueError("the field has NaN or infinite values; cannot extract a surface")
        vol = np.full((lat, lat, lat), np.float32(level + 1.0), dtype=np.float32)  # unused nodes are masked out
        vol[ni[:, 0], ni[:, 1], ni[:, 2]] = values
        if progress is not None:
            progress((bi + 1) / len(blocks))
        if not (values.min() < level < values.max()):
            continue
        try:
            v, f, _, _ = marching_cubes(vol, level=level, gradient_direction="descent", allow_degenerate=False, mask=mask)
        except RuntimeError:  # values cross the level only across masked-out (unoccupied) voxels
            continue
        if len(f) == 0:
            continue
        vertices.append((v.astype(np.float64) + origin * u) * step - 1.0)
        faces.append(f.astype(np.int64) + offset)
        offset += len(v)
    if not faces:
        raise ValueError(f"no surface: the field does not cross level {level} in any voxel of the grid")
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    mesh.merge_vertices()  # vertices on shared block faces are bit-identical
    # A vertex on a lattice node (a value exactly at `level`) is made once per block that touches it:
    # merged, the faces there collapse, as one-block marching cubes (allow_degenerate=False) drops them.
    f = mesh.faces  # (F, 3)
    mesh.update_faces((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    mesh.remove_unreferenced_vertices()
    return mesh


def trim(mesh: trimesh.Trimesh, points: np.ndarray, distance: float) -> trimesh.Trimesh:
    """Drop faces whose centroid is farther than `distance` from every (N, 3) point (no data support).

    This is what keeps open scans open: the solve extends the surface a little past the data's
    boundary into the grid's margin, and those faces have no sample nearby.
    """
    d, _ = cKDTree(np.asarray(points, dtype=np.float64)).query(mesh.triangles_center, k=1, workers=-1)
    keep = d <= distance
    if keep.all():
        return mesh
    out = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces)[keep], process=False)
    out.remove_unreferenced_vertices()
    return out


__all__ = ["extract_sparse", "trim"]
