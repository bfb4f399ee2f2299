"""Hash grid on tiny-cuda-nn (`tinycudann`), imported lazily.

tinycudann is not on PyPI and raises EnvironmentError at import time without CUDA, so it is only
imported here, on first use. The module takes [-1, 1] input like the torch grid, maps it to
[0, 1] for tcnn, and exposes tcnn's flat parameters as a (rows, F) `table`, the same layout as
`HashGridEncoding.table`, so tables can be copied between the two backends. tcnn's fused kernels
are its own implementation: `implementation="autograd"` (explicit torch ops) is the torch grid's.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from nfcore.config import HashGridEncodingConfig
from nfcore.encodings.hashgrid import grid_layout
from nfcore.errors import InputError


@functools.cache
def _import_tcnn():
    try:
        import tinycudann
    except (ImportError, OSError) as exc:  # OSError: tcnn's "Unknown compute capability" without CUDA
        return exc
    return tinycudann


def has_tcnn() -> bool:
    """Whether tinycudann can be imported (it also needs a CUDA device to run)."""
    return not isinstance(_import_tcnn(), Exception)


def tcnn_encoding_config(cfg: HashGridEncodingConfig) -> dict:
    """tiny-cuda-nn's encoding dict for this config."""
    return {
        "otype": "HashGrid",
        "n_levels": cfg.n_levels,
        "n_features_per_level": cfg.n_features_per_level,
        "log2_hashmap_size": cfg.log2_hashmap_size,
        "base_resolution": cfg.base_resolution,
        "per_level_scale": cfg.resolved_per_level_scale(),
        "interpolation": "Linear",
    }


class TcnnHashGridEncoding(nn.Module):
    """tinycudann HashGrid: (N, d) in [-1, 1] -> (N, L F) float32, on CUDA."""

    has_tables = True

    def __init__(
        self,
        cfg: HashGridEncodingConfig,
        in_dim: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if cfg.implementation != "function":
            # The config rejects this pairing; a config built without validation must not slip through.
            raise InputError(
                f"hash grid backend 'tcnn' cannot run implementation {cfg.implementation!r}; use backend 'torch'"
            )
        tcnn = _import_tcnn()
        if isinstance(tcnn, Exception):
            raise InputError(f"hash grid backend 'tcnn' needs tinycudann, which cannot be imported: {tcnn}")
        device = torch.device(device) if device is not None else torch.device("cuda")
        if device.type != "cuda":
            raise InputError(f"hash grid backend 'tcnn' needs a CUDA device, got {device}")
        self.layout = grid_layout(cfg, in_dim)
        self.in_dim = in_dim
        self.out_dim = cfg.n_levels * cfg.n_features_per_level
        seed = (
            1337
            if generator is None
            else int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
        )
        with torch.cuda.device(device):
            self.encoding = tcnn.Encoding(in_dim, tcnn_encoding_config(cfg), seed=seed, dtype=torch.float32)
        if self.encoding.params.numel() != self.layout.n_params:
            raise RuntimeError(
                f"tinycudann allocated {self.encoding.params.numel()} parameters, expected {self.layout.n_params}"
            )
        with torch.no_grad():
            init = torch.rand(
                self.layout.n_params, generator=generator, device=generator.device if generator else "cpu"
            )
            self.encoding.params.copy_(((init * 2 - 1) * cfg.init_scale).to(device))

    @property
    def table(self) -> torch.Tensor:
        """tcnn's parameters viewed as the (rows, F) table (shares storage)."""
        return self.encoding.params.view(self.layout.n_rows, self.layout.n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"hash grid expects (N, {self.in_dim}) coordinates, got {tuple(x.shape)}")
        return self.encoding((x + 1) * 0.5).float()
