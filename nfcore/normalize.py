"""The similarity transform between an input's own frame and the training cube [-1, 1]^3."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from nfcore.errors import InputError


@dataclass(frozen=True)
class Similarity:
    """Uniform scale about a centre: to_unit(p) = (p - center) * scale, from_unit(q) = q / scale + center.

    Uniform scaling keeps normals' directions and distances proportional, so a surface fitted in
    the cube maps back to the input's coordinates exactly.
    """

    center: np.ndarray
    """(3,) float64 centre of the input's bounding box, in input units."""
    scale: float
    """Cube units per input unit (> 0)."""

    def __post_init__(self) -> None:
        center = np.asarray(self.center, dtype=np.float64).reshape(-1)
        if center.shape != (3,) or not np.isfinite(center).all():
            raise InputError(f"similarity center must be 3 finite numbers, got {self.center!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InputError(f"similarity scale must be a positive finite number, got {self.scale!r}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "scale", float(self.scale))

    def to_unit(self, p):
        """Input frame -> cube: (..., 3) numpy array or tensor (same type and dtype back)."""
        if isinstance(p, torch.Tensor):
            return (p - torch.as_tensor(self.center, dtype=p.dtype, device=p.device)) * self.scale
        p = np.asarray(p)
        return ((p - self.center) * self.scale).astype(p.dtype if p.dtype.kind == "f" else np.float64, copy=False)

    def from_unit(self, q):
        """Cube -> input frame: (..., 3) numpy array or tensor (same type and dtype back)."""
        if isinstance(q, torch.Tensor):
            return q / self.scale + torch.as_tensor(self.center, dtype=q.dtype, device=q.device)
        q = np.asarray(q)
        return (q / self.scale + self.center).astype(q.dtype if q.dtype.kind == "f" else np.float64, copy=False)

    def apply_to_mesh(self, mesh: trimesh.Trimesh, *, inverse: bool = True) -> trimesh.Trimesh:
        """A copy of `mesh` mapped cube -> input frame (inverse=True, the default) or input -> cube.

        Vertex normals are kept (field normals too: a uniform positive scale does not turn them).
        """
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        mapped = self.from_unit(vertices) if inverse else self.to_unit(vertices)
        normals = np.array(mesh.vertex_normals) if len(mesh.faces) else None
        return trimesh.Trimesh(vertices=mapped, faces=mesh.faces.copy(), vertex_normals=normals, process=False)

    def to_dict(self) -> dict:
        """JSON-safe form: {"center": [x, y, z], "scale": s}."""
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, data: dict) -> Similarity:
        """Inverse of `to_dict`; raises InputError on missing or bad fields."""
        try:
            return cls(center=np.asarray(data["center"], dtype=np.float64), scale=float(data["scale"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad similarity record {data!r}: {exc}") from exc

    @classmethod
    def identity(cls) -> Similarity:
        """The transform that leaves points unchanged."""
        return cls(center=np.zeros(3), scale=1.0)


def fit_similarity(points: np.ndarray, margin: float = 0.1) -> Similarity:
    """Bounding-box centre to the origin, longest side to 2 (1 - margin), i.e. into [-1 + margin, 1 - margin].

    Args:
        points: (N, 3) input-frame positions.
        margin: fraction of the half-cube kept free around the object, in [0, 1).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"points must have shape (N, 3) with N > 0, got {points.shape}")
    if not 0 <= margin < 1:
        raise InputError(f"margin must be in [0, 1), got {margin}")
    if not np.isfinite(points).all():
        raise InputError("points contain NaN or infinite coordinates")
    lo, hi = points.min(axis=0), points.max(axis=0)
    longest = float((hi - lo).max())
    if not longest > 0:
        raise InputError("all points are identical: the bounding box has no extent")
    return Similarity(center=(lo + hi) / 2, scale=2.0 * (1.0 - margin) / longest)
