import math

import pytest
import torch

from nfcore.config import MethodConfig, PreconditionConfig
from nfcore.precondition import noise_scale, perturb, reflect_unit


def test_schedule_constant_then_decay_then_off():
    cfg = PreconditionConfig(initial_scale=0.02, start=0.2, end=0.6)
    g = 8.0
    total = 1000
    assert noise_scale(0, total, cfg, g) == pytest.approx(0.02)
    assert noise_scale(199, total, cfg, g) == pytest.approx(0.02)
    # halfway through the decay: a0 * g^-0.5
    assert noise_scale(400, total, cfg, g) == pytest.approx(0.02 * g**-0.5)
    assert noise_scale(599, total, cfg, g) == pytest.approx(0.02 * g ** (-399 / 400))
    assert noise_scale(600, total, cfg, g) == 0.0
    assert noise_scale(999, total, cfg, g) == 0.0


def test_schedule_start_equals_end_is_hard_off_like_release_scripts():
    cfg = PreconditionConfig(initial_scale=0.02, start=0.25, end=0.25)
    values = [noise_scale(s, 8000, cfg, 1.3819) for s in range(8000)]
    assert values[1999] == pytest.approx(0.02)
    assert values[2000] == 0.0
    assert set(values[:2000]) == {0.02}


def test_schedule_disabled():
    cfg = PreconditionConfig()
    assert noise_scale(0, 100, cfg, 8.0, enabled=False) == 0.0


def test_end_before_start_rejected():
    with pytest.raises(ValueError, match="end"):
        PreconditionConfig(start=0.5, end=0.2)


def test_default_on_per_encoding_and_decay_factor():
    assert MethodConfig(encoding={"type": "hashgrid"}).precondition_enabled()
    assert MethodConfig(encoding={"type": "fourier"}).precondition_enabled()
    assert MethodConfig(encoding={"type": "triplane"}).precondition_enabled()
    assert not MethodConfig(encoding={"type": "identity"}, network={"type": "siren"}).precondition_enabled()
    assert not MethodConfig(encoding={"type": "hashgrid"}, precondition={"enabled": False}).precondition_enabled()
    cfg = MethodConfig(encoding={"type": "hashgrid", "n_levels": 16, "base_resolution": 16, "finest_resolution": 2048})
    assert cfg.precondition_decay_factor() == pytest.approx(math.exp(math.log(128) / 15), rel=1e-6)
    assert cfg.precondition_decay_factor() == pytest.approx(1.3819, abs=1e-4)
    assert MethodConfig(encoding={"type": "fourier"}).precondition_decay_factor() == 8.0


def test_reflection_keeps_points_in_cube_and_is_mirror():
    c = torch.tensor([-0.3, 0.2, 1.0, 1.25, 2.5, -1.7])
    r = reflect_unit(c)
    assert torch.allclose(r, torch.tensor([0.3, 0.2, 1.0, 0.75, 0.5, 0.3]), atol=1e-6)


@pytest.mark.parametrize("boundary", ["reflect", "clamp"])
def test_perturb_stays_in_cube_and_has_expected_spread(boundary):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200_000, 3)  # centre: the boundary is far, so the spread is the pure noise
    y = perturb(x, 0.02, boundary=boundary, generator=g)
    assert y.min() >= -1 and y.max() <= 1
    assert y.std().item() == pytest.approx(0.04, rel=0.02)  # 0.02 in [0,1] units is 0.04 in [-1,1]
    edge = torch.full((10_000, 3), 0.999)
    z = perturb(edge, 0.1, boundary=boundary, generator=g)
    assert z.min() >= -1 and z.max() <= 1


def test_perturb_zero_alpha_is_identity_and_reproducible():
    x = torch.rand(100, 3) * 2 - 1
    assert perturb(x, 0.0) is x
    a = perturb(x, 0.05, generator=torch.Generator().manual_seed(3))
    b = perturb(x, 0.05, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_perturb_rejects_unknown_boundary():
    with pytest.raises(ValueError, match="boundary"):
        perturb(torch.zeros(2, 3), 0.1, boundary="wrap")
