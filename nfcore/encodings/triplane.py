"""Triplane encoding: axis-aligned feature planes sampled bilinearly.

3D input: planes xy, xz, yz, each sampled with `grid_sample` (bilinear, align_corners=True, so
plane texels sit on a regular lattice that includes the cube faces), then concatenated, summed or
multiplied. 2D input: a single plane. Unlike nerfstudio's TriplaneEncoding, coordinates are not
detached: SDF losses need d f / d x through the planes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nfcore.config import TriplaneEncodingConfig
from nfcore.errors import InputError

# Axis pairs per plane; grid_sample reads grid[..., 0] as the width (last) axis of the plane.
_PLANE_AXES = {2: ((0, 1),), 3: ((0, 1), (0, 2), (1, 2))}


class TriplaneEncoding(nn.Module):
    """(N, d) in [-1, 1] -> (N, P F) for concat, (N, F) for sum/product; P = 3 planes (1 in 2D)."""

    has_tables = True

    def __init__(
        self,
        cfg: TriplaneEncodingConfig,
        in_dim: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if in_dim not in _PLANE_AXES:
            raise InputError(f"triplane encoding needs 2D or 3D input, got in_dim={in_dim}")
        self.in_dim = in_dim
        self.axes = _PLANE_AXES[in_dim]
        self.reduce = cfg.reduce
        n_planes = len(self.axes)
        planes = torch.randn((n_planes, cfg.n_features, cfg.resolution, cfg.resolution), generator=generator)
        self.planes = nn.Parameter((planes * cfg.init_scale).to(device))  # (P, F, R, R)
        self.out_dim = cfg.n_features * (n_planes if cfg.reduce == "concat" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        coords = torch.stack([x[:, list(ax)] for ax in self.axes])  # (P, N, 2)
        feats = F.grid_sample(
            self.planes,
            coords.view(len(self.axes), 1, n, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )  # (P, F, 1, N)
        feats = feats[:, :, 0, :].permute(2, 0, 1)  # (N, P, F)
        if self.reduce == "concat":
            return feats.reshape(n, -1)
        if self.reduce == "sum":
            return feats.sum(dim=1)
        return feats.prod(dim=1)
