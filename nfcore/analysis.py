"""What a point cloud looks like before anything is fitted to it: size, extent, spacing, noise, shape.

`analyze_cloud(points, normals=None) -> CloudAnalysis` measures, from k-nearest-neighbour queries,
the figures that methods size themselves by (the kernel method picks its voxel size from the
spacing and its smoothing from the noise), and `CloudAnalysis.degenerate_reason()` says why a
cloud cannot bound a surface (a handful of points, zero extent, collinear, coplanar).

Definitions (all in the cloud's own units):
- `nn_distance`: median distance from a point to its nearest neighbour;
- `spacing`: sqrt(surface area per point), from the k-NN density: k points lie within the k-th
  neighbour distance r_k, on about pi r_k^2 of surface, so spacing = r_k sqrt(pi / k) (median over
  points). A regular grid of step s has spacing s; a uniform random cloud has sqrt(area / N);
- `noise`: the median RMS distance of a point's neighbourhood to its best-fitting plane (smallest
  PCA eigenvalue), corrected for the degrees of freedom the plane fit takes. On a clean smooth
  surface it measures curvature over the neighbourhood, which is small next to the spacing;
- `boundary_fraction`: the fraction of measured points whose neighbourhood is one-sided: the centroid
  of their k neighbours, projected onto the tangent plane, lies more than `BOUNDARY_OFFSET` times the
  neighbourhood radius away (a half disc puts it at 4/(3 pi) = 0.42; inside a uniformly sampled
  surface it stays near 0). Random gaps and thin parts give a few such points on closed shapes too,
  in proportion to N, while a boundary gives about sqrt(N) of them (a curve's worth), so `closed` is
  `boundary_fraction * sqrt(n_queries) < OPEN_SCORE` (calibrated on spheres, tori and hemispheres of
  3k-100k points with noise up to half the spacing: closed shapes score below 0.1, open ones above
  1.4; but detailed closed scans with thin parts reach 0.9-1.3 (the 10k-point armadillo reads as
  open) and open scans with noise near the spacing fall to 1.0, so the guess can fail on either
  side of that band: trimming, which uses it, removes only large unsupported regions for that reason);
- `outlier_fraction` (nfcore.outliers) and `normals` (nfcore.normals: agreement of given normals with
  local PCA normals and the fraction pointing against their neighbourhood) where those apply.

Queries run on at most `max_queries` points (chosen with an explicit generator) against a k-d tree
of the whole cloud, so the cost stays about linear in N (the tree) for clouds of millions of points.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.spatial import cKDTree

from nfcore.errors import InputError

MIN_POINTS = 10
"""Fewer points than this cannot describe a surface (a handful of points is an error)."""
FLAT_RATIO = 1e-6
"""A principal extent below this fraction of the largest counts as zero (collinear or coplanar)."""
BOUNDARY_K = 32
"""Neighbours of the one-sided-neighbourhood test (more than for spacing: the centroid must be stable)."""
BOUNDARY_OFFSET = 0.35
"""Tangential centroid offset, in neighbourhood radii, above which a point counts as on a boundary."""
OPEN_SCORE = 1.0
"""`boundary_fraction * sqrt(n_queries)` above this reads as an open surface (see the module docstring)."""


class NormalCheck(BaseModel):
    """Agreement of a cloud's given normals with its local geometry (nfcore.normals)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agreement: float
    """Median |cos| between given normals and local PCA normals (1 = they agree everywhere)."""
    flipped_fraction: float
    """Fraction of normals pointing against the consistent orientation of their neighbourhood."""
    reliable: bool
    """Whether the normals can be used as given (otherwise they are re-estimated where they disagree)."""


