"""A training-free reconstruction in the Neural Kernel Surface Reconstruction family (`method: kernel`).

Trilinear B-spline kernels on a sparse voxel grid near the points (grid.py, basis.py), a gradient-fitting
least-squares solve by preconditioned conjugate gradients in PyTorch (solve.py), coarse to fine
(reconstruct.py), and marching cubes over the occupied voxels only with trimming where no point
supports the surface (extract.py). Unlike NKSR there are no learned kernel features: the kernels
are fixed B-splines, so nothing needs pretrained weights or custom CUDA code.
"""

from nfcore.kernel.extract import extract_sparse, trim
from nfcore.kernel.field import KernelField
from nfcore.kernel.grid import SparseGrid
from nfcore.kernel.reconstruct import KernelSolution, choose_depth, solve_kernel_field
from nfcore.kernel.solve import KernelSolveError

__all__ = ["KernelField", "KernelSolution", "KernelSolveError", "SparseGrid", "choose_depth", "extract_sparse",
           "solve_kernel_field", "trim"]
