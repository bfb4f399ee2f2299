"""Mesh extraction from a scalar field: chunked, coarse-to-fine, slab-wise marching cubes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from nfcore.config import ExtractionConfig

FAR = 1e6
"""Magnitude written into grid nodes that were not evaluated (far from the surface)."""

DEFAULT_MAX_SLAB_NODES = 1 << 27
"""Grid nodes held at once (float32: 512 MB); 512^3 fits in one slab, 1024^3 takes nine."""


class _Evaluator:
    """Evaluates `fn` at integer grid indices in chunks, on `device`, without autograd."""

    def __init__(self, fn, lo: float, step: float, chunk_size: int, device, progress, total: int):
        self.fn, self.lo, self.step, self.chunk_size = fn, lo, step, int(chunk_size)
        self.device = torch.device(device)
        self.progress, self.total, self.done, self.reported = progress, max(int(total), 1), 0, 0.0

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """(M, 3) integer node indices -> (M,) float32 field values."""
        out = np.empty(len(idx), dtype=np.float32)
        for start in range(0, len(idx), self.chunk_size):
            part = idx[start : start + self.chunk_size]
            # Integer indices times the step: node i sits exactly at lo + i * step (no idx / N shear).
            x = torch.from_numpy((self.lo + part * self.step).astype(np.float32)).to(self.device)  # (m, 3) in bounds
            with torch.no_grad():
                v = self.fn(x)
            v = v.detach().reshape(-1).float().cpu().numpy()
            if v.shape[0] != len(part):
                raise ValueError(
                    f"field returned {v.shape[0]} values for {len(part)} points; expected shape (M,) or (M, 1)"
                )
            if not np.isfinite(v).all():
                raise ValueError("field returned NaN or infinite values; cannot extract a surface")
            out[start : start + len(part)] = v
            self.done += len(part)
            self.report(self.done / self.total)
        return out

    def report(self, fraction: float) -> None:
        """Forward a progress fraction, never going backwards (the total is re-estimated per level)."""
        fraction = min(max(fraction, self.reported), 0.99)
        if self.progress is not None and fraction > self.reported:
            self.progress(fraction)
        self.reported = fraction


def _grid_indices(shape: tuple[int, int, int], offset: int = 0) -> np.ndarray:
    """(X*Y*Z, 3) int64 indices of a block of nodes, x offset by `offset`."""
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    idx[:, 0] += offset
    return idx


SLOPE_SAFETY = 2.0
"""Factor on the steepest finite difference seen, for the slope bound of a level.

