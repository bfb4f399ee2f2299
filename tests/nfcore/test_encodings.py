"""Identity, Fourier and triplane encodings; build_encoding dispatch."""

import math

import pytest
import torch

from nfcore.config import (
    FourierEncodingConfig,
    HashGridEncodingConfig,
    IdentityEncodingConfig,
    TriplaneEncodingConfig,
)
from nfcore.encodings import (
    FourierEncoding,
    HashGridEncoding,
    IdentityEncoding,
    TriplaneEncoding,
    build_encoding,
)
from nfcore.errors import InputError


def test_public_api():
    import nfcore.encodings as enc

    for name in enc.__all__:
        assert hasattr(enc, name), name


@pytest.mark.parametrize("dim", [2, 3])
def test_identity(dim):
    enc = build_encoding(IdentityEncodingConfig(), dim)
    x = torch.rand(7, dim)
    assert isinstance(enc, IdentityEncoding) and enc.out_dim == dim and not enc.has_tables
    assert torch.equal(enc(x), x)


@pytest.mark.parametrize("dim", [2, 3])
def test_fourier_formula_and_dims(dim):
    enc = build_encoding(FourierEncodingConfig(n_frequencies=4), dim)
    assert isinstance(enc, FourierEncoding) and enc.out_dim == 2 * dim * 4
    x = torch.rand(5, dim, dtype=torch.float64) * 2 - 1
    out = enc.double()(x)
    freqs = [1.0, 2.0, 4.0, 8.0]  # 2^linspace(0, L-1, L), no pi
    sines = torch.stack([torch.sin(f * x[:, a]) for a in range(dim) for f in freqs], dim=-1)
    cosines = torch.stack([torch.cos(f * x[:, a]) for a in range(dim) for f in freqs], dim=-1)
    assert torch.allclose(out, torch.cat([sines, cosines], dim=-1), atol=1e-6)


def test_fourier_options():
    x = torch.rand(3, 3) * 2 - 1
    with_pi = build_encoding(FourierEncodingConfig(n_frequencies=2, include_pi=True, include_input=True), 3)
    out = with_pi(x)
    assert with_pi.out_dim == 3 + 12 and out.shape == (3, 15)
    assert torch.equal(out[:, :3], x)
    assert torch.allclose(out[:, 3 + 1], torch.sin(2 * math.pi * x[:, 0]), atol=1e-5)  # axis 0, f = 2 pi


def test_fourier_default_matches_release_size():
    # 12 octaves on 3 axes = 72 features (Ling et al. release)
    assert build_encoding(FourierEncodingConfig(), 3).out_dim == 72


def _bilinear(plane, u, v):
    """Hand bilinear sample of plane (F, R, R) at u (width axis), v (height axis) in [-1, 1], align_corners."""
    r = plane.shape[-1]
    pu, pv = (u + 1) / 2 * (r - 1), (v + 1) / 2 * (r - 1)
    i0, j0 = int(math.floor(pu)), int(math.floor(pv))
    i1, j1 = min(i0 + 1, r - 1), min(j0 + 1, r - 1)
    a, b = pu - i0, pv - j0
    return (
        plane[:, j0, i0] * (1 - a) * (1 - b)
        + plane[:, j0, i1] * a * (1 - b)
        + plane[:, j1, i0] * (1 - a) * b
        + plane[:, j1, i1] * a * b
    )


def test_triplane_samples_xy_xz_yz_bilinearly():
    cfg = TriplaneEncodingConfig(resolution=5, n_features=2)
    enc = build_encoding(cfg, 3, generator=torch.Generator().manual_seed(0)).double()
    assert isinstance(enc, TriplaneEncoding) and enc.has_tables and enc.out_dim == 6
    x = torch.tensor([[0.3, -0.55, 0.8]], dtype=torch.float64)
    out = enc(x)[0]
    planes = enc.planes.detach()
    expected = torch.cat(
        [_bilinear(planes[0], 0.3, -0.55), _bilinear(planes[1], 0.3, 0.8), _bilinear(planes[2], -0.55, 0.8)]
    )
    assert torch.allclose(out, expected, atol=1e-12)


def test_triplane_reductions_and_2d():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(9, 3, generator=gen) * 2 - 1
    feats = {}
    for reduce in ("concat", "sum", "product"):
        enc = build_encoding(
            TriplaneEncodingConfig(resolution=8, n_features=4, reduce=reduce),
            3,
            generator=torch.Generator().manual_seed(2),
        )
        feats[reduce] = enc(x)
    per_plane = feats["concat"].view(9, 3, 4)
    assert feats["sum"].shape == (9, 4)
    assert torch.allclose(feats["sum"], per_plane.sum(1), atol=1e-6)
    assert torch.allclose(feats["product"], per_plane.prod(1), atol=1e-6)
    enc2 = build_encoding(TriplaneEncodingConfig(resolution=8, n_features=4), 2)
    assert enc2.planes.shape == (1, 4, 8, 8) and enc2(torch.rand(5, 2)).shape == (5, 4)
    with pytest.raises(InputError, match="2D or 3D"):
        build_encoding(TriplaneEncodingConfig(), 4)


