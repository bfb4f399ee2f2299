"""NeuralField: an encoding followed by a network, with spatial gradients.

With `sdf=True` and an MLP with geometric init, the raw coordinates are concatenated in front of
the encoding features and the MLP starts as the SDF of a sphere whatever the encoding (the
feature weights start at zero), as in the stochastic-preconditioning release.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from nfcore.config import IdentityEncodingConfig, MLPNetworkConfig
from nfcore.encodings import HashGridEncoding, build_encoding
from nfcore.errors import InputError
from nfcore.networks import build_network


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """Network weights are drawn on CPU; a CUDA generator seeds a CPU one (deterministically)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


class NeuralField(nn.Module):
    """f: (N, in_dim) in [-1, 1] -> (N, out_dim).

    Args:
        encoding_cfg: encoding config (identity, fourier, hashgrid, triplane).
        network_cfg: network config (mlp, siren, finer, gauss, wire).
        in_dim, out_dim: coordinate and output dimensions.
        sdf: the field is an SDF (enables the MLP's geometric init and the raw-xyz input).
        device: where the parameters live.
        generator: randomness for every initialisation.
    """

    def __init__(
        self,
        encoding_cfg,
        network_cfg,
        in_dim: int,
        out_dim: int,
        *,
        sdf: bool = False,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.encoding = build_encoding(encoding_cfg, in_dim, device=device, generator=generator)
        geometric = sdf and isinstance(network_cfg, MLPNetworkConfig) and network_cfg.geometric_init
        # Identity features already are the coordinates: concatenating them again adds nothing.
        self.concat_input = geometric and not isinstance(encoding_cfg, IdentityEncodingConfig)
        net_in = self.encoding.out_dim + (in_dim if self.concat_input else 0)
        self.network = build_network(
            network_cfg,
            net_in,
            out_dim,
            sdf_init=geometric,
            generator=_cpu_generator(generator),
            raw_dims=in_dim if self.concat_input else None,
        ).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def _forward(self, x: torch.Tensor, x_grad_once: bool = False) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"field expects (N, {self.in_dim}) coordinates, got {tuple(x.shape)}")
        if x_grad_once and isinstance(self.encoding, HashGridEncoding):
            h = self.encoding(x, x_grad_once=True)  # (N, E)
        else:
            h = self.encoding(x)  # (N, E)
        if self.concat_input:
            h = torch.cat([x, h], dim=-1)  # (N, d + E)
        return self.network(h)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N,) for a scalar field."""
        return self.forward(x)[:, 0]

    def table_parameters(self) -> list[nn.Parameter]:
        """Grid tables (hash grid, triplane): trained at the grid learning rate."""
        return list(self.encoding.parameters()) if getattr(self.encoding, "has_tables", False) else []

    def network_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (network weights, table-free encodings)."""
        tables = {id(p) for p in self.table_parameters()}
        return [p for p in self.parameters() if id(p) not in tables]

    def value_and_gradient(
        self,
        x: torch.Tensor,
        *,
        method: Literal["autograd", "finite_difference"] = "autograd",
        eps: float = 1e-3,
        create_graph: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f (N,) and its spatial gradient (N, d) at x (N, d), for out_dim 1.

        Args:
            method: "autograd" differentiates the field (create_graph for losses on the gradient:
                a double backward); "finite_difference" uses central differences with step eps,
                computed in one batched forward of the 2d shifted copies; they are
                differentiable w.r.t. the parameters with a first-order backward only.
            eps: finite-difference step in [-1, 1] units.
            create_graph: keep the graph of the autograd gradient (needed to train on it).
        """
        if self.out_dim != 1:
            raise InputError(f"value_and_gradient needs a scalar field, this one has out_dim={self.out_dim}")
        if method == "autograd":
            with torch.enable_grad():
                private = not x.requires_grad
                xg = x.detach().requires_grad_(True) if private else x
                # A private leaf's gradient is read once, here; later backwards skip d/dx.
                f = self._forward(xg, x_grad_once=private)[:, 0]  # (N,)
                (grad,) = torch.autograd.grad(f, xg, torch.ones_like(f), create_graph=create_graph)
            return f, grad
        if method == "finite_difference":
            if not eps > 0:
                raise InputError(f"finite-difference eps must be > 0, got {eps}")
            n, d = x.shape
            step = torch.eye(d, dtype=x.dtype, device=x.device) * eps  # (d, d)
            shifted = torch.cat(
                [x.unsqueeze(0), x.unsqueeze(0) + step.unsqueeze(1), x.unsqueeze(0) - step.unsqueeze(1)]
            )
            out = self.forward(shifted.reshape(-1, d))[:, 0].view(2 * d + 1, n)  # (2d + 1, N)
            grad = (out[1 : d + 1] - out[d + 1 :]).T / (2 * eps)  # (N, d)
            return out[0], grad
        raise InputError(f"gradient method must be 'autograd' or 'finite_difference', got {method!r}")