A finite difference along an axis never exceeds the field's Lipschitz constant L, but it may
under-estimate it by sqrt(3) (gradient along a cell diagonal) and by however much the peak slope
exceeds the mean over one spacing; 2 covers the first with some margin for the second. For an SDF
(axis differences <= 1) this gives 2, the default floor, so the SDF fast path is unchanged.
"""


def _observed_slope(ci: np.ndarray, values: np.ndarray, step: float, evaluated: np.ndarray | None) -> float:
    """Largest |difference| / distance between axis neighbours both in `evaluated` (all when None).

    Args:
        ci: (nc,) fine-grid indices of the nodes on each axis; step: fine-grid spacing in world units.
        values: (nc, nc, nc) field values; evaluated: (nc, nc, nc) bool, False where only filled.
    """
    spacing = np.diff(ci).astype(np.float32) * np.float32(step)  # (nc-1,) world distance to the next node
    slope = 0.0
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = -1
        d = np.abs(np.diff(values, axis=axis)) / spacing.reshape(shape)
        if evaluated is not None:
            lo, hi = [slice(None)] * 3, [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            d = np.where(evaluated[tuple(lo)] & evaluated[tuple(hi)], d, 0.0)
        if d.size:
            slope = max(slope, float(d.max()))
    return slope


class _Level:
    """Field values on a sub-grid (nodes at positions `ci` of the fine grid on each axis) and
    which of its cells may hold the surface."""

    def __init__(
        self,
        ci: np.ndarray,
        values: np.ndarray,
        level: float,
        step: float,
        min_slope: float,
        dilate: bool,
        evaluated: np.ndarray | None = None,
    ):
        """Classify the cells of one level.

        Args:
            ci: (nc,) sorted fine-grid indices of this level's nodes; step: fine spacing (world units).
            values: (nc, nc, nc) field values, level +/- FAR where not `evaluated` (None: all evaluated).
            min_slope: floor of the slope bound (the user's Lipschitz constant, or the coarser level's bound).
            dilate: add one cell of margin around the active cells (the coarsest level).
        """
        self.ci = ci
        # Kept for the next finer level, which reuses the values of this level's evaluated nodes.
        self.values, self.evaluated = values, evaluated
        nc = len(ci)
        # The slope bound only grows towards finer levels: finer differences see steeper parts of the
        # field, and a steep field (occupancy logits) must not be judged by the SDF bound.
        self.slope = max(min_slope, SLOPE_SAFETY * _observed_slope(ci, values, step, evaluated))
        d = values - level  # (nc, nc, nc)
        cmin = d[:-1, :-1, :-1].copy()  # (nc-1,)*3 per cell: min and max over its 8 corners
        cmax = cmin.copy()
        for a, b, c in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)][1:]:
            corner = d[a : nc - 1 + a, b : nc - 1 + b, c : nc - 1 + c]
            np.minimum(cmin, corner, out=cmin)
            np.maximum(cmax, corner, out=cmax)
        # A cell is skipped only when all 8 corners are farther than the bound (slope bound times
        # half the cell diagonal) on the same side: every point of the cell is within half a
        # diagonal of some corner, so a field that steep at most has no zero there.
        bound = self.slope * 0.5 * math.sqrt(3.0) * step * float(np.diff(ci).max())
        active = ~((cmin > bound) | (cmax < -bound))
        if dilate:
            # One cell of margin at the coarsest level, against fields steeper than the bound assumes.
            active = ndimage.binary_dilation(active, structure=np.ones((3, 3, 3), dtype=bool))
        self.active = active
        self.fill = np.where(cmin > 0, level + FAR, level - FAR).astype(np.float32)  # value of skipped cells

    def membership(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For sorted fine-grid node positions: the cell containing each, and the cell below when the
        node lies on an inner plane of this level (it then belongs to both)."""
        nc = len(self.ci)
        cell = np.minimum(np.searchsorted(self.ci, pos, side="right") - 1, nc - 2)
        inner = np.isin(pos, self.ci[1:-1])
        return cell, np.where(inner, cell - 1, cell)

    def need(self, mx, my, mz) -> np.ndarray:
        """(X, Y, Z) bool: nodes (given by their memberships per axis) that belong to an active cell."""
        # Separable: a node needs evaluation when any cell containing it is active, axis by axis.
        m = self.active[mx[0]] | self.active[mx[1]]  # (X, nc-1, nc-1)
        m = m[:, my[0]] | m[:, my[1]]  # (X, Y, nc-1)
        return m[:, :, mz[0]] | m[:, :, mz[1]]  # (X, Y, Z)

    def fill_values(self, mx, my, mz) -> np.ndarray:
        """(X, Y, Z) float32: level -/+ FAR by the sign of the cell containing each node."""
        return self.fill[mx[0]][:, my[0]][:, :, mz[0]]

    def n_active_cells(self, mx=None) -> int:
        if mx is None:
            return int(self.active.sum())
        cells = np.unique(np.concatenate(mx))
        return int(self.active[cells].sum())


def _level_positions(n: int, step: int) -> np.ndarray:
    """Fine-grid indices 0, step, 2 step, ... and always the last node n - 1."""
    ci = np.arange(0, n, step)
    return ci if ci[-1] == n - 1 else np.append(ci, n - 1)


