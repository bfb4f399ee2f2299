"""Choosing the compute device: CUDA when present (or asked for), else CPU."""

from __future__ import annotations

import torch

from nfcore.errors import InputError


def resolve_device(requested: str | torch.device | None = "auto") -> torch.device:
    """`auto`/None -> cuda if available else cpu; `cuda` without a GPU is an InputError."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA device is available; use 'cpu' or 'auto'")
    return device


def device_kind(device: torch.device) -> str:
    """'cuda' or 'cpu': the key presets use."""
    return "cuda" if device.type == "cuda" else "cpu"
