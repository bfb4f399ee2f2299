"""Several overlapping scans (views) of one object merged into one cloud, optionally registered first.

Range scans come in a common frame with a small registration error (a fraction of a degree, a
fraction of a percent of the size). Fitting their plain union makes a surface that is doubled or
thickened where views overlap, so before merging each scan can be refined rigidly:

* **Residual.** For the points of scan i that have a point of another scan within a few spacings
  (its *overlap*), the RMS point-to-plane distance to the other scans' local planes (PCA normals of
  each scan on its own, so that a misregistration does not bend them). The same measure of a scan
  against a random half of itself is the *within-scan* floor: what noise alone gives.
* **Registration** (`register`): point-to-plane ICP (Open3D, with a Tukey kernel so that the few
  points past the overlap's edge do not pull) of each scan against the union of the others, in
  rounds until the transforms stop changing. The union averages the others' independent errors, so
  the frame ends near their mean; a pose graph would buy little at these small errors. A
  transform is kept only when it lowers that scan's overlap residual. `auto` registers when the
  median overlap residual is clearly above the within-scan floor (`AUTO_RATIO`).
* **Normals**: given per scan, they turn with the scan; scans without normals get them estimated
  and oriented on the merged cloud (`nfcore.io.points.estimate_normals`), where the other views
  cover what one view misses.

`read_scans(paths, icfg, seed)` reads the files (point clouds only: a view is a measurement, a mesh
is not); `merge_scans(scans, ...)` registers and merges and returns the merged cloud with a report
per scan (rotation in degrees and centroid translation in spacings applied, overlap fraction,
residual before and after in spacings) that the fit puts in its metrics as `scans`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from nfcore.errors import InputError

MIN_SCAN_POINTS = 10
"""A view with fewer points is refused (no neighbourhoods to register); the merged cloud must still
have `InputConfig.min_points`."""
MAX_SCANS = 64
"""At most this many views in one fit."""
AUTO_RATIO = 1.1
"""`registration: auto` registers when the median overlap residual exceeds this multiple of the
within-scan floor. On the synthetic range scans of bench.multiview (8 views, 24k-32k points, range
noise 0.1% of the diagonal) views misregistered by 0.3 degrees and 0.3% of the diagonal read 1.11-2.20
(the detailed armadillo lowest: its floor holds curvature too), and the same views once registered
0.75-1.08. The margin is thin, but registering scans that need none costs a second or two and no
quality: a transform is kept only when it lowers the residual (`ACCEPT`)."""
NORMAL_K = 16
"""Neighbours of the per-scan PCA normals the point-to-plane residual and ICP use."""
ACCEPT = 0.999
"""A transform is kept when it lowers the scan's overlap residual below this fraction of the residual
before (a 2% bar refused the small late refinements: 58-71% of the misregistration removed instead of 70-75%)."""
MAX_ROUNDS = 10
"""Rounds of registering every scan against the others, at most (5-9 on the benchmark's scans)."""
CONVERGED = 0.02
"""Rounds stop once no scan moved by more than this many spacings (or degrees) in one."""
RESIDUAL_SAMPLES = 20_000
"""Points of a scan the residual is measured at and ICP moves, at most (a seeded random subset)."""


@dataclass
class Scan:
    """One view: positions in the common frame and optional unit normals."""

    name: str
    points: np.ndarray
    """(N, 3) float64."""
    normals: np.ndarray | None = None
    """(N, 3) unit normals, or None when the file has none."""
    notes: list[str] = field(default_factory=list)
    outliers_removed: int = 0


@dataclass
class MergedScans:
    """The merged cloud and what merging did."""

    points: np.ndarray
    """(N, 3) float32: every scan after its transform, in order."""
    normals: np.ndarray
    """(N, 3) float32 unit normals (given ones turned with their scan, missing ones estimated)."""
    report: dict
    """JSON: `registered`, `reason`, `spacing`, `within_scan_residual`, `views` (one dict per scan)."""
    notes: list[str]
    normals_estimated: bool
    """Some scan had no normals: they were estimated on the merged cloud."""
    transforms: list[np.ndarray]
    """(4, 4) per scan: what was applied to it."""


# ---------------------------------------------------------------------------------------------
# Reading


def read_scans(paths: list[Path], icfg, *, seed: int = 0) -> list[Scan]:
    """Each file as one view (`icfg`: an `nfcore.config.InputConfig`; its outlier setting applies per view).

    Raises InputError naming the file for a mesh, an unreadable file, NaN/inf or too few points.
    """
    from nfcore.io.points import MAX_COORDINATE, check_normals, drop_outliers, load_raw

    if len(paths) > MAX_SCANS:
        raise InputError(f"{len(paths)} scans given; at most {MAX_SCANS} views of one object are accepted")
    scans: list[Scan] = []
    total = 0
    for i, path in enumerate(paths):
        path = Path(path)
        raw = load_raw(path, mesh_samples=icfg.mesh_samples, seed=seed, max_points=icfg.max_points)
        name = f"{path.name} (view {i})"
        if raw.kind != "pointcloud":
            raise InputError(f"{name} is a mesh; several inputs are views (scans) of one object and must be point "
                             "clouds (.xyz .ply .npz .npy)")
        pts = np.asarray(raw.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < MIN_SCAN_POINTS:
            raise InputError(f"{name} has {len(pts)} points; a view needs at least {MIN_SCAN_POINTS}")
        if not np.isfinite(pts).all():
            raise InputError(f"{name} has points with NaN or infinite coordinates")
        if np.abs(pts).max() > MAX_COORDINATE:
            raise InputError(f"{name} has coordinates above {MAX_COORDINATE:.0e} in magnitude")
        normals = check_normals(np.asarray(raw.normals, dtype=np.float64), name) if raw.normals is not None else None
        total += len(pts)
        if total > icfg.max_points:
            raise InputError(f"the scans hold more than {icfg.max_points} points together (at {path.name}); "
                             f"at most {icfg.max_points} are allowed")
        notes = [f"{path.name}: {n}" for n in raw.notes]
        removed = 0
        if icfg.outliers != "off":
            kept, kept_n, fraction, removed = drop_outliers(
                pts, normals, always=icfg.outliers == "on", min_fraction=icfg.outlier_min_fraction,
                min_points=MIN_SCAN_POINTS, seed=seed)
            if removed:
                pts, normals = np.asarray(kept, dtype=np.float64), kept_n
                notes.append(f"{path.name}: removed {removed} outlier points ({removed / (len(pts) + removed):.1%}; "
                             f"estimated outlier fraction {fraction:.1%})")
        scans.append(Scan(name=path.name, points=pts, normals=normals, notes=notes, outliers_removed=int(removed)))
    return scans


# ---------------------------------------------------------------------------------------------
# Geometry helpers


def _pca_normals(points: np.ndarray, k: int = NORMAL_K) -> np.ndarray:
    """Unoriented (N, 3) PCA normals over k neighbours (the sign does not matter to a point-to-plane distance)."""
    k = int(min(k, len(points)))
    _, idx = cKDTree(points).query(points, k=k, workers=-1)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)  # (N, k, 3)
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    return vecs[:, :, 0]  # eigenvector of the smallest eigenvalue


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:3, :3].T + transform[:3, 3]


