"""WIRE, real Gabor variant (Saragadam et al. 2023): cos(omega_0 z_f) exp(-(s_0 z_s)^2).

Each layer has two linear maps of the same input, z_f = W_f x + b_f (frequency) and
z_s = W_s x + b_s (scale). Layout as SIREN's (first layer, `hidden_layers` hidden layers, linear
output); PyTorch's default init, as in the WIRE code.
"""

from __future__ import annotations

import torch
from torch import nn

from nfcore.config import WireNetworkConfig
from nfcore.networks.mlp import _default_init


def real_gabor(z_f: torch.Tensor, z_s: torch.Tensor, omega_0: float, scale: float) -> torch.Tensor:
    """cos(omega_0 z_f) exp(-(scale z_s)^2)."""
    return torch.cos(omega_0 * z_f) * torch.exp(-((scale * z_s) ** 2))


class RealGaborLayer(nn.Module):
    """Two linear maps combined by the real Gabor wavelet."""

    def __init__(self, in_dim: int, out_dim: int, *, omega_0: float, scale: float, generator=None):
        super().__init__()
        self.omega_0, self.scale = omega_0, scale
        self.freqs = nn.Linear(in_dim, out_dim)
        self.scales = nn.Linear(in_dim, out_dim)
        if generator is not None:
            _default_init(self.freqs, generator)
            _default_init(self.scales, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return real_gabor(self.freqs(x), self.scales(x), self.omega_0, self.scale)


class Wire(nn.Module):
    """(N, in_dim) -> (N, out_dim)."""

    def __init__(self, cfg: WireNetworkConfig, in_dim: int, out_dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        h = cfg.hidden_features
        kw = dict(omega_0=cfg.omega_0, scale=cfg.scale, generator=generator)
        layers = [RealGaborLayer(in_dim, h, **kw)] + [RealGaborLayer(h, h, **kw) for _ in range(cfg.hidden_layers)]
        self.layers = nn.Sequential(*layers)
        self.output = nn.Linear(h, out_dim)
        if generator is not None:
            _default_init(self.output, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))
