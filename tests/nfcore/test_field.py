"""NeuralField: composition, parameter groups, gradients by autograd and finite differences."""

import pytest
import torch

from nfcore.config import (
    FourierEncodingConfig,
    HashGridEncodingConfig,
    IdentityEncodingConfig,
    MLPNetworkConfig,
    SirenNetworkConfig,
    TriplaneEncodingConfig,
)
from nfcore.errors import InputError
from nfcore.field import NeuralField

ENCODINGS = [
    IdentityEncodingConfig(),
    FourierEncodingConfig(n_frequencies=4),
    HashGridEncodingConfig(n_levels=6, log2_hashmap_size=12, backend="torch"),
    TriplaneEncodingConfig(resolution=16, n_features=4),
]


def _field(enc, net=None, sdf=True, seed=0, **kw):
    net = net or MLPNetworkConfig(hidden_features=32, hidden_layers=2)
    return NeuralField(enc, net, 3, 1, sdf=sdf, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda c: c.type)
def test_shapes_and_parameter_groups(enc):
    field = _field(enc)
    x = torch.rand(10, 3) * 2 - 1
    assert field(x).shape == (10, 1) and field.sdf(x).shape == (10,)
    tables, network = field.table_parameters(), field.network_parameters()
    assert len(tables) == (1 if enc.type in ("hashgrid", "triplane") else 0)
    ids = {id(p) for p in tables} | {id(p) for p in network}
    assert ids == {id(p) for p in field.parameters()} and not {id(p) for p in tables} & {id(p) for p in network}
    # raw xyz is concatenated in front of the features for SDF + geometric init (not twice for identity)
    expected_in = field.encoding.out_dim + (3 if enc.type != "identity" else 0)
    assert field.network.in_dim == expected_in


@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda c: c.type)
def test_sdf_init_is_a_sphere_for_every_encoding(enc):
    field = _field(enc, MLPNetworkConfig(hidden_features=128, hidden_layers=2))
    d = torch.randn(400, 3, generator=torch.Generator().manual_seed(1))
    d = d / d.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        inside, outside = field.sdf(d * 0.1).mean(), field.sdf(d * 0.9).mean()
    assert inside < -0.1 and outside > 0.1


@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda c: c.type)
def test_autograd_and_finite_difference_gradients_agree(enc):
    field = _field(enc, sdf=False).double()
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8
    f_a, g_a = field.value_and_gradient(x, method="autograd", create_graph=False)
    f_d, g_d = field.value_and_gradient(x, method="finite_difference", eps=1e-6)
    assert f_a.shape == (64,) and g_a.shape == (64, 3)
    assert torch.allclose(f_a, f_d)
    assert torch.allclose(g_a, g_d, atol=1e-5 * (1 + g_a.abs().max().item()))


def test_gradient_of_a_known_field():
    # identity + a linear network: f = w . x + b, grad = w everywhere
    field = NeuralField(IdentityEncodingConfig(), SirenNetworkConfig(hidden_features=4, hidden_layers=1), 3, 1)
    lin = torch.nn.Linear(3, 1)
    field.network = lin
    x = torch.rand(5, 3)
    for method in ("autograd", "finite_difference"):
        f, g = field.value_and_gradient(x, method=method, eps=1e-2)
        assert torch.allclose(g, lin.weight.expand(5, 3), atol=1e-4)
        assert torch.allclose(f, lin(x)[:, 0], atol=1e-6)


@pytest.mark.parametrize("method", ["autograd", "finite_difference"])
def test_gradient_losses_reach_every_parameter(method):
    field = _field(HashGridEncodingConfig(n_levels=4, log2_hashmap_size=10, backend="torch"), sdf=False)
    x = torch.rand(128, 3) * 2 - 1
    f, g = field.value_and_gradient(x, method=method)
    loss = ((g.norm(dim=-1) - 1) ** 2).mean()  # eikonal only: must still train table and MLP
    loss.backward()
    output_bias = field.network.layers[-1].bias  # a constant shift: no gradient term sees it
    for p in field.parameters():
        if p is not output_bias:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_caller_owned_x_keeps_its_gradient():
    field = _field(HashGridEncodingConfig(n_levels=4, log2_hashmap_size=10, backend="torch"), sdf=False).double()
    # Seeded: the grid's derivative jumps at cell faces, so a point within eps of one (about 1 draw in
    # a few hundred unseeded runs) makes the central difference meaningless there.
    x = (torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_()
    f, g = field.value_and_gradient(x)
    (hx,) = torch.autograd.grad(g[:, 0].sum(), x)  # a row of the Hessian: d/dx of the gradient
    eps = 1e-6
    e = torch.tensor([eps, 0, 0], dtype=torch.float64)
    gp = field.value_and_gradient(x.detach() + e, create_graph=False)[1][:, 0]
    gm = field.value_and_gradient(x.detach() - e, create_graph=False)[1][:, 0]
    assert torch.allclose(hx[:, 0], (gp - gm) / (2 * eps), atol=1e-4 * (1 + hx.abs().max().item()))


def test_deterministic_and_errors():
    enc = HashGridEncodingConfig(n_levels=4, log2_hashmap_size=10, backend="torch")
    a, b = _field(enc, seed=3), _field(enc, seed=3)
    x = torch.rand(8, 3)
    assert torch.equal(a(x), b(x))
    with pytest.raises(InputError, match="coordinates"):
        a(torch.rand(8, 2))
    with pytest.raises(InputError, match="gradient method"):
        a.value_and_gradient(x, method="spectral")
    vec = NeuralField(IdentityEncodingConfig(), SirenNetworkConfig(hidden_features=4, hidden_layers=1), 2, 3)
    assert vec(torch.rand(4, 2)).shape == (4, 3)
    with pytest.raises(InputError, match="scalar"):
        vec.value_and_gradient(torch.rand(4, 2))


def test_cuda_generator_seeds_network():
    # a non-CPU generator must not break weight init (drawn on CPU, seeded from it)
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gen = torch.Generator(device="cuda").manual_seed(0)
    field = NeuralField(FourierEncodingConfig(), MLPNetworkConfig(), 3, 1, sdf=True, device="cuda", generator=gen)
    assert next(field.network.parameters()).is_cuda
