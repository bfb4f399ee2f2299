"""Networks: activations against their formulas, inits, shapes, gradients (gradcheck in float64)."""

import math

import pytest
import torch

from nfcore.config import (
    FinerNetworkConfig,
    GaussNetworkConfig,
    MLPNetworkConfig,
    SirenNetworkConfig,
    WireNetworkConfig,
)
from nfcore.errors import InputError
from nfcore.networks import (
    MLP,
    Finer,
    GaussNet,
    Siren,
    Wire,
    build_network,
    finer_activation,
    gauss_activation,
    real_gabor,
)
from nfcore.networks.finer import FinerLayer
from nfcore.networks.siren import SineLayer

SMALL = [
    (MLPNetworkConfig(hidden_features=8, hidden_layers=2), MLP),
    (MLPNetworkConfig(hidden_features=8, hidden_layers=3, activation="relu", skip_layers=[2]), MLP),
    (SirenNetworkConfig(hidden_features=8, hidden_layers=1), Siren),
    (FinerNetworkConfig(hidden_features=8, hidden_layers=1, detach_scale=False), Finer),
    (GaussNetworkConfig(hidden_features=8, hidden_layers=1, sigma=0.5), GaussNet),
    (WireNetworkConfig(hidden_features=8, hidden_layers=1, omega_0=2.0, scale=1.0), Wire),
]


def test_public_api():
    import nfcore.networks as nets

    for name in nets.__all__:
        assert hasattr(nets, name), name


