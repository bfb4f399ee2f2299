"""The compactly supported kernels: tensor-product trilinear B-splines on the nodes of a sparse grid.

f(x) = sum_c alpha_c B((x - x_c) / h) with B(u) = prod_a max(0, 1 - |u_a|): each point sees the 8
corners of its voxel. Values and coefficients are in voxel units of the grid (f_u = f / h), so a
signed distance has gradient of length 1 in voxel coordinates at every level: the solve and its
weights do not depend on the resolution. Trilinear kernels keep every point row at 8 entries, the
sparsest a gradient fit allows, which is what makes million-point solves fit in memory.
"""

from __future__ import annotations

import torch

from nfcore.kernel.grid import CORNERS, SparseGrid


def trilinear(grid: SparseGrid, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Basis supports, values and gradients at (P, 3) cube points `x`.

    Returns:
        idx (P, 8) int64 node positions in `grid.nodes` (-1 where a corner is not in the grid),
        w (P, 8) kernel values, dw (P, 8, 3) kernel gradients with respect to voxel coordinates.
    """
    r = grid.resolution
    u = (x + 1.0) * (r / 2.0)  # (P, 3) voxel coordinates
    cell = torch.floor(u).clamp_(0, r - 1)
    t = u - cell  # (P, 3) in [0, 1] inside the grid
    corners = CORNERS.to(x.device)  # (8, 3)
    idx = grid.corner_nodes(cell.to(torch.int64))  # (P, 8)
    upper = corners.to(torch.bool)[None]  # (1, 8, 3)
    tt = t[:, None, :].expand(-1, 8, -1)  # (P, 8, 3)
    wa = torch.where(upper, tt, 1.0 - tt)  # (P, 8, 3) per-axis factors
    w = wa.prod(dim=-1)  # (P, 8)
    sign = torch.where(upper, 1.0, -1.0).to(x.dtype)  # (1, 8, 3) d(factor)/du
    dw = torch.stack(
        [sign[..., 0] * wa[..., 1] * wa[..., 2], sign[..., 1] * wa[..., 0] * wa[..., 2], sign[..., 2] * wa[..., 0] * wa[..., 1]],
        dim=-1,
    )  # (P, 8, 3)
    return idx, w, dw


__all__ = ["trilinear"]