class CloudAnalysis(BaseModel):
    """Figures of one point cloud (lengths in the cloud's units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_points: int
    has_normals: bool
    bbox_min: list[float]
    bbox_max: list[float]
    extent: float
    """Longest side of the axis-aligned bounding box."""
    diagonal: float
    """Length of the bounding-box diagonal."""
    principal_extents: list[float]
    """Standard deviations of the points along their three principal axes, largest first."""
    nn_distance: float
    """Median distance to the nearest neighbour."""
    spacing: float
    """sqrt(surface area per point), from the k-NN density (median)."""
    noise: float
    """Estimated standard deviation of the positions across the surface (median over neighbourhoods)."""
    k_neighbors: int
    """Neighbourhood size the figures were measured with."""
    n_queries: int
    """Points the neighbourhood figures were measured at."""
    boundary_fraction: float = 0.0
    """Fraction of measured points on a boundary of the sampled surface (one-sided neighbourhood)."""
    closed: bool = True
    """Whether the samples look like a closed surface (no boundary curve found); a guess, see the module."""
    outlier_fraction: float | None = None
    """Estimated fraction of points far off the surface (nfcore.outliers); None when not measured."""
    normals: NormalCheck | None = None
    """How far given normals can be trusted; None when the cloud has none or they were not checked."""

    @property
    def noise_ratio(self) -> float:
        """Noise over spacing: about 0 for clean scans, 0.5 for the shared sparse-noisy clouds."""
        return self.noise / self.spacing if self.spacing > 0 else 0.0

    def degenerate_reason(self) -> str | None:
        """Why no surface can be reconstructed from this cloud, or None when it spans 3D."""
        if self.n_points < MIN_POINTS:
            return f"the point cloud has {self.n_points} points; a surface needs at least {MIN_POINTS}"
        if not self.extent > 0:
            return "the point cloud has zero extent (all points coincide)"
        s = self.principal_extents
        if s[1] <= FLAT_RATIO * s[0]:
            return (f"the points are collinear (principal extents {s[0]:.3g}, {s[1]:.3g}, {s[2]:.3g}); "
                    "a surface needs points spread in three dimensions")
        if s[2] <= FLAT_RATIO * s[0]:
            return (f"the points are coplanar (principal extents {s[0]:.3g}, {s[1]:.3g}, {s[2]:.3g}); "
                    "a surface needs points spread in three dimensions")
        return None

    def require_surface(self) -> None:
        """Raise InputError naming the problem when `degenerate_reason()` finds one."""
        reason = self.degenerate_reason()
        if reason is not None:
            raise InputError(reason)


def analyze_cloud(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    *,
    k: int = 16,
    max_queries: int = 20_000,
    rng: np.random.Generator | None = None,
) -> CloudAnalysis:
    """Measure extent, spacing and noise of an (N, 3) cloud (see the module docstring).

    Args:
        points: (N, 3) positions. normals: optional (N, 3) (only recorded for now).
        k: neighbours per query for spacing and noise (fewer when the cloud is smaller).
        max_queries: neighbourhoods measured at most; rng picks them (default: seed 0).
    Raises:
        InputError: the array is not (N, 3), is empty, or holds NaN/inf.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must be an (N, 3) array, got shape {pts.shape}")
    n = len(pts)
    if n == 0:
        raise InputError("the point cloud is empty")
    if not np.isfinite(pts).all():
        raise InputError("the point cloud holds NaN or infinite coordinates")
    if normals is not None and np.asarray(normals).shape != pts.shape:
        raise InputError(f"normals must match points {pts.shape}, got {np.asarray(normals).shape}")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centered = pts - pts.mean(axis=0)
    cov = centered.T @ centered / n  # (3, 3)
    principal = np.sqrt(np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None))  # (3,) largest first

    k_eff = int(min(k, n - 1))
    nn = spacing = noise = boundary = 0.0
    n_queries = 0
    if k_eff >= 1:
        rng = rng if rng is not None else np.random.default_rng(0)
        queries = pts if n <= max_queries else pts[rng.choice(n, size=max_queries, replace=False)]
        n_queries = len(queries)
        k_query = int(min(max(k_eff, BOUNDARY_K), n - 1))
        tree = cKDTree(pts)
        dist, idx = tree.query(queries, k=k_query + 1, workers=-1)  # (Q, k+1): the point itself first
        dist, idx = dist[:, 1:], idx[:, 1:]
        nn = float(np.median(dist[:, 0]))
        spacing = float(np.median(dist[:, k_eff - 1]) * math.sqrt(math.pi / k_eff))
        if k_eff >= 4:
            near = pts[idx[:, :k_eff]]  # (Q, k, 3)
            nbhd = near - near.mean(axis=1, keepdims=True)
            ev = np.linalg.eigvalsh(np.einsum("qki,qkj->qij", nbhd, nbhd) / k_eff)  # (Q, 3) ascending
            # The plane fit takes 3 degrees of freedom from k points: E[smallest eigenvalue] is about
            # sigma^2 (k - 3) / k for isotropic noise of std sigma.
            noise = float(np.median(np.sqrt(np.clip(ev[:, 0], 0.0, None) * k_eff / (k_eff - 3))))
        if k_query >= 8:
            boundary = _boundary_fraction(queries, pts[idx], dist[:, -1])
    return CloudAnalysis(
        n_points=n,
        has_normals=normals is not None,
        bbox_min=lo.tolist(),
        bbox_max=hi.tolist(),
        extent=float((hi - lo).max()),
        diagonal=float(np.linalg.norm(hi - lo)),
        principal_extents=principal.tolist(),
        nn_distance=nn,
        spacing=spacing,
        noise=noise,
        k_neighbors=k_eff,
        n_queries=n_queries,
        boundary_fraction=boundary,
        closed=boundary * math.sqrt(max(n_queries, 1)) < OPEN_SCORE,
    )


def _boundary_fraction(queries: np.ndarray, neighbors: np.ndarray, radius: np.ndarray) -> float:
    """Fraction of (Q, 3) `queries` whose (Q, k, 3) `neighbors` lie to one side in the tangent plane."""
    centered = neighbors - neighbors.mean(axis=1, keepdims=True)
    _, vecs = np.linalg.eigh(np.einsum("qki,qkj->qij", centered, centered))  # (Q, 3, 3) columns ascending
    normal = vecs[:, :, 0]  # (Q, 3) the neighbourhood's plane normal
    offset = neighbors.mean(axis=1) - queries  # (Q, 3)
    offset -= np.einsum("qi,qi->q", offset, normal)[:, None] * normal  # tangential part only
    one_sided = np.linalg.norm(offset, axis=1) > BOUNDARY_OFFSET * np.maximum(radius, 1e-300)
    return float(one_sided.mean())


__all__ = ["CloudAnalysis", "NormalCheck", "analyze_cloud", "MIN_POINTS"]
