"""The kernel method end to end: voxel size from the cloud, a coarse-to-fine cascade of solves, the field.

1. The finest depth follows the point spacing (`KernelConfig.voxel_per_spacing`), unless set.
2. For each level of the cascade, coarsest first, a sparse grid of the voxels within `band` voxels of
   the points is built and the gradient-fitting system (nfcore.kernel.solve) is solved by conjugate
   gradients, starting from the coarser level's solution sampled at the new nodes: the coarse levels
   settle the low frequencies that take plain CG many iterations, so the finest solve needs few.
3. The finest level's coefficients are the field (`KernelField`); `nfcore.kernel.extract` meshes it.
The smoothness weight grows and the value weight shrinks with the noise level (in voxels), so noisy
positions are averaged while the (usually cleaner) normals keep shaping the surface.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from nfcore.analysis import CloudAnalysis
from nfcore.config import KernelConfig
from nfcore.kernel.field import KernelField
from nfcore.kernel.grid import SparseGrid
from nfcore.kernel.solve import KernelSolveError, SystemWeights, build_system, pcg

COARSE_TOLERANCE_FACTOR = 10.0
"""Coarse levels only seed the next one: they stop at 10x the final tolerance."""


@dataclasses.dataclass
class LevelStats:
    depth: int
    voxels: int
    nodes: int
    iterations: int
    residual: float


@dataclasses.dataclass
class KernelSolution:
    """The fitted field and what the solve did (JSON-ready via `stats()`)."""

    field: KernelField
    depth: int
    voxel_size: float
    levels: list[LevelStats]
    weights: SystemWeights

    @property
    def iterations(self) -> int:
        return sum(level.iterations for level in self.levels)

    def stats(self) -> dict:
        return {
            "depth": self.depth,
            "voxel_size": self.voxel_size,
            "iterations": self.iterations,
            "residual": self.levels[-1].residual,
            "voxels": self.levels[-1].voxels,
            "unknowns": self.levels[-1].nodes,
            "levels": [dataclasses.asdict(level) for level in self.levels],
            "weights": dataclasses.asdict(self.weights),
        }


def choose_depth(cfg: KernelConfig, spacing: float) -> int:
    """The finest depth: voxel size 2 / 2^depth closest (in log scale) to `voxel_per_spacing` x `spacing` (cube units)."""
    if cfg.depth is not None:
        return cfg.depth
    target = cfg.voxel_per_spacing * spacing
    depth = round(math.log2(2.0 / target)) if target > 0 else cfg.max_depth
    return int(min(max(depth, cfg.min_depth), cfg.max_depth))


def level_weights(cfg: KernelConfig, h: float, spacing: float, noise: float) -> SystemWeights:
    """The system weights on a level of voxel size `h` (cube units) for a cloud of `spacing` and `noise`."""
    noise_voxels = noise / h
    return SystemWeights(
        value=cfg.value_weight / (1.0 + noise_voxels**2),
        gradient=cfg.gradient_weight,
        smoothness=cfg.smoothness * (1.0 + cfg.noise_smoothing * noise_voxels**2),
        point_area=(spacing / h) ** 2,
    )


def solve_kernel_field(
    points: torch.Tensor,
    normals: torch.Tensor,
    cfg: KernelConfig,
    analysis: CloudAnalysis,
    *,
    progress: Callable[[float, str | None], None] | None = None,
) -> KernelSolution:
    """Fit the kernel field to (N, 3) cube `points` with unit (N, 3) `normals` (same device).

    Args:
        analysis: figures of the cloud *in cube units* (spacing, noise); `require_surface()` must pass.
        progress: `progress(fraction, message)`; it may raise FitCanceled (checked every few iterations).
    Raises:
        KernelSolveError: the finest level did not reach `cfg.tolerance` in `cfg.max_iterations`
            iterations (the message names the residual).
    """
    spacing, noise = analysis.spacing, analysis.noise
    depth = choose_depth(cfg, spacing)
    backend = cfg.backend
    if backend == "auto":
        backend = "scipy" if points.device.type == "cpu" else "torch"
    elif backend == "scipy" and points.device.type != "cpu":
        raise ValueError("kernel.backend 'scipy' runs on the CPU only; use 'torch' or 'auto' on CUDA")
    depths = [d for d in range(depth - cfg.levels + 1, depth + 1) if d >= 3]
    report = progress or (lambda fraction, message=None: None)
    levels: list[LevelStats] = []
    field: KernelField | None = None
    weights = level_weights(cfg, 2.0 / (1 << depth), spacing, noise)
    for li, d in enumerate(depths):  # coarsest first
        finest = li == len(depths) - 1
        band = cfg.band if cfg.band is not None else (1 if spacing <= 0.5 * 2.0 / (1 << d) else 2)
        grid = SparseGrid.around(points, d, band)
        weights = level_weights(cfg, grid.h, spacing, noise)
        report(li / len(depths), f"level {d}: {grid.n_nodes} unknowns")
        system = build_system(grid, points, normals, weights, backend=backend)
        x0 = None
        if field is not None:
            # The coarser solution at the new nodes, converted to this level's voxel units.
            x0 = field.sdf(grid.node_positions()) / grid.h
        tol = cfg.tolerance if finest else cfg.tolerance * COARSE_TOLERANCE_FACTOR

        def on_iteration(it: int, residual: float, li=li, tol=tol) -> None:
            # CG's residual falls about geometrically: progress is its log on the way from 1 to `tol`.
            done = math.log(max(residual, tol)) / math.log(tol) if residual < 1 else 0.0
            report((li + min(max(done, 0.0), 1.0)) / len(depths), None)

        coeffs, stats = pcg(system.matvec, system.rhs, system.diagonal, x0=x0, tolerance=tol,
                            max_iterations=cfg.max_iterations, on_iteration=on_iteration)
        levels.append(LevelStats(d, grid.n_voxels, grid.n_nodes, stats.iterations, stats.residual))
        if finest and not stats.converged:
            raise KernelSolveError(
                f"the kernel solve did not converge: relative residual {stats.residual:.3g} after "
                f"{stats.iterations} iterations at depth {d} (tolerance {cfg.tolerance:g}); raise "
                "kernel.max_iterations or kernel.smoothness"
            )
        field = KernelField(grid, coeffs)
    assert field is not None
    return KernelSolution(field=field, depth=depth, voxel_size=field.grid.h, levels=levels, weights=weights)


__all__ = ["solve_kernel_field", "KernelSolution", "choose_depth", "level_weights", "KernelSolveError"]
