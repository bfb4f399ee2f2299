"""Triplane encoding: axis-aligned feature planes sampled bilinearly.

3D input: planes xy, xz, yz, each sampled bilinearly as `grid_sample(mode="bilinear",
padding_mode="border", align_corners=True)` does (plane texels on a regular lattice that includes
the cube faces), then concatenated, summed or multiplied. 2D input: a single plane. Unlike
nerfstudio's TriplaneEncoding, coordinates are not detached: SDF losses need d f / d x through the
planes.

Why not `grid_sample` itself: on CUDA its backward has no derivative (`grid_sampler_2d_backward`),
so an eikonal loss (a double backward) fails there. The same bilinear interpolation written as
gathers and products is differentiable to any order on every device, and the tests check it
against `grid_sample`.
"""

from __future__ import annotations

import torch
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
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"triplane expects (N, {self.in_dim}) coordinates, got {tuple(x.shape)}")
        n = x.shape[0]
        coords = torch.stack([x[:, list(ax)] for ax in self.axes])  # (P, N, 2) in [-1, 1]
        feats = sample_planes(self.planes, coords).permute(1, 0, 2)  # (N, P, F)
        if self.reduce == "concat":
            return feats.reshape(n, -1)
        if self.reduce == "sum":
            return feats.sum(dim=1)
        return feats.prod(dim=1)


def sample_planes(planes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of planes (P, F, R, R) at coords (P, N, 2) in [-1, 1] -> (P, N, F).

    grid_sample's convention: coords[..., 0] runs along the last (width) axis; align_corners=True
    puts texel 0 at -1 and texel R-1 at +1; border padding clamps the position (zero gradient
    outside the cube).
    """
    n_planes, n_feat, res, _ = planes.shape
    table = planes.permute(0, 2, 3, 1).reshape(n_planes * res * res, n_feat)  # (P R R, F), row = (p R + y) R + x
    pos = ((coords + 1) * (0.5 * (res - 1))).clamp(0, res - 1)  # (P, N, 2) texel units
    base = pos.detach().floor().clamp(max=res - 2)  # lower corner; the last texel is reached with t = 1
    t = pos - base  # (P, N, 2) in [0, 1], differentiable w.r.t. coords
    corner = base.to(torch.int64)
    plane = torch.arange(n_planes, device=coords.device).view(-1, 1) * (res * res)
    row00 = plane + corner[..., 1] * res + corner[..., 0]  # (P, N)
    rows = torch.stack((row00, row00 + 1, row00 + res, row00 + res + 1))  # (4, P, N): x0y0, x1y0, x0y1, x1y1
    vals = table.index_select(0, rows.reshape(-1)).view(4, *row00.shape, n_feat)  # (4, P, N, F)
    tx, ty = t[..., 0:1], t[..., 1:2]  # (P, N, 1)
    bottom = vals[0] + (vals[1] - vals[0]) * tx
    top = vals[2] + (vals[3] - vals[2]) * tx
    return bottom + (top - bottom) * ty
