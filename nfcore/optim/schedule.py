"""Learning-rate schedules over a fixed number of steps (LambdaLR multipliers)."""

from __future__ import annotations

import math

import torch

from nfcore.config import ScheduleConfig


def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    warmup = int(cfg.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total_steps - warmup)  # 0..1 after warm-up
    if cfg.kind == "constant":
        return 1.0
    if cfg.kind == "cosine":
        return cfg.final_factor + (1.0 - cfg.final_factor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if cfg.kind == "exponential":
        return cfg.final_factor ** min(t, 1.0)
    if cfg.kind == "step":
        return cfg.step_gamma ** math.floor(t / cfg.step_every)
    raise ValueError(f"unknown schedule kind {cfg.kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that applies `lr_factor` to every parameter group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, cfg))
