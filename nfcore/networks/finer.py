"""FINER (Liu et al. 2024): sin(omega_0 s z) with z = W x + b and s = |z| + 1.

The release code of Ling et al. treats s as a constant in the backward pass (`detach_scale`), so
autograd spatial gradients see omega_0 s cos(omega_0 s z) W instead of the true
omega_0 (2|z| + 1) cos(...) W. Layout and init as SIREN (first layer U(+-1/n), others and the
linear output U(+-sqrt(6/n) / omega_0)); optional first-layer bias U(-k, k).
"""

from __future__ import annotations

import torch
from torch import nn

from nfcore.config import FinerNetworkConfig
from nfcore.networks.siren import sine_init


def finer_activation(z: torch.Tensor, omega_0: float, detach_scale: bool) -> torch.Tensor:
    """sin(omega_0 (|z| + 1) z), the scale optionally detached."""
    s = z.abs() + 1
    if detach_scale:
        s = s.detach()
    return torch.sin(omega_0 * s * z)


class FinerLayer(nn.Module):
    """One FINER layer: Linear then the variable-periodic sine."""

    def __init__(self, in_dim, out_dim, *, omega_0, first, detach_scale, first_bias_scale=None, generator=None):
        super().__init__()
        self.omega_0 = omega_0
        self.detach_scale = detach_scale
        self.linear = nn.Linear(in_dim, out_dim)
        sine_init(self.linear, first=first, omega_0=omega_0, generator=generator)
        if first and first_bias_scale is not None:
            with torch.no_grad():
                self.linear.bias.uniform_(-first_bias_scale, first_bias_scale, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return finer_activation(self.linear(x), self.omega_0, self.detach_scale)


class Finer(nn.Module):
    """(N, in_dim) -> (N, out_dim)."""

    def __init__(self, cfg: FinerNetworkConfig, in_dim: int, out_dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        h = cfg.hidden_features
        kw = dict(detach_scale=cfg.detach_scale, generator=generator)
        layers = [
            FinerLayer(in_dim, h, omega_0=cfg.first_omega_0, first=True, first_bias_scale=cfg.first_bias_scale, **kw)
        ]
        layers += [FinerLayer(h, h, omega_0=cfg.omega_0, first=False, **kw) for _ in range(cfg.hidden_layers)]
        self.layers = nn.Sequential(*layers)
        self.output = nn.Linear(h, out_dim)
        sine_init(self.output, first=False, omega_0=cfg.omega_0, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))
