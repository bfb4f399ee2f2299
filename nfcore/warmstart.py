"""Warm start of a neural SDF from the kernel solution (`MethodConfig.init.kind == "kernel"`).

1. The kernel method (nfcore.kernel) solves for its implicit function on the task's normalised
   points: `solve_kernel_field`, the same solve `method: kernel` runs.
2. A pool of query points is drawn once: near the points (point + Gaussian noise of
   `init.near_sigma` kernel voxels) and uniform in the cube. Its targets are the kernel function's
   values where the query lies in the kernel grid's voxels; elsewhere the kernel function is not
   defined (its missing kernels count as zero), so the target there is the distance to the nearest
   point, signed by that point's normal (negative inside, as the kernel function and the SDF task).
3. The field is regressed on those targets (L1, Adam) for `init.distill_steps` steps (at most `train.steps`). Each step is a
   first-order forward and backward, no gradient of the gradient (unless `init.gradient_weight` asks
   for a gradient term), so a step costs a fraction of a training step.
The usual training then starts from the distilled field with a fresh optimizer and schedule, at the
optimizer's learning rates times `init.lr_factor` (`warm_started`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree

from nfcore.analysis import analyze_cloud
from nfcore.config import InitConfig, MethodConfig
from nfcore.kernel.basis import trilinear
from nfcore.kernel.field import KernelField
from nfcore.kernel.reconstruct import KernelSolution, solve_kernel_field
from nfcore.kernel.task import cpu_threads


@dataclasses.dataclass
class WarmStart:
    """What the warm start did (JSON-ready via `stats()`)."""

    solution: KernelSolution
    solve_seconds: float
    distill_steps: int
    distill_seconds: float
    final_l1: float
    """Mean |f - target| over the last step's batch, cube units."""
    lr_factor: float
    """The training's learning rates after the warm start, relative to the optimizer's."""

    def stats(self) -> dict:
        return {
            "kind": "kernel",
            "solve_seconds": self.solve_seconds,
            "distill_steps": self.distill_steps,
            "distill_seconds": self.distill_seconds,
            "seconds": self.solve_seconds + self.distill_seconds,
            "lr_factor": self.lr_factor,
            "final_l1": self.final_l1,
            "kernel": {k: v for k, v in self.solution.stats().items() if k != "levels"},
        }


