"""MLP with ReLU or softplus, optional skips and weight norm, and SAL/IGR geometric init.

Layers: in -> hidden x `hidden_layers` -> out (`hidden_layers` counts hidden layers, as
tiny-cuda-nn's n_hidden_layers and IGR's dims list do: "2x64" is in -> 64 -> 64 -> out).
A layer listed in `skip_layers` (index into the hidden layers, 1 .. hidden_layers - 1) takes
cat(h, input) / sqrt(2).

Geometric init (Atzmon and Lipman, SAL; Gropp et al., IGR) makes f(x) ~ |x| - r at start:
hidden weights N(0, 2 / fan_out), biases 0, output weights N(sqrt(pi) / sqrt(fan_in), 1e-4),
output bias -r. When the input is raw coordinates followed by encoding features
(`raw_dims` < in_dim), the weights on the features are zero in the first and skip layers, so
the initial field is the sphere whatever the encoding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nfcore.config import MLPNetworkConfig
from nfcore.errors import InputError


class MLP(nn.Module):
    """(N, in_dim) -> (N, out_dim)."""

    def __init__(
        self,
        cfg: MLPNetworkConfig,
        in_dim: int,
        out_dim: int,
        *,
        sdf_init: bool = False,
        raw_dims: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        h = cfg.hidden_features
        bad = [i for i in cfg.skip_layers if not 1 <= i < cfg.hidden_layers]
        if bad:
            raise InputError(f"mlp skip_layers must be in 1..{cfg.hidden_layers - 1}, got {bad}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.skips = set(cfg.skip_layers)
        raw = in_dim if raw_dims is None else raw_dims
        geometric = sdf_init and cfg.geometric_init
        layers = []
        for i in range(cfg.hidden_layers + 1):
            fan_in = in_dim if i == 0 else h + (in_dim if i in self.skips else 0)
            fan_out = out_dim if i == cfg.hidden_layers else h
            lin = nn.Linear(fan_in, fan_out)
            if geometric:
                self._geometric_init(lin, i, cfg, in_dim, raw, generator)
            elif generator is not None:
                _default_init(lin, generator)
            if cfg.weight_norm:
                lin = nn.utils.parametrizations.weight_norm(lin)
            layers.append(lin)
        self.layers = nn.ModuleList(layers)
        if cfg.activation == "relu":
            self.act = nn.ReLU()
        else:
            self.act = nn.Softplus(beta=cfg.softplus_beta)

    def _geometric_init(self, lin, i, cfg, in_dim, raw, generator):
        with torch.no_grad():
            fan_out, fan_in = lin.weight.shape
            if i == cfg.hidden_layers:
                lin.weight.normal_(math.sqrt(math.pi) / math.sqrt(fan_in), 1e-4, generator=generator)
                lin.bias.fill_(-cfg.geometric_init_radius)
                return
            lin.weight.normal_(0.0, math.sqrt(2.0) / math.sqrt(fan_out), generator=generator)
            lin.bias.zero_()
            if i == 0:
                lin.weight[:, raw:] = 0.0
            elif i in self.skips:
                # the re-injected input sits after the h hidden features
                lin.weight[:, fan_in - in_dim + raw :] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, lin in enumerate(self.layers):
            if i in self.skips:
                h = torch.cat([h, x], dim=-1) / math.sqrt(2.0)
            h = lin(h)
            if i < last:
                h = self.act(h)
        return h


def _default_init(lin: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's nn.Linear init (U(+-1/sqrt(fan_in))), drawn from `generator`."""
    bound = 1.0 / math.sqrt(lin.weight.shape[1])
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        lin.bias.uniform_(-bound, bound, generator=generator)