def _hierarchy(
    pos: np.ndarray, evaluate: _Evaluator, level: float, step: float, min_slope: float, min_nodes: int
) -> _Level:
    """The `_Level` on node positions `pos`, its values computed coarse-to-fine from levels of twice the spacing."""
    if len(pos) <= min_nodes:
        values = evaluate(pos[_grid_indices((len(pos),) * 3)]).reshape((len(pos),) * 3)
        return _Level(pos, values, level, step, min_slope, dilate=True)
    coarser = pos[::2] if pos[::2][-1] == pos[-1] else np.append(pos[::2], pos[-1])
    parent = _hierarchy(coarser, evaluate, level, step, min_slope, min_nodes)
    m = parent.membership(pos)
    values = parent.fill_values(m, m, m)  # (P, P, P)
    need = parent.need(m, m, m)
    todo = _reuse_parent_values(values, need, pos, pos, pos, parent)
    idx = np.argwhere(todo)  # (k, 3) indices into pos
    if len(idx):
        values[todo] = evaluate(pos[idx])
    return _Level(pos, values, level, step, parent.slope, dilate=False, evaluated=need)


def _reuse_parent_values(
    values: np.ndarray, need: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray, parent: _Level
) -> np.ndarray:
    """Copy the parent's values into the needed nodes that the parent evaluated; return the rest of `need`.

    A block of nodes at fine-grid positions px, py, pz (sorted) with (X, Y, Z) `values` and `need`:
    one node in eight of a finer level is a node of the coarser one, whose value is usually known
    (not where the parent only filled it with +/- FAR: an active cell may have such corners).
    """
    on = [np.isin(p, parent.ci) for p in (px, py, pz)]
    if not all(o.any() for o in on):
        return need
    sel = np.ix_(*on)
    pidx = np.ix_(*(np.searchsorted(parent.ci, p[o]) for p, o in zip((px, py, pz), on, strict=True)))
    known = need[sel]  # the needed nodes among those shared with the parent ...
    if parent.evaluated is not None:
        known &= parent.evaluated[pidx]  # ... whose value the parent computed
    block = values[sel]
    block[known] = parent.values[pidx][known]
    values[sel] = block
    todo = need.copy()
    todo[sel] &= ~known
    return todo


