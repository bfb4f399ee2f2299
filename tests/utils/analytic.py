"""Analytic fields for tests: known SDFs with the NeuralField interface."""

import torch


class SphereField(torch.nn.Module):
    """f(x) = |x - c| - r with learnable radius r; the exact SDF of a sphere."""

    def __init__(self, radius: float = 0.5, center=(0.0, 0.0, 0.0)):
        super().__init__()
        self.radius = torch.nn.Parameter(torch.tensor(float(radius)))
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))

    def forward(self, x):  # (N, 3) -> (N, 1)
        return ((x - self.center).norm(dim=-1) - self.radius).unsqueeze(-1)

    def value_and_gradient(self, x, *, method="autograd", eps=1e-3, create_graph=True):
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        f = self(x).squeeze(-1)
        (g,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph)
        return f, g

    def table_parameters(self):
        return []

    def network_parameters(self):
        return [self.radius]


def sphere_points(n: int, radius: float = 0.5, seed: int = 0):
    """(n, 3) points on a sphere and their outward normals."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    return d * radius, d


def ellipsoid_view_files(directory, n: int = 3, *, points: int = 2000, center=(0.0, 0.0, 0.0),
                         shift_last: float = 0.0) -> list:
    """`n` overlapping caps of an ellipsoid (semi-axes 0.5, 0.35, 0.25), each sampled on its own and written
    without normals as `directory/view{i}.xyz`; the last one moved by `shift_last` along every axis (a small
    misregistration). Returns the paths."""
    import numpy as np

    paths = []
    for i in range(n):
        d = np.random.default_rng(i).normal(size=(points, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        d = d[d @ np.eye(3)[i % 3] > -0.3]  # (M, 3) a cap seen along axis i
        pts = d * np.array([0.5, 0.35, 0.25]) + np.asarray(center)
        if i == n - 1:
            pts = pts + shift_last
        path = directory / f"view{i}.xyz"
        np.savetxt(path, pts, fmt="%.6f")
        paths.append(path)
    return paths