def test_triplane_gradients_reach_coordinates():
    # Unlike nerfstudio's triplane, coordinates are not detached: SDF losses need d f / d x.
    enc = build_encoding(
        TriplaneEncodingConfig(resolution=6, n_features=2), 3, generator=torch.Generator().manual_seed(3)
    )
    enc = enc.double()
    x = (torch.rand(4, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(enc, (x,))
    (g,) = torch.autograd.grad(enc(x).sum(), x, create_graph=True)
    assert g.abs().sum() > 0
    g.square().sum().backward()  # second order through the sampling (eikonal with autograd)
    assert enc.planes.grad is not None and enc.planes.grad.abs().sum() > 0


def test_triplane_sampling_equals_grid_sample_to_second_order():
    # The explicit bilinear sampling must be grid_sample(bilinear, border, align_corners=True),
    # inside the cube and beyond its faces (border clamp), up to second derivatives.
    import torch.nn.functional as F

    from nfcore.encodings.triplane import sample_planes

    gen = torch.Generator().manual_seed(4)
    planes = torch.randn(3, 5, 7, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    coords = (torch.rand(3, 300, 2, generator=gen, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(True)

    def eikonal(sample):
        out = sample(planes, coords)  # (P, N, F)
        (g,) = torch.autograd.grad(out.sum(), coords, create_graph=True)
        return out, g, torch.autograd.grad(g.square().sum(), planes)[0]

    ours = eikonal(sample_planes)
    ref = eikonal(
        lambda pl, c: F.grid_sample(pl, c.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True)[
            :, :, 0
        ].permute(0, 2, 1)
    )
    for name, a, b in zip(("values", "d/dx", "d eikonal/d planes"), ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-10), (name, (a - b).abs().max())

    # Exactly on a face (reflected noise lands there) grid_sample's derivative is 0; ours is the
    # one-sided derivative from inside the cube, as a finite difference shows.
    face = torch.tensor([[[1.0, -0.3], [-1.0, 0.2]]], dtype=torch.float64, requires_grad=True)  # (1, 2, 2)
    (g,) = torch.autograd.grad(sample_planes(planes[:1], face).sum(), face)
    inward = torch.tensor([[[-1e-6, 0.0], [1e-6, 0.0]]], dtype=torch.float64)
    fd = (sample_planes(planes[:1], face + inward) - sample_planes(planes[:1], face)).sum(-1) / inward[..., 0]
    assert torch.allclose(g[..., 0], fd, rtol=1e-5) and g[..., 0].abs().min() > 0


def test_build_encoding_dispatch_and_device():
    gen = torch.Generator().manual_seed(0)
    enc = build_encoding(HashGridEncodingConfig(log2_hashmap_size=10, backend="torch"), 3, device="cpu", generator=gen)
    assert isinstance(enc, HashGridEncoding) and enc.has_tables and enc.table.device.type == "cpu"
    assert build_encoding(FourierEncodingConfig(), 3).has_tables is False
    with pytest.raises(InputError, match="dimension"):
        build_encoding(IdentityEncodingConfig(), 0)


def test_tables_deterministic_with_generator():
    a = build_encoding(TriplaneEncodingConfig(resolution=8), 3, generator=torch.Generator().manual_seed(5))
    b = build_encoding(TriplaneEncodingConfig(resolution=8), 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.planes, b.planes)
    cfg = HashGridEncodingConfig(log2_hashmap_size=10)
    h1 = build_encoding(cfg, 3, generator=torch.Generator().manual_seed(5))
    h2 = build_encoding(cfg, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(h1.table, h2.table)
    assert h1.table.abs().max() <= cfg.init_scale and h1.table.abs().max() > cfg.init_scale / 2


def test_tcnn_backend_with_autograd_implementation_is_rejected():
    # tcnn's fused kernels are not the explicit differentiable ops "autograd" promises.
    with pytest.raises(ValueError, match="backend") as e:
        HashGridEncodingConfig(backend="tcnn", implementation="autograd")
    assert "implementation" in str(e.value)
    with pytest.raises(ValueError, match="implementation"):
        HashGridEncodingConfig(backend="tcnn").implementation = "autograd"  # validate_assignment
    HashGridEncodingConfig(backend="tcnn", implementation="function")
    HashGridEncodingConfig(backend="auto", implementation="autograd")


@pytest.mark.parametrize(
    ("backend", "implementation", "device", "tcnn_available", "expected"),
    [
        ("auto", "function", "cuda", True, "tcnn"),
        ("auto", "autograd", "cuda", True, "torch"),  # autograd is honoured: never the tcnn kernels
        ("auto", "function", "cuda", False, "torch"),
        ("auto", "function", "cpu", True, "torch"),
        ("torch", "function", "cuda", True, "torch"),
        ("tcnn", "function", "cuda", True, "tcnn"),
    ],
)
def test_hashgrid_backend_choice_without_tinycudann(backend, implementation, device, tcnn_available, expected):
    from nfcore.encodings import hashgrid_backend

    cfg = HashGridEncodingConfig(backend=backend, implementation=implementation)
    assert hashgrid_backend(cfg, device, tcnn_available=tcnn_available) == expected


@pytest.mark.parametrize(("device", "tcnn_available", "reason"), [("cuda", False, "tinycudann"), ("cpu", True, "CUDA")])
def test_hashgrid_backend_tcnn_unavailable_is_an_error(device, tcnn_available, reason):
    from nfcore.encodings import hashgrid_backend

    with pytest.raises(InputError, match=reason):
        hashgrid_backend(HashGridEncodingConfig(backend="tcnn"), device, tcnn_available=tcnn_available)


def test_tcnn_module_refuses_an_unvalidated_autograd_config():
    from nfcore.encodings import TcnnHashGridEncoding

    fields = {**HashGridEncodingConfig().model_dump(), "backend": "tcnn", "implementation": "autograd"}
    cfg = HashGridEncodingConfig.model_construct(**fields)
    with pytest.raises(InputError, match="implementation"):
        TcnnHashGridEncoding(cfg, 3, device="cuda")  # refused before tinycudann or CUDA is needed
