"""A sparse voxel grid over the cube [-1, 1]^3: only the voxels near the data, looked up by hashed keys.

Level `depth` splits the cube into R = 2^depth voxels per axis (voxel size h = 2 / R). A grid holds
a sorted set of voxel keys and the sorted keys of their corner nodes; a lookup is a binary search
(`torch.searchsorted`), so the same code runs on CPU and CUDA and memory grows with the occupied
voxels, never with R^3. Written by hand because no installed library offers a sparse voxel set in
PyTorch (Open3D's VoxelBlockGrid is CPU/CUDA-specific C++ and stores TSDF blocks, not basis supports).
"""

from __future__ import annotations

import torch

MAX_DEPTH = 20
"""Node keys (R + 1)^3 must fit in int64: 2^20 per axis is far beyond any grid we build."""

CORNERS = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.int64)  # (8, 3)


def encode(ijk: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3) int64 indices in [0, size) -> (...,) int64 keys (x-major)."""
    return (ijk[..., 0] * size + ijk[..., 1]) * size + ijk[..., 2]


def decode(keys: torch.Tensor, size: int) -> torch.Tensor:
    """(K,) int64 keys -> (K, 3) int64 indices."""
    return torch.stack([keys // (size * size), (keys // size) % size, keys % size], dim=-1)


def lookup(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Positions of `keys` (any shape) in `sorted_keys` (K,), -1 where absent."""
    if sorted_keys.numel() == 0:
        return torch.full_like(keys, -1)
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    return torch.where(sorted_keys[pos] == keys, pos, torch.full_like(pos, -1))


def dilate(voxels: torch.Tensor, radius: int, resolution: int) -> torch.Tensor:
    """(V, 3) unique voxel indices grown by `radius` voxels (a cube neighbourhood), clipped to the grid.

    Separable (one axis at a time, deduplicating between passes), so the work is about
    3 (2 radius + 1) V instead of (2 radius + 1)^3 V.
    """
    if radius <= 0:
        return voxels
    offsets = torch.arange(-radius, radius + 1, device=voxels.device)  # (2r+1,)
    for axis in range(3):
        grown = voxels.unsqueeze(0).repeat(len(offsets), 1, 1)  # (2r+1, V, 3)
        grown[..., axis] += offsets[:, None]
        grown = grown.reshape(-1, 3)
        inside = (grown[:, axis] >= 0) & (grown[:, axis] < resolution)
        voxels = decode(torch.unique(encode(grown[inside], resolution)), resolution)
    return voxels


class SparseGrid:
    """Voxels of one level and their corner nodes (the supports of a trilinear basis).

    Args:
        depth: level; R = 2^depth voxels per axis over [-1, 1].
        voxels: (V, 3) int64 voxel indices in [0, R) (any order, duplicates allowed).
    """

    def __init__(self, depth: int, voxels: torch.Tensor):
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in 1..{MAX_DEPTH}, got {depth}")
        self.depth = int(depth)
        self.resolution = 1 << self.depth
        self.h = 2.0 / self.resolution  # voxel size in cube units
        self.device = voxels.device
        r = self.resolution
        self.voxel_keys = torch.unique(encode(voxels, r))  # (V,) sorted
        self.voxels = decode(self.voxel_keys, r)  # (V, 3)
        corners = self.voxels[:, None, :] + CORNERS.to(self.device)  # (V, 8, 3)
        self.node_keys = torch.unique(encode(corners.reshape(-1, 3), r + 1))  # (M,) sorted
        self.nodes = decode(self.node_keys, r + 1)  # (M, 3) in [0, R]
        # Each voxel's 8 corner nodes, found once: a point then costs one voxel lookup, not 8 node lookups.
        self.voxel_corners = lookup(self.node_keys, encode(corners, r + 1))  # (V, 8)

    @classmethod
    def around(cls, points: torch.Tensor, depth: int, radius: int) -> SparseGrid:
        """The voxels within `radius` voxels (cube neighbourhood) of any of the (N, 3) cube `points`."""
        r = 1 << depth
        ijk = voxel_of(points, depth)
        occupied = decode(torch.unique(encode(ijk, r)), r)
        return cls(depth, dilate(occupied, radius, r))

    @property
    def n_voxels(self) -> int:
        return int(self.voxel_keys.numel())

    @property
    def n_nodes(self) -> int:
        return int(self.node_keys.numel())

    def node_index(self, ijk: torch.Tensor) -> torch.Tensor:
        """(..., 3) node indices -> (...,) positions in `nodes`, -1 where the node is not in the grid
        (or outside [0, R])."""
        r = self.resolution
        valid = ((ijk >= 0) & (ijk <= r)).all(dim=-1)
        keys = encode(ijk.clamp(0, r), r + 1)
        return torch.where(valid, lookup(self.node_keys, keys), torch.full_like(keys, -1))

    def corner_nodes(self, cells: torch.Tensor) -> torch.Tensor:
        """(P, 3) voxel indices -> (P, 8) positions of their corners in `nodes` (-1 where absent).

        A voxel outside the grid may still have corners in it (a point on the upper face of a grid
        voxel falls into the next voxel): those are looked up one by one.
        """
        r = self.resolution
        v = lookup(self.voxel_keys, encode(cells, r))  # (P,)
        idx = self.voxel_corners[v.clamp(min=0)]  # (P, 8)
        outside = v < 0
        if bool(outside.any()):
            idx[outside] = self.node_index(cells[outside][:, None, :] + CORNERS.to(cells.device))
        return idx

    def voxel_index(self, ijk: torch.Tensor) -> torch.Tensor:
        """(..., 3) voxel indices in [0, R) -> (...,) positions in `voxels`, -1 where the voxel is not in the grid."""
        return lookup(self.voxel_keys, encode(ijk, self.resolution))

    def has_voxel(self, ijk: torch.Tensor) -> torch.Tensor:
        """(..., 3) voxel indices -> (...,) bool."""
        r = self.resolution
        valid = ((ijk >= 0) & (ijk < r)).all(dim=-1)
        return valid & (lookup(self.voxel_keys, encode(ijk.clamp(0, r - 1), r)) >= 0)

    def node_positions(self) -> torch.Tensor:
        """(M, 3) float32 cube coordinates of the nodes."""
        return self.nodes.to(torch.float32) * self.h - 1.0


def voxel_of(points: torch.Tensor, depth: int) -> torch.Tensor:
    """(N, 3) cube points -> (N, 3) int64 index of the voxel containing each (clipped to the grid)."""
    r = 1 << depth
    return torch.floor((points + 1.0) * (r / 2.0)).to(torch.int64).clamp_(0, r - 1)


__all__ = ["SparseGrid", "voxel_of", "dilate", "encode", "decode", "lookup", "CORNERS"]
