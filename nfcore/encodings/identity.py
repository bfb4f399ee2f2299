"""Identity encoding: the raw coordinates."""

from __future__ import annotations

import torch
from torch import nn


class IdentityEncoding(nn.Module):
    """Returns its input unchanged: (N, d) -> (N, d)."""

    has_tables = False

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
