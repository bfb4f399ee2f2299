"""Using a prior: start a field from its weights and take its learned inner steps on a new cloud.

`adapt(prior, points, normals)` is the library call (MetaSDF's test time: a few SGD steps with the
learned per-parameter learning rates). `fit` uses a prior through `MethodConfig.prior`:
`config_with_prior` makes the config describe the prior's field, `start_from_prior` builds that
field and runs the inner steps on the fit's own task data, then the usual training loop continues.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nfcore.config import MethodConfig
from nfcore.errors import InputError
from nfcore.field import NeuralField
from nfcore.meta.inner import adapt_in_place, inner_task
from nfcore.meta.prior import Prior, load_prior


def _as_tensor(a, name: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float32) if not isinstance(a, torch.Tensor) else a,
                        dtype=torch.float32, device=device)
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] < 1:
        raise InputError(f"{name} must have shape (N, 3), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contain NaN or infinite values")
    return t


def adapt(
    prior: Prior | str | Path,
    points,
    normals,
    steps: int | None = None,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> NeuralField:
    """A field fitted to one oriented cloud by `steps` inner steps from `prior`.

    Args:
        prior: a Prior or the path of a prior file.
        points, normals: (N, 3) arrays or tensors, points in the training cube [-1, 1] (map a scan
            there with `nfcore.normalize.fit_similarity`, as `fit` does), unit normals.
        steps: SGD steps with the learned learning rates; None = the prior's `inner_steps`
            (the count it was meta-trained for; more steps can overshoot).
        generator: batch sampling on `device` (default: seeded with 0).
    Returns:
        The adapted NeuralField on `device`, in eval mode.
    """
    device = torch.device(device)
    if not isinstance(prior, Prior):
        prior = load_prior(prior)
    steps = prior.inner_steps if steps is None else steps
    if steps < 0:
        raise InputError(f"adaptation steps must be >= 0, got {steps}")
    p = _as_tensor(points, "points", device)
    n = _as_tensor(normals, "normals", device)
    if n.shape != p.shape:
        raise InputError(f"points {tuple(p.shape)} and normals {tuple(n.shape)} must have the same shape")
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    field = prior.build_field(device)
    task = inner_task(p, n, prior.sdf, prior.batch_size, prior.precondition)
    adapt_in_place(field, prior.lrs_on(device), task, steps, prior.precondition, generator)
    return field.eval()


def config_with_prior(config: MethodConfig) -> tuple[MethodConfig, Prior | None]:
    """`config` with the field (encoding, network) of the prior it names, and that prior (None without one).

    The prior's weights only fit the field they were learned for, so its field replaces the
    preset's; the returned config is the one recorded with the fit's results.
    Raises:
        InputError: the prior file is unusable (see `load_prior`).
    """
    if config.prior is None:
        return config, None
    prior = load_prior(config.prior.path)
    return config.model_copy(update={"encoding": prior.encoding, "network": prior.network}), prior


def start_from_prior(prior: Prior, task, config: MethodConfig, device: torch.device,
                     generator: torch.Generator) -> tuple[NeuralField, dict]:
    """The prior's field after its inner steps on `task`'s cloud (an SDFTask), and what was done (for metrics).

    The inner steps use the prior's own loss weights and batch size: its learning rates were learned for them.
    """
    steps = prior.inner_steps if config.prior.inner_steps is None else config.prior.inner_steps
    field = prior.build_field(device)
    inner = inner_task(task.points, task.normals, prior.sdf, prior.batch_size, prior.precondition)
    losses = adapt_in_place(field, prior.lrs_on(device), inner, steps, prior.precondition, generator)
    info = {"path": str(config.prior.path), "inner_steps": steps, "algorithm": prior.info.get("algorithm"),
            "inner_loss_first": losses[0] if losses else None, "inner_loss_last": losses[-1] if losses else None}
    return field, info
