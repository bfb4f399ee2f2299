"""The Task protocol: what the one training loop needs from a task (SDF, image, occupancy)."""

from __future__ import annotations

from typing import Protocol

import torch


class Task(Protocol):
    """A fitting problem: how to draw a batch and score a field on it."""

    in_dim: int
    out_dim: int

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One training batch on the task's device."""
        ...

    def loss(
        self, field: torch.nn.Module, batch: dict[str, torch.Tensor], alpha: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its named terms; `alpha` is the stochastic-preconditioning scale (0 = off)."""
        ...
