import math

import pytest
import torch

from nfcore.config import SDFTaskConfig
from nfcore.tasks.sdf import SDFTask
from tests.utils.analytic import SphereField, sphere_points


def _task(points, normals, **cfg):
    return SDFTask(points, normals, SDFTaskConfig(**cfg), batch_size=len(points))


def test_exact_sphere_has_zero_surface_normal_eikonal_terms():
    p, n = sphere_points(512, 0.5)
    task = _task(p, n)
    field = SphereField(0.5)
    batch = task.sample(0, torch.Generator().manual_seed(0))
    loss, terms = task.loss(field, batch, 0.0, torch.Generator())
    assert terms["surface"] == pytest.approx(0.0, abs=1e-4)
    assert terms["normal"] == pytest.approx(0.0, abs=1e-5)
    assert terms["eikonal"] == pytest.approx(0.0, abs=1e-8)
    # off-surface: w * sum exp(-100|f|) / 2N, computed independently
    off = batch["points"][512:]
    f = off.norm(dim=-1) - 0.5
    expected = 1e2 * torch.exp(-100 * f.abs()).sum().item() / 1024
    assert terms["offsurface"] == pytest.approx(expected, rel=1e-4)
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-5)


def test_surface_term_measures_radius_error():
    p, n = sphere_points(256, 0.5)
    task = _task(p, n, offsurface_weight=0.0)
    loss, terms = task.loss(SphereField(0.6), task.sample(0, torch.Generator()), 0.0, torch.Generator())
    # |f| = 0.1 on every surface point; mean over the 2N batch with zeros off-surface
    assert terms["surface"] == pytest.approx(3e3 * 0.1 * 256 / 512, rel=1e-4)
    assert terms["normal"] == pytest.approx(0.0, abs=1e-5)  # radius error keeps normals right


def test_flipped_normals_cost_the_maximum():
    p, n = sphere_points(128, 0.5)
    task = _task(p, -n)
    _, terms = task.loss(SphereField(0.5), task.sample(0, torch.Generator()), 0.0, torch.Generator())
    assert terms["normal"] == pytest.approx(1e2 * 2 * 128 / 256, rel=1e-4)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_eikonal_l1_and_l2(norm):
    class Scaled(SphereField):
        def forward(self, x):
            return 2 * super().forward(x)  # |grad| = 2

    p, n = sphere_points(64)
    task = _task(p, n, eikonal_norm=norm)
    _, terms = task.loss(Scaled(0.5), task.sample(0, torch.Generator()), 0.0, torch.Generator())
    assert terms["eikonal"] == pytest.approx(5e1 * 1.0, rel=1e-4)  # |2 - 1| = (2 - 1)^2 = 1
    class Half(SphereField):
        def forward(self, x):
            return 0.5 * super().forward(x)
    _, terms = task.loss(Half(0.5), task.sample(0, torch.Generator()), 0.0, torch.Generator())
    assert terms["eikonal"] == pytest.approx(5e1 * (0.5 if norm == "l1" else 0.25), rel=1e-4)


def test_noise_moves_queries_and_research_variant_drops_gradient_terms():
    p, n = sphere_points(256)
    task = _task(p, n)
    batch = task.sample(0, torch.Generator().manual_seed(1))
    _, clean = task.loss(SphereField(0.5), batch, 0.0, torch.Generator())
    _, noisy = task.loss(SphereField(0.5), batch, 0.05, torch.Generator().manual_seed(2))
    assert noisy["surface"] > clean["surface"] + 1.0  # noised on-surface points are off the sphere
    research = SDFTask(p, n, SDFTaskConfig(), batch_size=256, gradient_losses_during_noise=False)
    _, terms = research.loss(SphereField(0.5), batch, 0.05, torch.Generator())
    assert "normal" not in terms and "eikonal" not in terms
    _, terms = research.loss(SphereField(0.5), batch, 0.0, torch.Generator())
    assert "normal" in terms and "eikonal" in terms


def test_near_surface_sampling_fraction():
    p, n = sphere_points(1000)
    task = SDFTask(p, n, SDFTaskConfig(near_surface_fraction=0.5, near_surface_sigma=0.01), batch_size=1000)
    batch = task.sample(0, torch.Generator().manual_seed(0))
    off = batch["points"][1000:]
    near = ((off.norm(dim=-1) - 0.5).abs() < 0.05).float().mean().item()
    assert 0.45 < near < 0.65  # half near the surface, plus the few uniform points that land there
    assert math.isclose(batch["points"].shape[0], 2000)