@pytest.mark.parametrize("cfg,cls", SMALL)
def test_shapes_and_gradcheck(cfg, cls):
    net = build_network(cfg, 3, 2, generator=torch.Generator().manual_seed(0)).double()
    assert isinstance(net, cls)
    x = (torch.rand(5, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert net(x).shape == (5, 2)
    assert torch.autograd.gradcheck(net, (x,))
    # second order too: autograd eikonal losses differentiate the spatial gradient
    assert torch.autograd.gradgradcheck(net, (x,))


def test_sine_layer_formula_and_siren_init():
    gen = torch.Generator().manual_seed(0)
    first = SineLayer(3, 64, omega_0=30.0, first=True, generator=gen)
    hidden = SineLayer(64, 64, omega_0=30.0, first=False, generator=gen)
    x = torch.rand(4, 3)
    assert torch.allclose(first(x), torch.sin(30.0 * (x @ first.linear.weight.T + first.linear.bias)))
    assert first.linear.weight.abs().max() <= 1 / 3
    bound = math.sqrt(6 / 64) / 30
    assert hidden.linear.weight.abs().max() <= bound and hidden.linear.weight.abs().max() > 0.8 * bound
    net = Siren(SirenNetworkConfig(), 3, 1, generator=gen)
    assert len(net.layers) == 4  # SIREN's SDF net: first + 3 hidden sine layers, then linear
    assert net.output.weight.abs().max() <= math.sqrt(6 / 256) / 30


def test_siren_output_is_linear_not_bounded():
    # The last layer is linear: the output must be able to exceed 1 (lucidrains' old bug).
    net = Siren(
        SirenNetworkConfig(hidden_features=16, hidden_layers=1), 3, 1, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        net.output.weight.fill_(1.0)
        net.output.bias.fill_(5.0)
    assert net(torch.rand(4, 3)).min() > 1.0


def test_finer_activation_and_detached_scale():
    z = torch.tensor([-0.7, 0.2, 1.3], dtype=torch.float64, requires_grad=True)
    out = finer_activation(z, 2.0, detach_scale=True)
    assert torch.allclose(out, torch.sin(2.0 * (z.abs() + 1) * z))
    (g_detached,) = torch.autograd.grad(out.sum(), z)
    s = z.detach().abs() + 1
    assert torch.allclose(g_detached, 2.0 * s * torch.cos(2.0 * s * z.detach()))
    (g_true,) = torch.autograd.grad(finer_activation(z, 2.0, detach_scale=False).sum(), z)
    assert torch.allclose(g_true, 2.0 * (2 * z.detach().abs() + 1) * torch.cos(2.0 * s * z.detach()))


def test_finer_first_bias_scale():
    layer = FinerLayer(3, 256, omega_0=30.0, first=True, detach_scale=True, first_bias_scale=5.0)
    assert layer.linear.bias.abs().max() > 1.0 and layer.linear.bias.abs().max() <= 5.0


def test_gauss_and_wire_formulas():
    z = torch.linspace(-1, 1, 11)
    assert torch.allclose(gauss_activation(z, 0.3), torch.exp(-(z**2) / (2 * 0.09)))
    zs = torch.linspace(0.5, -0.5, 11)
    assert torch.allclose(real_gabor(z, zs, 10.0, 3.0), torch.cos(10.0 * z) * torch.exp(-((3.0 * zs) ** 2)))
    net = Wire(WireNetworkConfig(hidden_features=4, hidden_layers=1), 2, 1)
    layer = net.layers[0]
    x = torch.rand(3, 2)
    assert torch.allclose(layer(x), real_gabor(layer.freqs(x), layer.scales(x), 10.0, 10.0))
    gnet = GaussNet(GaussNetworkConfig(hidden_features=4, hidden_layers=1, sigma=0.2), 2, 1)
    assert torch.allclose(gnet.layers[0](x), gauss_activation(gnet.layers[0].linear(x), 0.2))


def test_mlp_geometric_init_is_a_sphere():
    cfg = MLPNetworkConfig(hidden_features=256, hidden_layers=3, geometric_init_radius=0.5)
    net = build_network(cfg, 3, 1, sdf_init=True, generator=torch.Generator().manual_seed(0))
    d = torch.randn(500, 3, generator=torch.Generator().manual_seed(1))
    d = d / d.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        means = [net(d * r)[:, 0].mean().item() for r in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert all(b > a for a, b in zip(means, means[1:], strict=False))  # increasing with the radius
    assert means[0] < -0.15 and means[-1] > 0.15
    assert abs(means[2]) < 0.1  # zero level near r = 0.5 (softplus offsets it slightly)


def test_mlp_geometric_init_ignores_encoding_features():
    cfg = MLPNetworkConfig(hidden_features=32, hidden_layers=3, skip_layers=[2])
    net = build_network(cfg, 3 + 10, 1, sdf_init=True, raw_dims=3, generator=torch.Generator().manual_seed(0))
    assert net.layers[0].weight[:, 3:].abs().sum() == 0 and net.layers[0].weight[:, :3].abs().sum() > 0
    assert net.layers[2].weight[:, 32 + 3 :].abs().sum() == 0  # re-injected features at the skip
    x = torch.rand(6, 3) * 2 - 1
    feats_a, feats_b = torch.randn(6, 10), torch.randn(6, 10)
    with torch.no_grad():
        assert torch.allclose(net(torch.cat([x, feats_a], -1)), net(torch.cat([x, feats_b], -1)))
    assert net.layers[-1].bias.item() == pytest.approx(-0.5)


def test_mlp_layers_skip_and_weight_norm():
    cfg = MLPNetworkConfig(hidden_features=16, hidden_layers=2)
    net = build_network(cfg, 5, 1)
    assert [tuple(lin.weight.shape) for lin in net.layers] == [(16, 5), (16, 16), (1, 16)]  # "2x16"
    wn = build_network(
        MLPNetworkConfig(hidden_features=16, hidden_layers=3, weight_norm=True, skip_layers=[1]), 3, 1, sdf_init=True
    )
    assert hasattr(wn.layers[0], "parametrizations") and wn.layers[1].weight.shape == (16, 16 + 3)
    with torch.no_grad():
        assert torch.isfinite(wn(torch.rand(4, 3))).all()
    with pytest.raises(InputError, match="skip_layers"):
        build_network(MLPNetworkConfig(hidden_layers=2, skip_layers=[2]), 3, 1)


def test_softplus_and_relu_activations():
    x = torch.rand(4, 3)
    relu = build_network(MLPNetworkConfig(activation="relu", hidden_features=8), 3, 1)
    soft = build_network(MLPNetworkConfig(activation="softplus", softplus_beta=7.0, hidden_features=8), 3, 1)
    assert isinstance(relu.act, torch.nn.ReLU)
    assert soft.act.beta == 7.0
    h = soft.act(soft.layers[0](x))
    assert torch.allclose(h, torch.log1p(torch.exp(7.0 * soft.layers[0](x))) / 7.0, atol=1e-6)


def test_deterministic_with_generator_and_errors():
    cfg = SirenNetworkConfig(hidden_features=8, hidden_layers=1)
    a = build_network(cfg, 3, 1, generator=torch.Generator().manual_seed(3))
    b = build_network(cfg, 3, 1, generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(InputError, match="dimensions"):
        build_network(cfg, 0, 1)
