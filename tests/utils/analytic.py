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
