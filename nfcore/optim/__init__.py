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


def _can_fuse(params: list[torch.Tensor]) -> bool:
    """Whether PyTorch's fused Adam (one kernel per step) takes these parameters.

    Measured on 2 CPU cores with a 2^17 x 12-level hash table (2M floats): the fused step takes 1.0 ms
    against 5.5 ms for the default multi-tensor one, about 10 ms of a 66 ms SDF training step once
    the cache misses of the separate passes are counted.
    """
    return bool(params) and all(
        p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) and p.device.type in ("cpu", "cuda")
        for p in params
    )


def build_optimizer(field: torch.nn.Module, cfg: AdamConfig | ESGDConfig, *, generator: torch.Generator | None = None) -> torch.optim.Optimizer:
    """Optimizer over `field.table_parameters()` (at grid_lr) and `field.network_parameters()` (at lr)."""
    tables = [p for p in field.table_parameters() if p.requires_grad]
    network = [p for p in field.network_parameters() if p.requires_grad]
    groups = [{"params": network, "lr": cfg.lr, "name": "network"}]
    if tables:
        groups.append({"params": tables, "lr": cfg.grid_lr or cfg.lr, "name": "tables"})
    if isinstance(cfg, AdamConfig):
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                fused=_can_fuse(tables + network))
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
