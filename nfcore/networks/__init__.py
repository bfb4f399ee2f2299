"""Networks: (N, in_dim) -> (N, out_dim) coordinate MLPs.

`build_network(cfg, in_dim, out_dim, sdf_init=..., generator=...)` maps a config to a module.
Layer counts: the MLP's `hidden_layers` counts hidden layers (tiny-cuda-nn's convention:
"2x64" = in -> 64 -> 64 -> out); SIREN, FINER, Gauss and WIRE follow SIREN's FCBlock
(a first layer, then `hidden_layers` hidden layers, then a linear output), so their defaults
reproduce the published networks.
"""

from __future__ import annotations

import torch
from torch import nn

from nfcore.config import (
    FinerNetworkConfig,
    GaussNetworkConfig,
    MLPNetworkConfig,
    SirenNetworkConfig,
    WireNetworkConfig,
)
from nfcore.errors import InputError
from nfcore.networks.finer import Finer, finer_activation
from nfcore.networks.gauss import GaussNet, gauss_activation
from nfcore.networks.mlp import MLP
from nfcore.networks.siren import Siren
from nfcore.networks.wire import Wire, real_gabor

__all__ = [
    "build_network",
    "MLP",
    "Siren",
    "Finer",
    "GaussNet",
    "Wire",
    "finer_activation",
    "gauss_activation",
    "real_gabor",
]


def build_network(
    cfg,
    in_dim: int,
    out_dim: int,
    *,
    sdf_init: bool = False,
    generator: torch.Generator | None = None,
    raw_dims: int | None = None,
) -> nn.Module:
    """The network for `cfg` on CPU (move it with `.to`).

    Args:
        sdf_init: apply the MLP's geometric init (a sphere SDF); other networks ignore it.
        raw_dims: the first `raw_dims` inputs are raw coordinates, the rest encoding features
            (their first-layer weights start at zero under geometric init); None = all raw.
    """
    if in_dim < 1 or out_dim < 1:
        raise InputError(f"network dimensions must be >= 1, got in_dim={in_dim}, out_dim={out_dim}")
    if isinstance(cfg, MLPNetworkConfig):
        return MLP(cfg, in_dim, out_dim, sdf_init=sdf_init, raw_dims=raw_dims, generator=generator)
    if isinstance(cfg, SirenNetworkConfig):
        return Siren(cfg, in_dim, out_dim, generator=generator)
    if isinstance(cfg, FinerNetworkConfig):
        return Finer(cfg, in_dim, out_dim, generator=generator)
    if isinstance(cfg, GaussNetworkConfig):
        return GaussNet(cfg, in_dim, out_dim, generator=generator)
    if isinstance(cfg, WireNetworkConfig):
        return Wire(cfg, in_dim, out_dim, generator=generator)
    raise InputError(f"unknown network config {type(cfg).__name__}")