def rotation_degrees(transform: np.ndarray) -> float:
    """Angle of the rotation part of a (4, 4) rigid transform, in degrees."""
    cos = (np.trace(transform[:3, :3]) - 1.0) / 2.0
    return float(math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0)))))


def kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The (4, 4) rigid transform that best maps (N, 3) `source` onto paired `target` points (least squares)."""
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - cs).T @ (target - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = ct - rot @ cs
    return out


def _anchor(scans: list[Scan], transforms: list[np.ndarray]) -> list[np.ndarray]:
    """The transforms with their common motion removed: the merged cloud stays where the input put it on average.

    Registering scans to each other fixes them only relative to one another; a motion of all of them
    together changes no residual, and rounds of pairwise moves can drift along it (a few degrees on
    smooth shapes). The input frame is right on average, so the best rigid map of the moved points back
    onto the given ones is applied to every scan.
    """
    moved = np.concatenate([_apply(t, s.points) for t, s in zip(transforms, scans, strict=True)])
    given = np.concatenate([s.points for s in scans])
    back = kabsch(moved, given)
    return [back @ t for t in transforms]


@dataclass
class _Target:
    """Points and unoriented normals of several scans, with a k-d tree."""

    points: np.ndarray
    normals: np.ndarray

    def __post_init__(self):
        self.tree = cKDTree(self.points)


def _residual(source: np.ndarray, target: _Target, max_distance: float) -> tuple[float, float]:
    """(RMS point-to-plane distance over the overlap, overlap fraction) of `source` points against `target`.

    The overlap is the source points with a target point within `max_distance`; NaN residual without one.
    """
    dist, idx = target.tree.query(source, k=1, distance_upper_bound=max_distance, workers=-1)
    near = np.isfinite(dist)
    if not near.any():
        return float("nan"), 0.0
    d = np.einsum("ij,ij->i", source[near] - target.points[idx[near]], target.normals[idx[near]])
    return float(np.sqrt(np.mean(d * d))), float(near.mean())


def _subsample(n: int, rng: np.random.Generator, limit: int = RESIDUAL_SAMPLES) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, size=limit, replace=False))


def _within_scan_residual(points: np.ndarray, normals: np.ndarray, max_distance: float,
                          rng: np.random.Generator) -> float:
    """The overlap residual noise alone gives: one random half of a scan against the other half."""
    half = rng.random(len(points)) < 0.5
    if half.sum() < MIN_SCAN_POINTS or (~half).sum() < MIN_SCAN_POINTS:
        return float("nan")
    src = points[half][_subsample(int(half.sum()), rng)]
    return _residual(src, _Target(points[~half], normals[~half]), max_distance)[0]


def _icp(o3d, source: np.ndarray, target: _Target, max_distance: float, max_iterations: int) -> np.ndarray:
    """Point-to-plane ICP of `source` onto `target` from the identity; the (4, 4) transform found."""
    reg = o3d.pipelines.registration
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source))
    tgt = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target.points))
    tgt.normals = o3d.utility.Vector3dVector(target.normals)
    # Tukey's kernel at half the correspondence distance: points past the edge of the overlap, which
    # pair with the wrong side of a thin part or with nothing, get no say.
    estimation = reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=max_distance / 2))
    result = reg.registration_icp(src, tgt, max_distance, np.eye(4), estimation,
                                  reg.ICPConvergenceCriteria(max_iteration=max_iterations))
    return np.asarray(result.transformation, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Merging


def merge_scans(
    scans: list[Scan],
    *,
    register: str = "auto",
    distance: float = 4.0,
    normal_neighbors: int = 30,
    estimate_missing: bool = True,
    seed: int = 0,
    max_iterations: int = 30,
) -> MergedScans:
    """Register (as `register` says) and merge `scans`; estimate normals the scans do not carry.

    Args:
        register: "on", "off" or "auto" (when the overlap residual is clearly above the within-scan floor).
        distance: ICP correspondence distance and overlap radius, in point spacings of the merged cloud.
        estimate_missing: estimate normals for scans without them; if False such a scan is an InputError.
    Raises:
        InputError: no scans, a scan without normals while `estimate_missing` is False, or registration
            asked for ("on") without Open3D.
    """
    from nfcore.analysis import analyze_cloud

    if not scans:
        raise InputError("no scans to merge")
    if register not in ("auto", "on", "off"):
        raise InputError(f"register must be auto, on or off, not {register!r}")
    rng = np.random.default_rng(seed)
    notes = [n for s in scans for n in s.notes]
    all_points = np.concatenate([s.points for s in scans])
    # The spacing of the union: overlapping views make it denser than one view, and it is the
    # spacing the fit sees. The correspondence distance is a few of them.
    spacing = analyze_cloud(all_points, rng=np.random.default_rng(seed)).spacing
    if not spacing > 0:
        raise InputError("the scans have no spacing to measure (all points coincide)")
    max_distance = distance * spacing
    n = len(scans)
    transforms = [np.eye(4) for _ in scans]
    pca = [_pca_normals(s.points) for s in scans]  # each scan's own planes, turned with it below
    samples = [s.points[_subsample(len(s.points), rng)] for s in scans]

    def target_of(i: int, current: list[np.ndarray]) -> _Target | None:
        others = [j for j in range(n) if j != i]
        if not others:
            return None
        return _Target(np.concatenate([_apply(current[j], scans[j].points) for j in others]),
                       np.concatenate([pca[j] @ current[j][:3, :3].T for j in others]))

    def residuals(current: list[np.ndarray]) -> list[tuple[float, float]]:
        out = []
        for i in range(n):
            target = target_of(i, current)
            out.append((float("nan"), 0.0) if target is None else _residual(_apply(current[i], samples[i]), target,
                                                                           max_distance))
        return out

    before = residuals(transforms)
    floor = float(np.nanmedian([_within_scan_residual(s.points, p, max_distance, rng) for s, p in zip(scans, pca,
                                                                                                       strict=True)]))
    overlapping = [r for r, f in before if f > 0 and math.isfinite(r)]
    median_before = float(np.median(overlapping)) if overlapping else float("nan")
    ratio = median_before / floor if overlapping and floor > 0 else float("nan")

    if n < 2:
        do_register, reason = False, "one scan: nothing to register against"
    elif not overlapping:
        do_register, reason = False, f"no scan overlaps another within {distance:g} spacings"
    elif register == "off":
        do_register, reason = False, "register: off"
    elif register == "on":
        do_register, reason = True, "register: on"
    else:
        do_register = ratio > AUTO_RATIO
        reason = (f"overlap residual {ratio:.2f}x the within-scan residual "
                  f"({'above' if do_register else 'not above'} {AUTO_RATIO:g}x)")
    rounds = 0
    accepted = [False] * n
    if do_register:
        try:
            from nfcore.open3d_import import import_open3d

            o3d = import_open3d()
        except ImportError as exc:
            if register == "on":
                raise InputError(f"registering scans needs Open3D: {exc}") from exc
            do_register, reason, o3d = False, f"not registered: Open3D cannot be imported ({exc})", None
    if do_register:
        for round_ in range(1, MAX_ROUNDS + 1):
            rounds = round_
            largest = 0.0
            for i in range(n):
                target = target_of(i, transforms)  # the others as they stand now (moved earlier this round)
                if target is None:
                    continue
                now = _residual(_apply(transforms[i], samples[i]), target, max_distance)
                if now[1] == 0 or not math.isfinite(now[0]):
                    continue
                # The residual's subset (all points up to RESIDUAL_SAMPLES) pins six parameters well enough.
                step = _icp(o3d, _apply(transforms[i], samples[i]), target, max_distance, max_iterations)
                candidate = step @ transforms[i]
                after = _residual(_apply(candidate, samples[i]), target, max_distance)
                # Kept only when it helps: ICP on a view with little overlap can slide along it.
                if after[1] > 0 and after[0] < ACCEPT * now[0]:
                    centroid = _apply(transforms[i], scans[i].points.mean(axis=0, keepdims=True))
                    moved = float(np.linalg.norm(_apply(step, centroid) - centroid))
                    transforms[i] = candidate
                    accepted[i] = True
                    largest = max(largest, moved / spacing, rotation_degrees(step))
            transforms = _anchor(scans, transforms)
            if largest < CONVERGED:  # no scan moved noticeably: converged
                break
    after_all = residuals(transforms) if do_register else before

    views = []
    for i, s in enumerate(scans):
        centroid = s.points.mean(axis=0)
        moved = float(np.linalg.norm(_apply(transforms[i], centroid[None])[0] - centroid))
        views.append({
            "name": s.name, "n_points": len(s.points), "has_normals": s.normals is not None,
            "outliers_removed": s.outliers_removed,
            "overlap_fraction": round(before[i][1], 4),
            "residual_before": _per_spacing(before[i][0], spacing),
            "residual_after": _per_spacing(after_all[i][0], spacing),
            "rotation_degrees": round(rotation_degrees(transforms[i]), 4),
            "translation_spacings": round(moved / spacing, 4),
            "transform": [[round(float(v), 9) for v in row] for row in transforms[i]],
            "registered": accepted[i],
        })
    points = np.concatenate([_apply(t, s.points) for t, s in zip(transforms, scans, strict=True)]).astype(np.float32)
    missing = [s.name for s in scans if s.normals is None]
    normals = _merged_normals(scans, transforms, points, missing, estimate_missing, normal_neighbors)
    if missing:
        notes.append(f"normals estimated on the merged cloud for {len(missing)} of {n} scans without them")
    median_after = _median_finite([r for r, _ in after_all])
    report = {
        "n_scans": n, "register": register, "registered": bool(do_register and any(accepted)),
        "reason": reason, "rounds": rounds, "spacing": spacing, "distance_spacings": distance,
        "within_scan_residual": _per_spacing(floor, spacing),
        "residual_ratio": round(ratio, 4) if math.isfinite(ratio) else None,
        "residual_before": _per_spacing(median_before, spacing),
        "residual_after": _per_spacing(median_after, spacing),
        "units": "residuals and translations in point spacings of the merged cloud (`spacing`, input units)",
        "views": views,
    }
    if do_register:
        notes.append(f"{n} scans registered ({sum(accepted)} moved; median overlap residual "
                     f"{report['residual_before']} -> {report['residual_after']} spacings)")
    else:
        notes.append(f"{n} scans merged without registration: {reason}")
    return MergedScans(points=points, normals=normals, report=report, notes=notes, normals_estimated=bool(missing),
                       transforms=transforms)


def _per_spacing(value: float, spacing: float) -> float | None:
    return round(value / spacing, 4) if math.isfinite(value) else None


def _median_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _merged_normals(scans: list[Scan], transforms: list[np.ndarray], points: np.ndarray, missing: list[str],
                    estimate_missing: bool, neighbors: int) -> np.ndarray:
    """Given normals turned with their scan; the others estimated on the merged cloud."""
    from nfcore.io.points import estimate_normals

    if missing and not estimate_missing:
        raise InputError(f"{missing[0]} has no normals (expected nx ny nz) and normal estimation is turned off")
    estimated = estimate_normals(points, neighbors=neighbors) if missing else None
    parts, start = [], 0
    for t, s in zip(transforms, scans, strict=True):
        stop = start + len(s.points)
        parts.append(s.normals @ t[:3, :3].T if s.normals is not None else estimated[start:stop])
        start = stop
    normals = np.concatenate(parts)
    return (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)


def read_merged_cloud(paths: list[Path], icfg, *, seed: int = 0):
    """`read_scans` then `merge_scans` as `icfg` (InputConfig) says: (nfcore.io.PointCloud, scans report)."""
    from nfcore.io.points import CHECK_NORMALS_MAX_POINTS, PointCloud, check_given_normals, check_points

    scans = read_scans(paths, icfg, seed=seed)
    merged = merge_scans(scans, register=icfg.registration, distance=icfg.registration_distance,
                         normal_neighbors=icfg.normal_neighbors, estimate_missing=icfg.estimate_normals, seed=seed)
    check_points(merged.points, f"the {len(scans)} merged scans", min_points=icfg.min_points,
                 max_points=icfg.max_points)
    normals, notes, normal_check = merged.normals, list(merged.notes), None
    if not merged.normals_estimated and (icfg.check_normals == "on" or icfg.check_normals == "auto"
                                         and len(merged.points) <= CHECK_NORMALS_MAX_POINTS):
        verified = check_given_normals(merged.points, normals, seed=seed)
        normal_check = verified.record
        if verified.repaired is not None:
            normals = np.ascontiguousarray(verified.repaired, dtype=np.float32)
            notes.append(verified.note)
    cloud = PointCloud(merged.points, normals, notes=notes, outliers_removed=sum(s.outliers_removed for s in scans),
                       normals_estimated=merged.normals_estimated, normal_check=normal_check)
    return cloud, merged.report


__all__ = ["MAX_SCANS", "MergedScans", "Scan", "kabsch", "merge_scans", "read_merged_cloud", "read_scans", "rotation_degrees"]
