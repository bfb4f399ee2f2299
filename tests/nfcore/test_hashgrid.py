"""The pure PyTorch hash grid computes tiny-cuda-nn's HashGrid, with correct analytic gradients."""

import math

import numpy as np
import pytest
import torch

from nfcore.config import HashGridEncodingConfig, MLPNetworkConfig
from nfcore.encodings import HashGridEncoding, build_encoding, grid_layout, has_tcnn, hashgrid_backend
from nfcore.encodings.hashgrid import _corner_rows, _GridConstants, hashgrid_encode, hashgrid_encode_autograd
from nfcore.errors import InputError
from nfcore.field import NeuralField

PRIMES = (1, 2654435761, 805459861)


def _index_table(enc: HashGridEncoding) -> None:
    """Table entry r = r (feature 0): the output then reads back which rows were used."""
    with torch.no_grad():
        enc.table.zero_()
        enc.table[:, 0] = torch.arange(enc.table.shape[0], dtype=enc.table.dtype)


def _x_at_vertex(vertex, scale):
    """[-1, 1] coordinates whose grid position x01 * scale + 0.5 is exactly `vertex`."""
    x01 = (np.asarray(vertex, dtype=np.float64) - 0.5) / scale
    return torch.tensor(x01 * 2 - 1, dtype=torch.float64).view(1, -1)