def kernel_targets(kernel: KernelField, points: torch.Tensor, normals: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(M,) targets at (M, 3) cube queries `x`: the kernel function inside its grid's voxels, else the
    nearest point's distance signed by its normal. `points`/`normals` (N, 3) on `x`'s device."""
    values = kernel.sdf(x).to(x.device)  # (M,)
    inside = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for start in range(0, x.shape[0], kernel.chunk_size):
        idx, _, _ = trilinear(kernel.grid, x[start : start + kernel.chunk_size].to(kernel.coefficients.device))
        inside[start : start + idx.shape[0]] = (idx >= 0).all(dim=1).to(x.device)
    outside = (~inside).nonzero().squeeze(1)
    if outside.numel():
        q = x[outside].cpu().numpy()
        tree = cKDTree(points.cpu().numpy())
        dist, j = tree.query(q, k=1)
        j_t = torch.as_tensor(j, device=x.device)
        sign = torch.sign(((x[outside] - points[j_t]) * normals[j_t]).sum(dim=1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        values[outside] = sign * torch.as_tensor(dist, dtype=x.dtype, device=x.device)
    return values


def sample_pool(points: torch.Tensor, h: float, cfg: InitConfig, generator: torch.Generator) -> torch.Tensor:
    """(cfg.pool_size, 3) queries on `points`' device: near the points, then uniform in the cube."""
    n = cfg.pool_size
    n_near = int(round(cfg.near_fraction * n))
    dev = points.device
    j = torch.randint(0, points.shape[0], (n_near,), device=dev, generator=generator)
    near = points[j] + torch.randn((n_near, 3), device=dev, generator=generator) * (cfg.near_sigma * h)
    uniform = torch.rand((n - n_near, 3), device=dev, generator=generator) * 2 - 1
    return torch.cat([near, uniform]).clamp(-1.0, 1.0)


def distill(
    field: torch.nn.Module,
    kernel: KernelField,
    points: torch.Tensor,
    normals: torch.Tensor,
    cfg: InitConfig,
    *,
    generator: torch.Generator,
    steps: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> float:
    """Regress `field` (a NeuralField) on the kernel function for `steps` (default `cfg.distill_steps`) steps; returns the last batch's mean L1.

    `progress(step, l1)` is called every step (it may raise FitCanceled).
    """
    steps = cfg.distill_steps if steps is None else steps
    dev = points.device
    pool = sample_pool(points, kernel.grid.h, cfg, generator)  # (P, 3)
    with torch.no_grad():
        target = kernel_targets(kernel, points, normals, pool)  # (P,)
        grad_target = None
        if cfg.gradient_weight > 0:
            _, grad_target = kernel.value_and_gradient(pool)  # (P, 3); zero outside the grid's voxels
            grad_target = grad_target.to(dev)
    tables = field.table_parameters()
    groups = [{"params": field.network_parameters(), "lr": cfg.lr}]
    if tables:
        groups.append({"params": tables, "lr": cfg.grid_lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    batch = min(cfg.batch_size, pool.shape[0])
    field.train()
    l1 = float("nan")
    for step in range(steps):
        i = torch.randint(0, pool.shape[0], (batch,), device=dev, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        if grad_target is not None:
            f, g = field.value_and_gradient(pool[i], create_graph=True)
            err = (f - target[i]).abs().mean()
            loss = err + cfg.gradient_weight * (g - grad_target[i]).abs().sum(dim=1).mean()
        else:
            f = field(pool[i])[:, 0]
            err = (f - target[i]).abs().mean()
            loss = err
        loss.backward()
        optimizer.step()
        l1 = float(err.detach())
        if progress is not None:
            progress(step + 1, l1)
    return l1


def warm_started(config: MethodConfig) -> MethodConfig:
    """`config` for the training that follows a warm start: its learning rates times `config.init.lr_factor`."""
    opt = config.optimizer
    factor = config.init.lr_factor
    grid_lr = None if opt.grid_lr is None else opt.grid_lr * factor
    return config.model_copy(update={"optimizer": opt.model_copy(update={"lr": opt.lr * factor, "grid_lr": grid_lr})})


def warm_start(
    field: torch.nn.Module,
    points: torch.Tensor,
    normals: torch.Tensor,
    config: MethodConfig,
    *,
    generator: torch.Generator,
    progress: Callable[[float, str | None], None] | None = None,
) -> WarmStart:
    """Solve the kernel method on (N, 3) cube `points` with unit `normals` and distil it into `field` in place.

    Args:
        generator: draws the sample pool and the batches (on `points`' device).
        progress: `progress(fraction, message)` over the whole warm start (it may raise FitCanceled).
    Raises:
        InputError: a degenerate cloud (as the kernel method). KernelSolveError: the solve did not converge.
    """
    report = progress or (lambda fraction, message=None: None)
    seed = int(config.train.seed)
    t0 = time.perf_counter()
    cube = points.cpu().numpy()
    analysis = analyze_cloud(cube, rng=np.random.default_rng(seed))
    analysis.require_surface()
    report(0.0, "warm start: solving the kernel system")
    with cpu_threads(points.device, config.kernel.cpu_threads):
        solution = solve_kernel_field(points, normals, config.kernel, analysis,
                                      progress=lambda f, m=None: report(0.3 * f, m))
    solve_seconds = time.perf_counter() - t0

    # Never more regression steps than training steps: a short fit asked for is not made long by its warm start.
    steps = min(config.init.distill_steps, config.train.steps)
    report(0.3, f"warm start: distilling the kernel solution ({steps} steps)")
    t1 = time.perf_counter()
    l1 = distill(field, solution.field, points, normals, config.init, generator=generator, steps=steps,
                 progress=lambda step, _l1: report(0.3 + 0.7 * step / steps, None))
    if points.device.type == "cuda":
        torch.cuda.synchronize(points.device)
    return WarmStart(solution=solution, solve_seconds=solve_seconds, distill_steps=steps,
                     distill_seconds=time.perf_counter() - t1, final_l1=l1,
                     lr_factor=config.init.lr_factor)


__all__ = ["WarmStart", "warm_start", "warm_started", "distill", "kernel_targets", "sample_pool"]
