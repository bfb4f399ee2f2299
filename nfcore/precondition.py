"""Stochastic preconditioning (Ling et al. 2025): annealed Gaussian noise on query points.

During training each query coordinate x in [-1, 1]^d is replaced by x + noise, with the noise drawn
independently per point and per axis. The scale alpha is stated in unit-cube units ([0, 1]^d, as in
the release code), so the standard deviation in [-1, 1] is 2 alpha. Points that leave the cube are
reflected back (or clamped). Targets are not moved. Extraction never adds noise.
"""

from __future__ import annotations

import torch

from nfcore.config import PreconditionConfig


def noise_scale(step: int, total_steps: int, cfg: PreconditionConfig, decay_factor: float, enabled: bool = True) -> float:
    """Alpha at `step` (0-based) of `total_steps`, in unit-cube units; 0 means off.

    alpha = a0 for step < start; a0 * g^(-p) with p = (step - start) / (end - start) for
    start <= step < end; 0 from `end` on. `start` and `end` are fractions of `total_steps`.
    """
    if not enabled or cfg.initial_scale <= 0:
        return 0.0
    start = int(round(cfg.start * total_steps))
    end = int(round(cfg.end * total_steps))
    if step < start:
        return cfg.initial_scale
    if step >= end:
        return 0.0
    p = (step - start) / (end - start)
    return cfg.initial_scale * decay_factor ** (-p)


def reflect_unit(c: torch.Tensor) -> torch.Tensor:
    """Reflect coordinates into [0, 1]: c mod 2, then values above 1 become 2 - c."""
    c = torch.remainder(c, 2.0)
    return torch.where(c > 1.0, 2.0 - c, c)


def perturb(
    x: torch.Tensor,
    alpha: float,
    *,
    boundary: str = "reflect",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add N(0, (2 alpha)^2) noise to points x in [-1, 1]^d and bring them back into the cube.

    Args:
        x: (N, d) query points in [-1, 1].
        alpha: noise standard deviation in unit-cube units; 0 returns x unchanged.
        boundary: "reflect" (release default) or "clamp".
        generator: torch.Generator on x's device, for reproducible noise.
    Returns:
        (N, d) perturbed points in [-1, 1], differentiable with respect to x.
    """
    if alpha <= 0:
        return x
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    c = (x + 1.0) * 0.5 + alpha * noise  # unit-cube coordinates
    if boundary == "reflect":
        c = reflect_unit(c)
    elif boundary == "clamp":
        c = c.clamp(0.0, 1.0)
    else:
        raise ValueError(f"boundary must be 'reflect' or 'clamp', got {boundary!r}")
    return c * 2.0 - 1.0
