"""Encodings: (N, d) coordinates in [-1, 1] -> (N, out_dim) features.

`build_encoding(cfg, in_dim, device=..., generator=...)` maps a config to a module; every module
has `in_dim`, `out_dim` and `has_tables` (True for hash grid and triplane, whose parameters get the
grid learning rate).
"""

from __future__ import annotations

import torch
from torch import nn

from nfcore.config import (
    FourierEncodingConfig,
    HashGridEncodingConfig,
    IdentityEncodingConfig,
    TriplaneEncodingConfig,
)
from nfcore.encodings.fourier import FourierEncoding
from nfcore.encodings.hashgrid import GridLayout, HashGridEncoding, grid_layout
from nfcore.encodings.hashgrid_tcnn import TcnnHashGridEncoding, has_tcnn, tcnn_encoding_config
from nfcore.encodings.identity import IdentityEncoding
from nfcore.encodings.triplane import TriplaneEncoding
from nfcore.errors import InputError

__all__ = [
    "build_encoding",
    "hashgrid_backend",
    "IdentityEncoding",
    "FourierEncoding",
    "HashGridEncoding",
    "TcnnHashGridEncoding",
    "TriplaneEncoding",
    "GridLayout",
    "grid_layout",
    "has_tcnn",
    "tcnn_encoding_config",
]


def hashgrid_backend(
    cfg: HashGridEncodingConfig, device: torch.device | str | None, *, tcnn_available: bool | None = None
) -> str:
    """The backend a hash grid config resolves to on `device`: "tcnn" or "torch".

    Args:
        tcnn_available: whether tinycudann imports; None asks `has_tcnn()` (only when it matters).
    Raises:
        InputError: backend "tcnn" without tinycudann or without a CUDA device.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def available() -> bool:
        return has_tcnn() if tcnn_available is None else tcnn_available

    if cfg.backend == "tcnn":
        if not available():
            raise InputError(
                "hash grid backend 'tcnn' was requested but tinycudann is not importable; use 'torch' or 'auto'"
            )
        if dev.type != "cuda":
            raise InputError(f"hash grid backend 'tcnn' needs a CUDA device, got {dev}; use 'torch' or 'auto'")
        return "tcnn"
    # "autograd" asks for explicit differentiable torch ops, which tcnn's fused kernels are not.
    if cfg.backend == "auto" and cfg.implementation == "function" and dev.type == "cuda" and available():
        return "tcnn"
    return "torch"


def build_encoding(
    cfg,
    in_dim: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """The encoding module for `cfg` with `in_dim` inputs, parameters on `device`."""
    if in_dim < 1:
        raise InputError(f"encoding input dimension must be >= 1, got {in_dim}")
    if isinstance(cfg, IdentityEncodingConfig):
        return IdentityEncoding(in_dim)
    if isinstance(cfg, FourierEncodingConfig):
        return FourierEncoding(cfg, in_dim, device=device)
    if isinstance(cfg, HashGridEncodingConfig):
        if hashgrid_backend(cfg, device) == "tcnn":
            return TcnnHashGridEncoding(cfg, in_dim, device=device, generator=generator)
        return HashGridEncoding(cfg, in_dim, device=device, generator=generator, implementation=cfg.implementation)
    if isinstance(cfg, TriplaneEncodingConfig):
        return TriplaneEncoding(cfg, in_dim, device=device, generator=generator)
    raise InputError(f"unknown encoding config {type(cfg).__name__}")
