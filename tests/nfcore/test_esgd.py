"""ESGD on quadratics f(x) = 0.5 x^T A x, where the Hessian is A and its row norms are known."""

from __future__ import annotations

import math

import pytest
import torch

from nfcore.optim.esgd import ESGD


def _quadratic(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x @ a @ x


def _step(opt: ESGD, a: torch.Tensor, x: torch.Tensor) -> float:
    """One step with the training-loop protocol: backward with the graph when the optimiser asks."""
    opt.zero_grad(set_to_none=True)
    loss = _quadratic(a, x)
    loss.backward(create_graph=opt.should_create_graph())
    opt.step()
    return float(loss.detach())


def _preconditioner(opt: ESGD, x: torch.Tensor, steps_for_bc2: int) -> torch.Tensor:
    """sqrt(D / bc2) as the update uses it."""
    beta2 = opt.param_groups[0]["betas"][1]
    return (opt.state[x]["D"] / (1.0 - beta2**steps_for_bc2)).sqrt()


def test_diagonal_curvature_estimate_is_exact() -> None:
    # For diagonal A, (Hv)_i^2 = A_ii^2 v_i^2 = A_ii^2 for every Rademacher draw.
    diag = torch.tensor([0.5, -2.0, 10.0, 40.0])
    a = torch.diag(diag)
    x = torch.nn.Parameter(torch.ones(4))
    opt = ESGD([x], lr=1e-3, update_d_every=1, d_warmup=0, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        _step(opt, a, x)
    assert opt.d_updates == 20
    torch.testing.assert_close(_preconditioner(opt, x, opt.steps), diag.abs(), rtol=1e-5, atol=0)


def test_first_step_matches_the_update_rule() -> None:
    # t = 1: m_hat = g and sqrt(D_hat) = |A_ii|, so x1 = x0 - lr g / (|A_ii| + eps), with decoupled decay first.
    diag = torch.tensor([1.0, 3.0, -5.0])
    a = torch.diag(diag)
    x0 = torch.tensor([1.0, -2.0, 0.5])
    x = torch.nn.Parameter(x0.clone())
    lr, eps, wd = 0.1, 1e-2, 0.3
    opt = ESGD([x], lr=lr, eps=eps, weight_decay=wd, generator=torch.Generator().manual_seed(1))
    _step(opt, a, x)
    g = a @ x0
    expected = x0 * (1 - lr * wd) - lr * g / (diag.abs() + eps)
    torch.testing.assert_close(x.detach(), expected, rtol=1e-6, atol=1e-7)


def test_nondiagonal_estimate_approaches_row_norms() -> None:
    # E[(Hv)_i^2] = sum_j A_ij^2, so sqrt(D / bc2) -> the Euclidean norms of A's rows.
    g = torch.Generator().manual_seed(3)
    b = torch.randn(6, 6, generator=g)
    a = b @ b.T + torch.diag(torch.tensor([0.0, 1.0, 2.0, 5.0, 10.0, 20.0]))
    x = torch.nn.Parameter(torch.randn(6, generator=g))
    # lr tiny: the estimate for a quadratic does not depend on x, only on the draws.
    opt = ESGD([x], lr=1e-8, betas=(0.9, 0.995), update_d_every=1, generator=torch.Generator().manual_seed(4))
    for _ in range(3000):
        _step(opt, a, x)
    estimate = _preconditioner(opt, x, opt.steps)
    row_norms = a.norm(dim=1)
    torch.testing.assert_close(estimate, row_norms, rtol=0.08, atol=0)
    # ... and it is not the diagonal, which the non-diagonal case would otherwise be confused with.
    assert (estimate - a.diagonal().abs()).abs().max() > 0.5


def test_reference_schedule_and_bias_correction_quirk() -> None:
    diag = torch.tensor([2.0, 8.0])
    a = torch.diag(diag)
    x = torch.nn.Parameter(torch.ones(2))
    opt = ESGD([x], lr=1e-6, update_d_every=100, d_warmup=50, generator=torch.Generator().manual_seed(0))
    refreshed = []
    for _ in range(260):
        refreshed.append(opt.should_create_graph())
        _step(opt, a, x)
    # Refresh on steps 0..49, then once every 100 steps (at 149 and 249).
    assert [i for i, r in enumerate(refreshed) if r] == list(range(50)) + [149, 249]
    assert opt.d_updates == 52
    # bias_correction2 counts steps as in the reference: sqrt(D / bc2) under-estimates |A_ii| after warm-up
    # by exactly sqrt((1 - b2^52) / (1 - b2^260)) for diagonal A.
    ratio = _preconditioner(opt, x, opt.steps) / diag
    expected = math.sqrt((1 - 0.999**52) / (1 - 0.999**260))
    torch.testing.assert_close(ratio, torch.full((2,), expected), rtol=1e-5, atol=0)


def test_d_updates_bias_correction_is_unbiased() -> None:
    diag = torch.tensor([2.0, 8.0])
    a = torch.diag(diag)
    x = torch.nn.Parameter(torch.ones(2))
    opt = ESGD([x], lr=1e-6, bias_correction="d_updates", generator=torch.Generator().manual_seed(0))
    for _ in range(260):
        _step(opt, a, x)
    torch.testing.assert_close(_preconditioner(opt, x, opt.d_updates), diag, rtol=1e-5, atol=0)


@pytest.mark.parametrize("use_closure", [False, True])
def test_converges_on_ill_conditioned_quadratic(use_closure: bool) -> None:
    # Condition number 1000: plain gradient descent with a stable step would need thousands of steps.
    diag = torch.tensor([0.01, 0.1, 1.0, 10.0])
    a = torch.diag(diag)
    x = torch.nn.Parameter(torch.ones(4))
    opt = ESGD([x], lr=0.05, generator=torch.Generator().manual_seed(0))
    f0 = float(_quadratic(a, x).detach())

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = _quadratic(a, x)
        loss.backward(create_graph=opt.should_create_graph())
        return loss

    for _ in range(400):
        if use_closure:
            opt.step(closure)
        else:
            _step(opt, a, x)
    # Every coordinate converges, the flattest one included.
    assert x.detach().abs().max() < 0.05
    assert float(_quadratic(a, x).detach()) < 1e-3 * f0


def test_missing_graph_on_refresh_step_is_an_error() -> None:
    x = torch.nn.Parameter(torch.ones(3))
    opt = ESGD([x])
    assert opt.should_create_graph()
    (x**2).sum().backward()  # no create_graph
    with pytest.raises(RuntimeError, match="create_graph"):
        opt.step()


def test_state_dict_round_trip_keeps_counters_and_moments() -> None:
    a = torch.diag(torch.tensor([1.0, 4.0]))
    x = torch.nn.Parameter(torch.ones(2))
    opt = ESGD([x], update_d_every=3, d_warmup=2, generator=torch.Generator().manual_seed(0))
    for _ in range(4):
        _step(opt, a, x)
    x2 = torch.nn.Parameter(x.detach().clone())
    opt2 = ESGD([x2], update_d_every=3, d_warmup=2)
    opt2.load_state_dict(opt.state_dict())
    assert (opt2.steps, opt2.d_updates, opt2.should_create_graph()) == (opt.steps, opt.d_updates, opt.should_create_graph())
    torch.testing.assert_close(opt2.state[x2]["D"], opt.state[x]["D"])
    torch.testing.assert_close(opt2.state[x2]["m"], opt.state[x]["m"])


def test_joint_hessian_vector_product_across_parameters() -> None:
    # f(x, y) = x * y couples two tensors: H = [[0, 1], [1, 0]], rows have norm 1; per-tensor HVPs would give 0.
    x = torch.nn.Parameter(torch.tensor([0.3]))
    y = torch.nn.Parameter(torch.tensor([-0.7]))
    opt = ESGD([x, y], lr=1e-6, bias_correction="d_updates", generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        opt.zero_grad()
        loss = (x * y).sum()
        loss.backward(create_graph=opt.should_create_graph())
        opt.step()
    torch.testing.assert_close(opt.state[x]["D"] / (1 - 0.999**5), torch.ones(1))
    torch.testing.assert_close(opt.state[y]["D"] / (1 - 0.999**5), torch.ones(1))


def test_invalid_arguments_are_rejected() -> None:
    x = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="update_d_every"):
        ESGD([x], update_d_every=0)
    with pytest.raises(ValueError, match="betas"):
        ESGD([x], betas=(0.9, 1.0))


def test_config_selects_the_bias_correction() -> None:
    from nfcore.config import MethodConfig
    from nfcore.optim import build_optimizer
    from tests.utils.analytic import SphereField

    for mode in ("steps", "d_updates"):
        cfg = MethodConfig.model_validate({"optimizer": {"type": "esgd", "bias_correction": mode}})
        opt = build_optimizer(SphereField(), cfg.optimizer, generator=torch.Generator().manual_seed(0))
        assert isinstance(opt, ESGD) and opt.bias_correction == mode
    assert MethodConfig().model_validate({"optimizer": {"type": "esgd"}}).optimizer.bias_correction == "steps"
    with pytest.raises(ValueError, match="bias_correction"):
        MethodConfig.model_validate({"optimizer": {"type": "esgd", "bias_correction": "both"}})


def test_training_loop_clips_the_gradient_on_curvature_refresh_steps(monkeypatch) -> None:
    # Gradient norm ~1e6 with clip_grad_norm=1: every step is a refresh step (warm-up), and the momentum
    # must only ever see clipped gradients, while D still gets the raw Hessian from the graph.
    import nfcore.train
    from nfcore.config import MethodConfig

    diag = torch.tensor([1e6, 3e6])

    class Quadratic(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def table_parameters(self) -> list[torch.Tensor]:
            return []

        def network_parameters(self) -> list[torch.Tensor]:
            return [self.w]

    class QuadraticTask:
        in_dim, out_dim = 1, 1

        def sample(self, step, generator):
            return {"x": torch.zeros(4, 1)}

        def loss(self, field, batch, alpha, generator):
            loss = 0.5 * (diag * field.w**2).sum()
            return loss, {"quadratic": float(loss.detach())}

    built = []

    def recording_build_optimizer(*args, **kwargs):
        built.append(nfcore.train.build_optimizer.__wrapped__(*args, **kwargs))
        return built[-1]

    recording_build_optimizer.__wrapped__ = nfcore.train.build_optimizer
    monkeypatch.setattr(nfcore.train, "build_optimizer", recording_build_optimizer)
    steps = 3
    cfg = MethodConfig.model_validate(
        {
            "encoding": {"type": "identity"},
            "precondition": {"enabled": False},
            "optimizer": {"type": "esgd", "lr": 1e-9, "d_warmup": 50},
            "schedule": {"kind": "constant"},
            "train": {"steps": steps, "batch_size": 4, "progress_interval_s": 0, "clip_grad_norm": 1.0},
        }
    )
    field = Quadratic()
    nfcore.train.train(field, QuadraticTask(), cfg, device="cpu", generator=torch.Generator().manual_seed(0))
    (opt,) = built
    assert isinstance(opt, ESGD) and opt.d_updates == steps
    beta1, beta2 = opt.param_groups[0]["betas"]
    # m is an EMA of gradients of norm <= 1: |m| <= 1 - beta1^t.
    assert float(opt.state[field.w]["m"].norm()) <= (1 - beta1**steps) * (1 + 1e-5)
    # D from the unclipped graph: for a diagonal Hessian, D / bc2 = diag^2 exactly.
    torch.testing.assert_close(opt.state[field.w]["D"] / (1 - beta2**steps), diag**2, rtol=1e-5, atol=0)
