"""Equilibrated SGD (ESGD) with Hessian-vector products, as used by Chng et al. 2025.

Per parameter tensor the optimiser keeps m, an EMA of the gradient, and D, an EMA of the squared
Hessian-vector product (Hv)^2 with Rademacher v. Since E[(Hv)_i^2] = sum_j H_ij^2, sqrt(D) estimates
the row norms of the Hessian (the "equilibration" preconditioner). The update is

    m <- b1 m + (1 - b1) g
    p <- p (1 - lr wd)                                  (decoupled weight decay)
    p <- p - (lr / (1 - b1^t)) m / (sqrt(D) / sqrt(1 - b2^t) + eps)

D is refreshed (D <- b2 D + (1 - b2) (Hv)^2) on the first `d_warmup` steps and then every
`update_d_every` steps; the other steps cost the same as Adam.

Protocol with a training loop: before `loss.backward()`, ask `optimizer.should_create_graph()`
and pass the answer as `create_graph`; `step()` then differentiates the `p.grad` tensors, which
carry a graph on those steps, once more. `step(closure)` works the same way: the closure must
call `loss.backward(create_graph=optimizer.should_create_graph())` and return the loss.

A loop that modifies gradients (clipping) calls `refresh_curvature()` between backward and the
modification: it takes the Hessian-vector product from the raw graph-carrying gradients and drops
their graph, so the clipped gradients are what enters the momentum; `step()` then skips the
refresh already done.

Differences from the reference implementation (sfchng/preconditioner_neural_fields
`optimizers/esgd.py`), each deliberate:
- bias_correction2 counts optimiser steps, not D updates, exactly as the reference does. After the
  warm-up this under-normalises sqrt(D) and so enlarges the step; we keep it because the published
  learning rate (0.15) was tuned with it. `bias_correction="d_updates"` gives the textbook
  correction (count only D updates) for those who retune the learning rate.
- The reference accumulates an `lr_warmup` factor that is never applied; we leave it out.
- If `d_warmup` is 0 the reference would run `update_d_every` steps with D = 0 (denominator eps,
  a huge step); we always refresh D on the first step.
- The Rademacher draws take an explicit torch.Generator instead of the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch.optim import Optimizer

__all__ = ["ESGD"]


class ESGD(Optimizer):
    """Equilibrated SGD: Adam-like momentum over a Hessian-row-norm diagonal preconditioner."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        *,
        update_d_every: int = 100,
        d_warmup: int = 50,
        bias_correction: Literal["steps", "d_updates"] = "steps",
        generator: torch.Generator | None = None,
    ) -> None:
        """Set up ESGD over `params`.

        Args:
            params: parameters or parameter groups (groups may set lr, betas, eps, weight_decay).
            eps: damping added to the bias-corrected sqrt(D).
            update_d_every: refresh D every this many steps after the warm-up.
            d_warmup: refresh D on each of the first `d_warmup` steps.
            bias_correction: "steps" (reference behaviour) or "d_updates" (count D refreshes).
            generator: torch.Generator for the Rademacher vectors (any device; draws are moved).
        """
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if update_d_every < 1:
            raise ValueError(f"update_d_every must be >= 1, got {update_d_every}")
        if d_warmup < 0:
            raise ValueError(f"d_warmup must be >= 0, got {d_warmup}")
        if bias_correction not in ("steps", "d_updates"):
            raise ValueError(f"bias_correction must be 'steps' or 'd_updates', got {bias_correction!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.update_d_every = update_d_every
        self.d_warmup = d_warmup
        self.bias_correction = bias_correction
        self.generator = generator
        self._steps = 0  # optimiser steps taken (t - 1 during a step)
        self._d_updates = 0  # D refreshes so far
        self._steps_since_d = 0  # steps since the last D refresh
        self._d_fresh = False  # refresh_curvature() already refreshed D for the coming step

    # -- protocol -----------------------------------------------------------------------------

    def should_create_graph(self) -> bool:
        """Whether the coming step refreshes D, so backward must run with create_graph=True."""
        if self._d_updates == 0:
            return True
        return self._steps < self.d_warmup or self._steps_since_d >= self.update_d_every

    @property
    def steps(self) -> int:
        """Optimiser steps taken so far."""
        return self._steps

    @property
    def d_updates(self) -> int:
        """How many times D has been refreshed."""
        return self._d_updates

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state plus the step and refresh counters."""
        sd = super().state_dict()
        sd["esgd"] = {"steps": self._steps, "d_updates": self._d_updates, "steps_since_d": self._steps_since_d}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by `state_dict` (counters included)."""
        state_dict = dict(state_dict)
        counters = state_dict.pop("esgd", None)
        super().load_state_dict(state_dict)
        if counters is not None:
            self._steps = int(counters["steps"])
            self._d_updates = int(counters["d_updates"])
            self._steps_since_d = int(counters["steps_since_d"])

    def refresh_curvature(self) -> None:
        """Refresh D now if the coming step is due one, then drop the gradients' graph.

        Call after backward and before changing the gradients (clipping): the Hessian-vector product
        must differentiate the gradients as backward built them, and the momentum must see them as
        changed. `step()` then does not refresh again.
        """
        params = self._params_with_grad()
        if not params or self._d_fresh:
            return
        if self.should_create_graph():
            self._refresh(params)
            self._d_fresh = True
        self._detach_grads(params)

    # -- the step -----------------------------------------------------------------------------

    def _params_with_grad(self) -> list[torch.Tensor]:
        """Parameters that have a gradient, their state created on first sight."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if p_sparse := next((p for p in params if p.grad.is_sparse), None):
            raise RuntimeError(f"ESGD does not support sparse gradients (parameter of shape {tuple(p_sparse.shape)})")
        for p in params:
            state = self.state[p]
            if not state:
                state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["D"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return params

    @staticmethod
    def _detach_grads(params: list[torch.Tensor]) -> None:
        # The graph that backward(create_graph=True) attached to each gradient is no longer needed
        # and would otherwise keep a reference cycle (parameter -> grad -> graph -> parameter).
        for p in params:
            if p.grad.requires_grad:
                p.grad = p.grad.detach()

    def _refresh(self, params: list[torch.Tensor]) -> None:
        with torch.enable_grad():
            self._refresh_d(params)
        self._d_updates += 1
        self._steps_since_d = 0

    def _rademacher(self, p: torch.Tensor) -> torch.Tensor:
        gen_device = self.generator.device if self.generator is not None else p.device
        v = torch.randint(0, 2, p.shape, generator=self.generator, device=gen_device, dtype=torch.int8)
        return (v.to(device=p.device, dtype=p.dtype) * 2 - 1)

    def _refresh_d(self, params: list[torch.Tensor]) -> None:
        """D <- b2 D + (1 - b2) (Hv)^2 for every parameter, with one joint Hessian-vector product."""
        with_graph = [p for p in params if p.grad.requires_grad]
        if not with_graph:
            raise RuntimeError(
                "ESGD refreshes its curvature estimate on this step but no gradient carries a graph: "
                "call loss.backward(create_graph=optimizer.should_create_graph()) before optimizer.step()"
            )
        vs = [self._rademacher(p) for p in with_graph]
        # One autograd.grad over all parameters: the Hessian couples them, so per-tensor calls
        # would give block-diagonal products instead of H v.
        hvs = torch.autograd.grad(
            [p.grad for p in with_graph], with_graph, grad_outputs=vs, allow_unused=True, retain_graph=False
        )
        hv_of = {id(p): hv for p, hv in zip(with_graph, hvs, strict=True)}
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is None:
                    continue
                hv = hv_of.get(id(p))
                state = self.state[p]
                d = state["D"]
                d.mul_(beta2)
                if hv is not None:
                    # A gradient without graph (or unused in the graph) has a zero Hessian row.
                    d.addcmul_(hv, hv, value=1.0 - beta2)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One ESGD step; `closure` (optional) must re-evaluate the loss and call backward as described."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        params = self._params_with_grad()
        if not params:
            return loss
        if not self._d_fresh and self.should_create_graph():
            self._refresh(params)
        self._d_fresh = False
        self._detach_grads(params)

        self._steps += 1
        self._steps_since_d += 1
        t = self._steps
        t2 = t if self.bias_correction == "steps" else self._d_updates
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            bc1 = 1.0 - beta1**t
            bc2 = 1.0 - beta2**t2
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                m, d = state["m"], state["D"]
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                if wd != 0:
                    p.mul_(1.0 - lr * wd)
                denom = d.sqrt().div_(math.sqrt(bc2)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bc1)
        return loss
