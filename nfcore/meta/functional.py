"""A NeuralField evaluated with parameters given as tensors, and the inner-loop SGD step.

MAML differentiates through the inner updates, so the adapted weights are non-leaf tensors that
cannot be written into the module. `torch.func.functional_call` evaluates the unchanged module with
them; `BoundField` exposes that as the two calls the SDF loss makes (`field(x)` and
`field.value_and_gradient(x, ...)`), so `SDFTask.loss` runs unchanged on adapted weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from nfcore.field import NeuralField

Params = dict[str, torch.Tensor]
"""NeuralField parameter name -> tensor of that parameter's shape."""


class _Calls(nn.Module):
    """Routes functional_call to the field's forward or to its value_and_gradient (one module, two entry points)."""

    def __init__(self, field: NeuralField):
        super().__init__()
        self.field = field

    def forward(self, x: torch.Tensor, gradient: dict | None = None):
        if gradient is None:
            return self.field(x)
        return self.field.value_and_gradient(x, **gradient)


class BoundField:
    """`field` with its parameters replaced by `params` (differentiable w.r.t. them); buffers are the field's."""

    def __init__(self, field: NeuralField, params: Params):
        self._calls = _Calls(field)
        # functional_call names parameters from the wrapper, one level down.
        self._params = {f"field.{name}": p for name, p in params.items()}
        self.in_dim, self.out_dim = field.in_dim, field.out_dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._calls, self._params, (x,))  # (N, out_dim)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[:, 0]  # (N,)

    def value_and_gradient(self, x: torch.Tensor, *, method: str = "autograd", eps: float = 1e-3,
                           create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """f (N,) and grad f (N, d), as NeuralField.value_and_gradient computes them."""
        gradient = {"method": method, "eps": eps, "create_graph": create_graph}
        return functional_call(self._calls, self._params, (x,), {"gradient": gradient})


def field_params(field: NeuralField) -> Params:
    """The field's parameters by name (the names a prior stores)."""
    return dict(field.named_parameters())


def sgd_step(params: Params, lrs: Params, loss: torch.Tensor, *, create_graph: bool) -> Params:
    """One inner step theta' = theta - lr * grad(loss), lr per parameter entry (Meta-SGD / MetaSDF).

    Args:
        create_graph: keep the graph through the gradient (second-order MAML); False detaches the
            gradient (first-order MAML, and plain adaptation), while theta' stays differentiable
            w.r.t. theta and lr.
    """
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True)
    out: Params = {}
    for name, g in zip(names, grads, strict=True):
        if g is None:  # a parameter the loss does not reach (e.g. an unused skip input)
            out[name] = params[name]
            continue
        out[name] = params[name] - lrs[name] * (g if create_graph else g.detach())
    return out
