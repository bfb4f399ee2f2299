"""NeRF-style Fourier features (positional encoding).

Frequencies f_k = 2^k for k = 0 .. L-1 (2^linspace(0, L-1, L)), optionally times pi; for each
axis and frequency the features are sin(f x) and sin(f x + pi/2) = cos(f x). Layout as in
SDFStudio's NeRFEncoding (used by the stochastic-preconditioning release): all sines of the
(axis, frequency) pairs first, then all the shifted sines; the raw input first when requested.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nfcore.config import FourierEncodingConfig


class FourierEncoding(nn.Module):
    """(N, d) in [-1, 1] -> (N, 2 d L [+ d])."""

    has_tables = False

    def __init__(self, cfg: FourierEncodingConfig, in_dim: int, *, device: torch.device | str | None = None):
        super().__init__()
        self.in_dim = in_dim
        self.include_input = cfg.include_input
        freqs = 2.0 ** torch.linspace(0.0, cfg.n_frequencies - 1, cfg.n_frequencies, dtype=torch.float64)
        if cfg.include_pi:
            freqs = freqs * math.pi
        # A buffer, not a parameter: it moves with .to(device) and is not trained.
        self.register_buffer("freqs", freqs.to(device=device, dtype=torch.float32), persistent=False)  # (L,)
        self.out_dim = 2 * in_dim * cfg.n_frequencies + (in_dim if cfg.include_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x[..., :, None] * self.freqs.to(x.dtype)).flatten(-2)  # (N, d L)
        enc = torch.sin(torch.cat([scaled, scaled + math.pi / 2], dim=-1))  # (N, 2 d L)
        if self.include_input:
            enc = torch.cat([x, enc], dim=-1)
        return enc
