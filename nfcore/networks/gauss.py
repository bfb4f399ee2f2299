"""Gaussian-activation network (Ramasinghe and Lucey 2022): exp(-z^2 / (2 sigma^2)), z = W x + b.

Layout as SIREN's (first layer, `hidden_layers` hidden layers, linear output); weights keep
PyTorch's default init, as in the WIRE and Chng et al. code.
"""

from __future__ import annotations

import torch
from torch import nn

from nfcore.config import GaussNetworkConfig
from nfcore.networks.mlp import _default_init


def gauss_activation(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-z^2 / (2 sigma^2))."""
    return torch.exp(-(z * z) / (2.0 * sigma * sigma))


class GaussLayer(nn.Module):
    """Linear then the Gaussian bump."""

    def __init__(self, in_dim: int, out_dim: int, *, sigma: float, generator=None):
        super().__init__()
        self.sigma = sigma
        self.linear = nn.Linear(in_dim, out_dim)
        if generator is not None:
            _default_init(self.linear, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gauss_activation(self.linear(x), self.sigma)


class GaussNet(nn.Module):
    """(N, in_dim) -> (N, out_dim)."""

    def __init__(self, cfg: GaussNetworkConfig, in_dim: int, out_dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        h = cfg.hidden_features
        layers = [GaussLayer(in_dim, h, sigma=cfg.sigma, generator=generator)]
        layers += [GaussLayer(h, h, sigma=cfg.sigma, generator=generator) for _ in range(cfg.hidden_layers)]
        self.layers = nn.Sequential(*layers)
        self.output = nn.Linear(h, out_dim)
        if generator is not None:
            _default_init(self.output, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))
