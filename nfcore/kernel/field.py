"""The implicit function the solve produces: trilinear kernels with fitted coefficients on a sparse grid."""

from __future__ import annotations

import torch

from nfcore.kernel.basis import trilinear
from nfcore.kernel.grid import SparseGrid


class KernelField(torch.nn.Module):
    """f(x) = sum_c alpha_c B_c(x) in cube units (negative inside, gradient ~ the outward normal).

    Outside the grid's voxels the missing kernels count as zero, so values there are meaningless:
    extraction only visits the grid's voxels. Called like a neural field: (M, 3) -> (M, 1).

    Args:
        grid: the sparse grid the coefficients live on.
        coefficients: (M,) float32 node values in voxel units of `grid`.
        chunk_size: points per evaluation batch (bounds the (chunk, 8, 3) temporaries).
    """

    def __init__(self, grid: SparseGrid, coefficients: torch.Tensor, chunk_size: int = 1 << 20):
        super().__init__()
        self.grid = grid
        self.register_buffer("coefficients", coefficients)
        self.chunk_size = int(chunk_size)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        alpha = self.coefficients[idx.clamp(min=0)]
        return torch.where(idx >= 0, alpha, torch.zeros_like(alpha))

    def value_and_gradient(self, x: torch.Tensor, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 3) cube points -> f (M,) in cube units and its gradient (M, 3) (analytic, no autograd), on the field's device."""
        x = x.to(self.coefficients.device)
        values, grads = [], []
        for start in range(0, x.shape[0], self.chunk_size):
            idx, w, dw = trilinear(self.grid, x[start : start + self.chunk_size])
            alpha = self._gather(idx)  # (m, 8)
            values.append((w * alpha).sum(dim=1) * self.grid.h)  # voxel units -> cube units
            grads.append((dw * alpha[..., None]).sum(dim=1))  # d f_u / du = d f / dx
        if not values:
            return x.new_zeros(0), x.new_zeros(0, 3)
        return torch.cat(values), torch.cat(grads)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3) -> (M,) values in cube units, on the field's device."""
        x = x.to(self.coefficients.device)
        out = []
        for start in range(0, x.shape[0], self.chunk_size):
            idx, w, _ = trilinear(self.grid, x[start : start + self.chunk_size])
            out.append((w * self._gather(idx)).sum(dim=1) * self.grid.h)
        return torch.cat(out) if out else x.new_zeros(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf(x)[:, None]


__all__ = ["KernelField"]
