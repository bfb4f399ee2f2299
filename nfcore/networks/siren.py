"""SIREN (Sitzmann et al. 2020): sin(omega_0 (W x + b)) layers and a linear output.

Layers as SIREN's FCBlock: a first sine layer in -> hidden, then `hidden_layers` sine layers
hidden -> hidden, then a linear hidden -> out (defaults 3 and 256: the SDF net of the paper).
Init: first layer W ~ U(-1/n, 1/n); other layers and the output W ~ U(+-sqrt(6/n) / omega_0);
biases keep PyTorch's default. omega_0 multiplies W x + b (bias included), as in the release code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nfcore.config import SirenNetworkConfig


def sine_init(lin: nn.Linear, *, first: bool, omega_0: float, generator: torch.Generator | None) -> None:
    """SIREN's weight init on `lin` (biases: PyTorch's default U(+-1/sqrt(n)))."""
    n = lin.weight.shape[1]
    bound = 1.0 / n if first else math.sqrt(6.0 / n) / omega_0
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        b = 1.0 / math.sqrt(n)
        lin.bias.uniform_(-b, b, generator=generator)


class SineLayer(nn.Module):
    """sin(omega_0 (W x + b))."""

    def __init__(self, in_dim: int, out_dim: int, *, omega_0: float, first: bool, generator=None):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(in_dim, out_dim)
        sine_init(self.linear, first=first, omega_0=omega_0, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """(N, in_dim) -> (N, out_dim)."""

    def __init__(self, cfg: SirenNetworkConfig, in_dim: int, out_dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        h = cfg.hidden_features
        layers = [SineLayer(in_dim, h, omega_0=cfg.first_omega_0, first=True, generator=generator)]
        layers += [
            SineLayer(h, h, omega_0=cfg.omega_0, first=False, generator=generator) for _ in range(cfg.hidden_layers)
        ]
        self.layers = nn.Sequential(*layers)
        self.output = nn.Linear(h, out_dim)
        sine_init(self.output, first=False, omega_0=cfg.omega_0, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))