def test_level_layout_matches_tcnn_definition():
    cfg = HashGridEncodingConfig(n_levels=16, base_resolution=16, finest_resolution=2048, log2_hashmap_size=19)
    lay = grid_layout(cfg, 3)
    b = math.exp(math.log(2048 / 16) / 15)  # 1.3819
    offset = 0
    for level in range(16):
        scale = 16 * b**level - 1
        assert lay.scales[level] == pytest.approx(scale, rel=1e-5)
        if abs(scale - round(scale)) > 1e-3:  # ceil is float-sensitive only at integers
            assert lay.resolutions[level] == math.ceil(scale) + 1
        res = lay.resolutions[level]
        size = min(-(-(res**3) // 8) * 8, 2**19)
        assert lay.sizes[level] == size
        assert lay.offsets[level] == offset
        assert lay.hashed[level] == (res**3 > 2**19)
        offset += size
    assert lay.n_rows == offset
    # Hand values: level 0 is 15 -> 16^3 dense rows; level 1 is 16 * 1.3819 - 1 = 21.11 -> 23^3 = 12167 -> 12168.
    assert (lay.scales[0], lay.resolutions[0], lay.sizes[0], lay.hashed[0]) == (15.0, 16, 4096, False)
    assert (lay.resolutions[1], lay.sizes[1], lay.offsets[1]) == (23, 12168, 4096)
    assert lay.hashed[:5] == (False,) * 5 and all(lay.hashed[5:])  # 81^3 > 2^19 from level 5 on
    assert lay.sizes[15] == 2**19
    enc = HashGridEncoding(cfg, 3)
    assert enc.table.shape == (lay.n_rows, 2) and enc.out_dim == 32


def test_dense_level_indexing_and_trilinear_weights_by_hand():
    # One level, base 4: scale 3, resolution 4, 4^3 = 64 rows, dense: index = i + 4 j + 16 k.
    cfg = HashGridEncodingConfig(n_levels=1, n_features_per_level=1, base_resolution=4, log2_hashmap_size=8)
    enc = HashGridEncoding(cfg, 3).double()
    assert not enc.layout.hashed[0] and enc.layout.resolutions == (4,)
    _index_table(enc)
    with torch.no_grad():
        assert enc(_x_at_vertex((1, 2, 3), 3.0)).item() == pytest.approx(1 + 4 * 2 + 16 * 3)
        # Between vertices a function linear in (i, j, k) is reproduced exactly by trilinear weights.
        x01 = torch.tensor([[0.3, 0.45, 0.61]], dtype=torch.float64)
        pos = x01 * 3 + 0.5
        expected = pos[0, 0] + 4 * pos[0, 1] + 16 * pos[0, 2]
        assert enc(x01 * 2 - 1).item() == pytest.approx(expected.item(), abs=1e-9)


@pytest.mark.parametrize("dim", [2, 3])
def test_hashed_level_uses_coherent_prime_hash(dim):
    # base 64 -> scale 63, resolution 64: 64^d > 2^8 rows, so the level is hashed.
    cfg = HashGridEncodingConfig(n_levels=1, n_features_per_level=1, base_resolution=64, log2_hashmap_size=8)
    enc = HashGridEncoding(cfg, dim).double()
    assert enc.layout.hashed[0]
    _index_table(enc)
    for vertex in [(3, 5, 7), (60, 1, 33), (63, 63, 63)]:
        v = vertex[:dim]
        h = 0
        for a in range(dim):
            h ^= (v[a] * PRIMES[a]) % 2**32  # uint32 products, XOR, modulo the level size
        with torch.no_grad():
            got = enc(_x_at_vertex(v, 63.0)).item()
        assert got == pytest.approx(h % 256), v


def test_hash_wraps_products_to_uint32():
    # Level 1 of base 1024 x 2: scale 2047. 2047 * 2654435761 > 2^32: only the low 32 bits may
    # enter the XOR (then the low 19).
    cfg = HashGridEncodingConfig(
        n_levels=2, n_features_per_level=1, base_resolution=1024, per_level_scale=2.0, log2_hashmap_size=19
    )
    enc = HashGridEncoding(cfg, 3).double()
    assert enc.layout.scales[1] == 2047.0 and enc.layout.hashed[1]
    _index_table(enc)
    v = (2046, 2047, 1999)
    expected = ((v[0] * PRIMES[0]) % 2**32 ^ (v[1] * PRIMES[1]) % 2**32 ^ (v[2] * PRIMES[2]) % 2**32) % 2**19
    with torch.no_grad():
        got = enc(_x_at_vertex(v, 2047.0))[0, 1].item() - enc.layout.offsets[1]
    assert got == pytest.approx(expected)


def test_multi_level_offsets_and_output_layout():
    cfg = HashGridEncodingConfig(n_levels=3, n_features_per_level=2, base_resolution=4, per_level_scale=2.0)
    enc = HashGridEncoding(cfg, 3).double()
    with torch.no_grad():
        enc.table.zero_()
        for level in range(3):
            lo, hi = enc.layout.offsets[level], enc.layout.offsets[level + 1]
            enc.table[lo:hi, 0] = level + 1.0
            enc.table[lo:hi, 1] = -(level + 1.0)
        out = enc(torch.rand(5, 3, dtype=torch.float64) * 2 - 1)
    # column l * F + f: every level reads only its own rows.
    expected = torch.tensor([1.0, -1.0, 2.0, -2.0, 3.0, -3.0], dtype=torch.float64)
    assert torch.allclose(out, expected.expand(5, 6))


def _tiny(dim=3, levels=3, log2=8, features=2, base=2):
    cfg = HashGridEncodingConfig(
        n_levels=levels,
        n_features_per_level=features,
        log2_hashmap_size=log2,
        base_resolution=base,
        per_level_scale=2.0,
    )
    enc = HashGridEncoding(cfg, dim, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        enc.table.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    return enc


@pytest.mark.parametrize("dim", [2, 3])
def test_custom_function_gradcheck_first_and_second_order(dim):
    enc = _tiny(dim) if dim == 3 else _tiny(dim, levels=4, base=4)
    assert any(enc.layout.hashed) and not all(enc.layout.hashed)  # both index kinds exercised
    k = enc.constants()
    gen = torch.Generator().manual_seed(2)
    x01 = torch.rand(6, dim, dtype=torch.float64, generator=gen).requires_grad_()
    table = enc.table.detach().clone().requires_grad_()

    def fn(x, t):
        return hashgrid_encode(x, t, k)

    assert torch.autograd.gradcheck(fn, (x01, table), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x01, table), fast_mode=True)


def test_custom_function_matches_autograd_reference_through_eikonal_loss():
    enc = _tiny(3, levels=4)
    k = enc.constants()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(50, 3, dtype=torch.float64, generator=gen)
    head = torch.randn(enc.out_dim, dtype=torch.float64, generator=gen)
    grads = []
    for impl in (hashgrid_encode, hashgrid_encode_autograd):
        table = enc.table.detach().clone().requires_grad_()
        xg = x.clone().requires_grad_()
        feats = impl(xg, table, k)
        f = torch.tanh(feats) @ head  # a nonlinear head, so second-order terms mix table and x
        (gx,) = torch.autograd.grad(f.sum(), xg, create_graph=True)
        loss = f.abs().mean() + ((gx.norm(dim=-1) - 1) ** 2).mean()
        loss.backward()
        grads.append((feats.detach(), gx.detach(), table.grad, xg.grad))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def test_spatial_gradient_matches_finite_differences():
    enc = _tiny(3, levels=3, log2=8)
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(20, 3, dtype=torch.float64, generator=gen) * 1.8 - 0.9).requires_grad_()
    w = torch.randn(enc.out_dim, dtype=torch.float64, generator=gen)
    (g,) = torch.autograd.grad((enc(x) @ w).sum(), x)
    eps = 1e-6
    with torch.no_grad():
        for a in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[a] = eps
            fd = ((enc(x + e) @ w) - (enc(x - e) @ w)) / (2 * eps)
            assert torch.allclose(g[:, a], fd, atol=1e-5)


def test_int32_indices_match_int64():
    # CUDA computes the corner rows in int32; check that path on CPU against int64.
    enc = HashGridEncoding(HashGridEncodingConfig(log2_hashmap_size=19), 3)
    k64 = enc.constants()
    k32 = _GridConstants(enc.layout, torch.device("cpu"))
    k32.index_dtype = torch.int32
    x01 = torch.rand(4096, 3, generator=torch.Generator().manual_seed(5))
    r64, t64 = _corner_rows(x01, k64)
    r32, t32 = _corner_rows(x01, k32)
    assert r32.dtype == torch.int32
    assert torch.equal(r64, r32.long()) and torch.equal(t64, t32)
    assert int(r64.min()) >= 0 and int(r64.max()) < enc.layout.n_rows


@pytest.mark.parametrize("log2", [8, 12])
def test_small_tables_train_step(log2):
    cfg = HashGridEncodingConfig(n_levels=8, log2_hashmap_size=log2, backend="torch")
    # sdf=False: geometric init zeroes the feature weights, so the first table gradient would be 0.
    field = NeuralField(cfg, MLPNetworkConfig(), 3, 1, sdf=False, generator=torch.Generator().manual_seed(0))
    x = torch.rand(256, 3) * 2 - 1
    f, g = field.value_and_gradient(x)
    ((f.abs()).mean() + ((g.norm(dim=-1) - 1) ** 2).mean()).backward()
    table = field.table_parameters()[0]
    assert torch.isfinite(table.grad).all() and table.grad.abs().sum() > 0


def test_value_and_gradient_skips_private_x_but_keeps_parameter_gradients():
    # The fast path drops d/dx for value_and_gradient's private leaf after the first backward;
    # parameter gradients must equal the reference implementation's.
    torch.manual_seed(0)
    results = []
    for impl in ("function", "autograd"):
        cfg = HashGridEncodingConfig(n_levels=6, log2_hashmap_size=10, implementation=impl, backend="torch")
        field = NeuralField(cfg, MLPNetworkConfig(), 3, 1, sdf=False, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            field.encoding.table.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(8))
        x = torch.rand(300, 3, generator=torch.Generator().manual_seed(9)) * 2 - 1
        f, g = field.value_and_gradient(x)
        (f.abs().mean() + ((g.norm(dim=-1) - 1) ** 2).mean()).backward()
        results.append([p.grad.clone() for p in field.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_input_validation():
    enc = HashGridEncoding(HashGridEncodingConfig(log2_hashmap_size=10), 3)
    with pytest.raises(InputError, match="expects"):
        enc(torch.zeros(4, 2))
    with pytest.raises(InputError, match="implementation"):
        HashGridEncoding(HashGridEncodingConfig(), 3, implementation="cuda")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="input dimensions"):
        grid_layout(HashGridEncodingConfig(), 8)


def test_backend_selection():
    cfg = HashGridEncodingConfig(log2_hashmap_size=10)
    assert hashgrid_backend(cfg, "cpu") == "torch"
    assert isinstance(build_encoding(cfg, 3, device="cpu"), HashGridEncoding)
    tcnn_cfg = HashGridEncodingConfig(log2_hashmap_size=10, backend="tcnn")
    with pytest.raises(InputError, match="tcnn"):
        hashgrid_backend(tcnn_cfg, "cpu")  # never on CPU, with or without tinycudann
    if not has_tcnn():
        with pytest.raises(InputError, match="tinycudann"):
            build_encoding(tcnn_cfg, 3, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    enc = _tiny(3, levels=4, log2=8).float()
    x = torch.rand(1000, 3) * 2 - 1
    out_cpu = enc(x)
    enc_gpu = enc.to("cuda")
    xg = x.cuda().requires_grad_()
    out_gpu = enc_gpu(xg)
    assert torch.allclose(out_cpu, out_gpu.cpu(), atol=1e-5)
    (gx,) = torch.autograd.grad(out_gpu.sum(), xg, create_graph=True)
    gx.square().sum().backward()
    assert torch.isfinite(enc_gpu.table.grad).all()


@pytest.mark.cuda
@pytest.mark.skipif(not (has_tcnn() and torch.cuda.is_available()), reason="needs tinycudann and a CUDA device")
def test_tcnn_parity_values_and_gradients():
    from nfcore.encodings import TcnnHashGridEncoding

    cfg = HashGridEncodingConfig(n_levels=16, log2_hashmap_size=15, backend="tcnn")
    gen = torch.Generator().manual_seed(0)
    ours = HashGridEncoding(cfg, 3, device="cuda", generator=gen)
    with torch.no_grad():
        ours.table.uniform_(-1e-1, 1e-1)
    theirs = TcnnHashGridEncoding(cfg, 3, device="cuda", generator=gen)
    with torch.no_grad():
        theirs.table.copy_(ours.table)
    x = (torch.rand(4096, 3, device="cuda") * 2 - 1).requires_grad_()
    a, b = ours(x), theirs(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    w = torch.randn(a.shape[1], device="cuda")
    ga_x, ga_t = torch.autograd.grad(a @ w, (x, ours.table), torch.ones(4096, device="cuda"))
    gb_x, gb_t = torch.autograd.grad(b @ w, (x, theirs.encoding.params), torch.ones(4096, device="cuda"))
    assert torch.allclose(ga_t, gb_t.view_as(ga_t), atol=1e-4)
    assert torch.allclose(ga_x, gb_x, atol=1e-2 * ga_x.abs().max().item())


def test_third_order_hessian_vector_products_match_reference():
    # ESGD differentiates the parameter gradient of an eikonal loss once more (H v).
    hv = []
    for impl in ("function", "autograd"):
        cfg = HashGridEncodingConfig(n_levels=4, log2_hashmap_size=10, implementation=impl, backend="torch")
        field = NeuralField(cfg, MLPNetworkConfig(hidden_features=16), 3, 1, generator=torch.Generator().manual_seed(0))
        field = field.double()
        with torch.no_grad():
            field.encoding.table.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(1))
        x = torch.rand(40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        f, g = field.value_and_gradient(x)
        loss = ((g.norm(dim=-1) - 1) ** 2).mean() + f.abs().mean()
        params = list(field.parameters())[:-1]  # the output bias has no second derivative
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gen = torch.Generator().manual_seed(3)
        vs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        hv.append(torch.autograd.grad(grads, params, vs))
    for a, b in zip(*hv, strict=True):
        assert torch.allclose(a, b, atol=1e-9 * (1 + b.abs().max().item()))
