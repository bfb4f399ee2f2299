"""Optimizers and learning-rate schedules.

`build_optimizer` gives grid tables (hash grid, triplane) their own learning rate, as Instant-NGP
style fields need a much larger one than the network. ESGD (Chng et al. 2025) follows the
standard Optimizer protocol plus `should_create_graph()`, which the training loop asks before
each backward pass.
"""

from __future__ import annotations

import torch

from nfcore.config import AdamConfig, ESGDConfig
from nfcore.optim.schedule import build_scheduler, lr_factor


def _adam(groups: list[dict], cfg: AdamConfig) -> torch.optim.Adam:
    """PyTorch's fused Adam (one kernel per step) where this PyTorch has it for the parameters' device,
    else the default one (CPU support came with PyTorch 2.4; the project allows 2.2).

    Measured on 2 CPU cores with a 2^17-row, 12-level hash table (2M floats): the fused step alone takes
    1.0 ms against 5.5 ms, about 2 ms of the balanced preset's 62-64 ms SDF training step.
    """
    kwargs = {"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.Adam(groups, fused=True, **kwargs)
    except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
        return torch.optim.Adam(groups, **kwargs)


def build_optimizer(field: torch.nn.Module, cfg: AdamConfig | ESGDConfig, *, generator: torch.Generator | None = None) -> torch.optim.Optimizer:
    """Optimizer over `field.table_parameters()` (at grid_lr) and `field.network_parameters()` (at lr)."""
    tables = [p for p in field.table_parameters() if p.requires_grad]
    network = [p for p in field.network_parameters() if p.requires_grad]
    groups = [{"params": network, "lr": cfg.lr, "name": "network"}]
    if tables:
        groups.append({"params": tables, "lr": cfg.grid_lr or cfg.lr, "name": "tables"})
    if isinstance(cfg, AdamConfig):
        return _adam(groups, cfg)
    if isinstance(cfg, ESGDConfig):
        from nfcore.optim.esgd import ESGD

        return ESGD(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            update_d_every=cfg.update_d_every,
            d_warmup=cfg.d_warmup,
            bias_correction=cfg.bias_correction,
            generator=generator,
        )
    raise ValueError(f"unknown optimizer config {cfg!r}")


__all__ = ["build_optimizer", "build_scheduler", "lr_factor"]
