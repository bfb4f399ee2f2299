"""The inner loop: a few plain SGD steps on the SDF task's loss, with per-parameter learning rates.

Shared by meta-training (functional: the adapted weights stay differentiable w.r.t. the initial
weights and the learning rates) and by adaptation from a prior (in place, no graph kept), so
that a prior is used with exactly the loop it was learned with.
"""

from __future__ import annotations

import torch

from nfcore.config import PreconditionConfig, SDFTaskConfig
from nfcore.meta.functional import BoundField, Params, sgd_step
from nfcore.precondition import noise_scale
from nfcore.tasks.sdf import SDFTask
from nfcore.train import DivergedError

# Preconditioning's decay factor g for the inner loop: 8, the release default for encodings without
# a level scale; within 5-25 steps the exact g matters little, and one value keeps priors portable.
INNER_DECAY = 8.0


def inner_task(points: torch.Tensor, normals: torch.Tensor, sdf: SDFTaskConfig, batch_size: int,
               precondition: PreconditionConfig) -> SDFTask:
    """The SDF task the inner loop samples and scores: points (N, 3) and normals (N, 3) in the cube."""
    return SDFTask(points, normals, sdf, batch_size=batch_size, boundary=precondition.boundary,
                   gradient_losses_during_noise=precondition.gradient_losses_during_noise)


def inner_alpha(step: int, steps: int, precondition: PreconditionConfig) -> float:
    """Preconditioning noise at inner step `step` of `steps` (0 when off)."""
    return noise_scale(step, steps, precondition, INNER_DECAY, bool(precondition.enabled))


def inner_loop(
    field, params: Params, lrs: Params, task: SDFTask, steps: int, precondition: PreconditionConfig,
    generator: torch.Generator, *, create_graph: bool, detach: bool = False,
) -> Params:
    """`steps` SGD steps from `params`, functionally; returns the adapted parameters.

    Args:
        field: the NeuralField whose structure (and buffers) the parameters fill.
        create_graph: second-order MAML (differentiate through the inner gradients).
        detach: cut the graph after every step (Reptile: the adapted weights are a target, not a function).
    """
    for k in range(steps):
        batch = task.sample(k, generator)
        loss, _ = task.loss(BoundField(field, params), batch, inner_alpha(k, steps, precondition), generator)
        params = sgd_step(params, lrs, loss, create_graph=create_graph)
        if detach:
            params = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    return params


def adapt_in_place(
    field: torch.nn.Module, lrs: Params, task: SDFTask, steps: int, precondition: PreconditionConfig,
    generator: torch.Generator, on_step=None,
) -> list[float]:
    """`steps` SGD steps on `field`'s own parameters (theta -= lr * grad); returns the loss before each step.

    Args:
        on_step: optional `on_step(step, loss_terms)` after each step.
    """
    params = dict(field.named_parameters())
    names = list(params)
    losses: list[float] = []
    field.train()
    for k in range(steps):
        batch = task.sample(k, generator)
        loss, terms = task.loss(field, batch, inner_alpha(k, steps, precondition), generator)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        with torch.no_grad():
            for name, g in zip(names, grads, strict=True):
                if g is not None:
                    params[name].sub_(lrs[name] * g)
        losses.append(float(loss.detach()))  # a sync per step: a few dozen steps at most
        if not torch.isfinite(loss.detach()):
            raise DivergedError(f"loss became NaN or inf at adaptation step {k}; the prior's learning rates "
                                "do not suit this input (use fewer prior steps)")
        if on_step is not None:
            on_step(k, terms)
    return losses
