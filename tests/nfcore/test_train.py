import pytest
import torch

from nfcore.config import MethodConfig
from nfcore.errors import FitCanceled
from nfcore.progress import Reporter
from nfcore.tasks.sdf import SDFTask
from nfcore.train import DivergedError, train
from tests.utils.analytic import SphereField, sphere_points


def _setup(steps=150, **train):
    p, n = sphere_points(2000, 0.5)
    cfg = MethodConfig.model_validate(
        {
            "encoding": {"type": "identity"},
            "precondition": {"enabled": False},
            "optimizer": {"type": "adam", "lr": 1e-2},
            "schedule": {"kind": "constant"},
            "train": {"steps": steps, "batch_size": 256, "progress_interval_s": 0, **train},
        }
    )
    task = SDFTask(p, n, cfg.sdf, batch_size=256)
    return cfg, task


def test_training_recovers_the_radius():
    cfg, task = _setup()
    field = SphereField(0.3)
    result = train(field, task, cfg, device="cpu", generator=torch.Generator().manual_seed(0))
    assert abs(field.radius.item() - 0.5) < 0.02
    assert result.steps == 150 and result.samples_per_second > 0
    assert result.history[0][1] > result.history[-1][1]


def test_seeded_runs_are_deterministic():
    radii = []
    for _ in range(2):
        cfg, task = _setup(steps=30)
        field = SphereField(0.3)
        train(field, task, cfg, device="cpu", generator=torch.Generator().manual_seed(5))
        radii.append(field.radius.item())
    assert radii[0] == radii[1]


def test_progress_is_reported_and_can_cancel():
    cfg, task = _setup(steps=100)
    seen = []

    def callback(p):
        seen.append(p)
        return p.step is None or p.step < 20

    with pytest.raises(FitCanceled):
        train(SphereField(0.3), task, cfg, device="cpu", generator=torch.Generator(), reporter=Reporter(callback, 0))
    assert seen[-1].step == 20
    assert all(p.phase == "train" and p.total_steps == 100 for p in seen)
    assert all(a.fraction <= b.fraction for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1].eta_seconds is not None and "surface" in seen[-1].loss


def test_checkpoint_resume_continues_from_saved_step(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    cfg, task = _setup(steps=60, checkpoint_every=20)

    def stop_at_30(p):
        return p.step < 30

    with pytest.raises(FitCanceled):
        train(SphereField(0.3), task, cfg, device="cpu", generator=torch.Generator(), checkpoint_path=ckpt,
              reporter=Reporter(stop_at_30, 0))
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    field = SphereField(0.3)
    result = train(field, task, cfg, device="cpu", generator=torch.Generator(), checkpoint_path=ckpt)
    assert result.resumed_from == 20 and result.steps == 40
    assert torch.load(ckpt, weights_only=True)["step"] == 60


def test_divergence_is_reported():
    class Exploding(SphereField):
        def forward(self, x):
            return super().forward(x) * float("nan")

    cfg, task = _setup(steps=5)
    with pytest.raises(DivergedError, match="step 0"):
        train(Exploding(0.3), task, cfg, device="cpu", generator=torch.Generator())


def test_adam_is_fused_and_matches_the_unfused_step():
    """build_optimizer picks PyTorch's fused Adam on CPU; one step moves the parameters as the default Adam does."""
    from nfcore.config import AdamConfig
    from nfcore.optim import build_optimizer

    def make():
        torch.manual_seed(0)
        field = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Softplus(), torch.nn.Linear(8, 1))
        field.table_parameters = lambda: []
        field.network_parameters = field.parameters
        return field

    fused_field, plain_field = make(), make()
    cfg = AdamConfig(lr=1e-2)
    fused = build_optimizer(fused_field, cfg)
    assert all(group["fused"] for group in fused.param_groups)
    plain = torch.optim.Adam(plain_field.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    for field, opt in ((fused_field, fused), (plain_field, plain)):
        for _ in range(3):
            opt.zero_grad()
            field(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_field.parameters(), plain_field.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