def extract_mesh(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    resolution: int = 256,
    level: float = 0.0,
    bounds: tuple[float, float] = (-1.0, 1.0),
    chunk_size: int = 262_144,
    coarse_to_fine: bool = True,
    device: str | torch.device = "cpu",
    progress: Callable[[float], object] | None = None,
    gradient_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    coarse_step: int | None = None,
    lipschitz: float = 2.0,
    slab_size: int | None = None,
    min_coarse_nodes: int = 33,
) -> trimesh.Trimesh:
    """Marching cubes (scikit-image) of `fn = level` on a resolution^3 grid over bounds^3.

    Grid node (i, j, k) is at lo + (i, j, k) * (hi - lo) / (resolution - 1) exactly; vertices are
    returned in those (cube) coordinates. The mesh is oriented so that face normals point to
    increasing values (outward for an SDF that is negative inside).

    Coarse-to-fine: the field is evaluated on a hierarchy of grids, each with twice the spacing of
    the next, from a dense one of at most `min_coarse_nodes` per axis down to spacing `coarse_step`
    (default 2, or 4 when resolution > 640). At every level, a cell whose 8 corners all lie farther
    than `slope * half the cell diagonal` from the level on the same side cannot hold the surface
    (for a field with Lipschitz constant <= slope); only nodes of the other cells are evaluated at
    the next level, the rest get level +/- FAR by the coarse sign. The slope bound is
    max(`lipschitz`, 2 x the steepest axis finite difference between evaluated nodes of this and
    the coarser levels), so steep fields (occupancy logits) get a proportionally wider band while
    SDFs keep the bound 2. The coarsest level is dilated by one cell as a margin. For fields within
    the bound the mesh equals the dense grid's.

    Memory: the fine grid is processed in slabs of `slab_size` cells along x (default: as many as fit
    in 2^27 nodes, 512 MB of float32 plus a 128 MB mask; 512^3 is one slab, 1024^3 nine), with one
    shared node plane between slabs whose vertices are merged afterwards. The coarse levels hold
    (resolution / coarse_step)^3 floats (at most 257^3 = 68 MB by the default). No dense 1024^3
    array is allocated. Field evaluations use `chunk_size` points at a time.

    Args:
        fn: (M, 3) float32 tensor on `device` -> (M,) or (M, 1) values; called under no_grad.
        gradient_fn: optional (M, 3) -> (M, 3) gradient; if given, vertex normals are its normalised value.
        lipschitz: floor of the slope bound; 2 suits an SDF (slope 1, with margin).
        progress: called with the (estimated) fraction of field evaluations done, ending with 1.0.
    Raises:
        ValueError: when the field never crosses `level` in the grid (no surface), or returns NaN.
    """
    n = int(resolution)
    if n < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not hi > lo:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
    step = (hi - lo) / (n - 1)
    if slab_size is None:
        slab_size = max(1, DEFAULT_MAX_SLAB_NODES // (n * n) - 1)
    slab_size = int(min(max(1, slab_size), n - 1))
    if coarse_step is None:
        coarse_step = 2 if n <= 640 else 4

    use_coarse = coarse_to_fine and coarse_step >= 2 and n > 2 * coarse_step
    evaluate = _Evaluator(
        fn, lo, step, chunk_size, device, progress, n**3 if not use_coarse else (n // coarse_step) ** 3
    )
    coarse = None
    fine = np.arange(n)
    if use_coarse:
        coarse = _hierarchy(
            _level_positions(n, coarse_step), evaluate, float(level), step, float(lipschitz), min_coarse_nodes
        )
        n_active = coarse.n_active_cells()
        if n_active == 0:
            raise ValueError(f"no surface: the field does not come near level {level} anywhere in the grid")
        # Expected fine evaluations: about one coarse cell volume per active cell.
        evaluate.total = evaluate.done + n_active * coarse_step**3
        m_fine = coarse.membership(fine)

    group = max(1, (4 * chunk_size) // (n * n))  # x-planes whose indices are built at once
    vertices, faces, offset = [], [], 0
    for x0 in range(0, n - 1, slab_size):
        x1 = min(x0 + slab_size, n - 1)  # slab covers nodes x0..x1 inclusive (cells x0..x1-1)
        if coarse is not None and coarse.n_active_cells((m_fine[0][x0 : x1 + 1], m_fine[1][x0 : x1 + 1])) == 0:
            continue
        vol = np.empty((x1 - x0 + 1, n, n), dtype=np.float32)  # (X, n, n) field values of the slab
        for p0 in range(x0, x1 + 1, group):
            p1 = min(p0 + group, x1 + 1)
            if coarse is None:
                vol[p0 - x0 : p1 - x0] = evaluate(_grid_indices((p1 - p0, n, n), p0)).reshape(p1 - p0, n, n)
                continue
            mx = (m_fine[0][p0:p1], m_fine[1][p0:p1])
            block = coarse.fill_values(mx, m_fine, m_fine)
            need = coarse.need(mx, m_fine, m_fine)
            todo = _reuse_parent_values(block, need, fine[p0:p1], fine, fine, coarse)
            idx = np.argwhere(todo)  # (m, 3) local indices
            if len(idx):
                idx[:, 0] += p0
                block[todo] = evaluate(idx)
            vol[p0 - x0 : p1 - x0] = block
        if not (vol.min() <= level <= vol.max()):
            continue
        # skimage's 'descent': the object is where values are below the level (SDF < 0 inside), so the
        # faces wind outward.
        v, f, _, _ = marching_cubes(vol, level=level, gradient_direction="descent", allow_degenerate=False)
        if len(f) == 0:
            continue
        v = v.astype(np.float64)
        v[:, 0] += x0
        vertices.append(lo + v * step)
        faces.append(f.astype(np.int64) + offset)
        offset += len(v)
    if not faces:
        raise ValueError(f"no surface: the field does not cross level {level} anywhere in the grid")
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    if len(vertices) > 1:
        # Slabs share a node plane; vertices there are computed identically on both sides.
        mesh.merge_vertices()
        mesh.remove_unreferenced_vertices()
    if gradient_fn is not None:
        mesh.vertex_normals = field_normals(
            gradient_fn, np.asarray(mesh.vertices), chunk_size=chunk_size, device=device
        )
    if progress is not None:
        progress(1.0)
    return mesh


def project_to_level(
    value_and_gradient: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    vertices: np.ndarray,
    *,
    max_step: float,
    chunk_size: int = 262_144,
    device: str | torch.device = "cpu",
    gradients: np.ndarray | None = None,
) -> np.ndarray:
    """(N, 3) vertices moved onto the zero level by one Newton step along the gradient, at most `max_step`.

    Marching cubes places a vertex by linear interpolation along a grid edge, off the surface by
    about h^2 times the curvature for a voxel of size h; one step x - f(x) grad f / |grad f|^2 takes
    that error to second order, so a 256^3 grid keeps the accuracy of a finer one on curved detail.
    The step is clipped to `max_step` (a voxel) where the gradient is too flat to trust.

    Args:
        gradients: optional (N, 3) float64 array that receives the gradient at each vertex before
            its step (it serves as the vertex normal: the step is a small fraction of a voxel).
    """
    out = np.array(vertices, dtype=np.float64, copy=True)
    for start in range(0, len(out), chunk_size):
        x = torch.from_numpy(out[start : start + chunk_size].astype(np.float32)).to(device)
        f, g = value_and_gradient(x)
        f = f.detach().reshape(-1, 1).double().cpu().numpy()
        g = g.detach().reshape(-1, 3).double().cpu().numpy()
        if gradients is not None:
            gradients[start : start + len(g)] = g
        step = -f * g / np.maximum((g * g).sum(axis=1, keepdims=True), 1e-12)  # (M, 3)
        length = np.linalg.norm(step, axis=1, keepdims=True)
        step *= np.minimum(1.0, max_step / np.maximum(length, 1e-300))
        out[start : start + len(step)] += step
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    """(N, 3) rows scaled to unit length; zero rows stay zero."""
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, length, out=np.zeros_like(vectors), where=length > 0)


def field_normals(
    gradient_fn: Callable[[torch.Tensor], torch.Tensor],
    points: np.ndarray,
    *,
    chunk_size: int = 262_144,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(N, 3) float64 unit normals: the field's normalised gradient at (N, 3) `points`, in chunks."""
    out = np.zeros((len(points), 3), dtype=np.float64)
    for start in range(0, len(points), chunk_size):
        x = torch.from_numpy(np.asarray(points[start : start + chunk_size], dtype=np.float32)).to(device)
        g = gradient_fn(x).detach().reshape(-1, 3).double().cpu().numpy()
        out[start : start + len(g)] = g
    return _unit(out)


def largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The connected component (faces sharing edges) with the largest area; vertex normals are kept.

    Written on trimesh's component labels rather than `mesh.split`, which drops the vertex normals
    that `extract_mesh` takes from the field.
    """
    if len(mesh.faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))  # (F,)
    if labels.max() == 0:
        return mesh
    area = np.bincount(labels, weights=mesh.area_faces)
    return _keep_faces(mesh, labels == int(np.argmax(area)))


def _keep_faces(mesh: trimesh.Trimesh, keep: np.ndarray) -> trimesh.Trimesh:
    """The faces where (F,) bool `keep` holds, with their vertices and vertex normals."""
    faces = mesh.faces[keep]
    used, inverse = np.unique(faces, return_inverse=True)
    normals = np.asarray(mesh.vertex_normals)[used]
    return trimesh.Trimesh(
        np.asarray(mesh.vertices)[used], inverse.reshape(-1, 3), vertex_normals=normals, process=False
    )


def trim_unsupported(
    mesh: trimesh.Trimesh, points: np.ndarray, radius: float, *, min_region_area: float
) -> tuple[trimesh.Trimesh, dict]:
    """Remove the regions of `mesh` that no input point supports: Poisson's density trimming for fields.

    A face is unsupported when its centroid is farther than `radius` from every (N, 3) point (same
    frame as the mesh). Connected unsupported regions larger than `min_region_area` are removed: an
    unscanned side closed by the field is one large region, while the small gaps of random sampling on
    a closed scan stay (removing them would punch holes). Returns the mesh and what was removed.
    """
    from scipy.spatial import cKDTree

    report = {"radius": float(radius), "removed_area": 0.0, "removed_fraction": 0.0, "removed_regions": 0}
    if len(mesh.faces) == 0:
        return mesh, report
    dist, _ = cKDTree(np.asarray(points)).query(mesh.triangles_center, k=1, workers=-1)  # (F,)
    unsupported = dist > radius
    if not unsupported.any():
        return mesh, report
    # Components of the unsupported faces alone: edges between two unsupported faces.
    adjacency = mesh.face_adjacency  # (E, 2) face pairs sharing an edge
    inner = adjacency[unsupported[adjacency[:, 0]] & unsupported[adjacency[:, 1]]]
    labels = trimesh.graph.connected_component_labels(inner, node_count=len(mesh.faces))  # (F,)
    area = np.bincount(labels, weights=mesh.area_faces * unsupported)  # unsupported area per component
    big = np.flatnonzero(area > min_region_area)
    remove = np.isin(labels, big) & unsupported
    if not remove.any():
        return mesh, report
    total = float(mesh.area)
    report.update(
        removed_area=float(mesh.area_faces[remove].sum()),
        removed_fraction=float(mesh.area_faces[remove].sum() / total) if total > 0 else 0.0,
        removed_regions=int(len(big)),
    )
    return _keep_faces(mesh, ~remove), report


def extract_field_mesh(
    fn: Callable[[torch.Tensor], torch.Tensor],
    cfg: ExtractionConfig,
    *,
    device: torch.device | str = "cpu",
    similarity=None,
    progress: Callable[[float], None] | None = None,
    timings: dict[str, float] | None = None,
) -> trimesh.Trimesh:
    """The zero level set of a scalar field as the tasks' config asks for it.

    Marching cubes with `cfg`'s resolution, chunking and coarse-to-fine setting, vertex normals from
    the field's gradient when `cfg.field_normals`, the largest component when asked, and the mesh
    mapped back to the input frame with `similarity.apply_to_mesh(inverse=True)` when given.

    Args:
        fn: (M, 3) points in [-1, 1] -> (M,) values, negative inside.
        timings: if given, receives the seconds of "marching_cubes" (with field normals unless
            projecting), "project", "normals" and "components".
    """
    timings = timings if timings is not None else {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    def value_and_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            f = fn(xg)
            (g,) = torch.autograd.grad(f.sum(), xg)
        return f, g

    def gradient(x: torch.Tensor) -> torch.Tensor:
        return value_and_gradient(x)[1]

    mesh = extract_mesh(
        fn,
        resolution=cfg.resolution,
        chunk_size=cfg.chunk_size,
        coarse_to_fine=cfg.coarse_to_fine,
        device=device,
        progress=progress,
        gradient_fn=gradient if cfg.field_normals and not cfg.project else None,
    )
    lap("marching_cubes")
    if cfg.project:
        voxel = 2.0 / (cfg.resolution - 1)
        # The gradients of the Newton step double as vertex normals: evaluating them again at the
        # projected vertices, a small fraction of a voxel away, cost as much as the projection.
        grads = np.zeros((len(mesh.vertices), 3))
        mesh.vertices = project_to_level(value_and_gradient, np.asarray(mesh.vertices), max_step=voxel,
                                         chunk_size=cfg.chunk_size, device=device, gradients=grads)
        lap("project")
        if cfg.field_normals:
            mesh.vertex_normals = _unit(grads)
            lap("normals")
    if cfg.largest_component:
        mesh = largest_component(mesh)
        lap("components")
    if similarity is not None:
        mesh = similarity.apply_to_mesh(mesh, inverse=True)
    return mesh
