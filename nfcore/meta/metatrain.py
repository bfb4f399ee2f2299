"""Meta-training a prior: MetaSDF (MAML with learned per-parameter inner learning rates) or Reptile.

MAML (Finn et al. 2017) with Meta-SGD learning rates, as MetaSDF (Sitzmann et al. 2020) uses it:
for each shape of a meta-batch, take `inner_steps` SGD steps theta' = theta - lr * grad L_in from the
shared initial weights theta, with lr a tensor per parameter; the outer loss L_out(theta') is then
differentiated through the inner steps into theta and lr, and Adam updates both.

- L_in is `SDFTask.loss` on the shape's sparse noisy oriented cloud: exactly the loss and data a fit
  from the prior will have (a user brings a scan, not SDF samples), with its normal and eikonal terms.
- L_out is L1 between clamped SDF values on ground-truth SDF samples (DeepSDF / MetaSDF), where the
  shape came from a closed mesh: it teaches theta and lr what the cloud loss alone cannot (the true
  distance away from the points). Shapes without ground truth use L_in on a fresh batch instead.
- Second order: L_in already differentiates the field w.r.t. its input, so MAML's outer gradient
  needs third derivatives of the network. Plain autograd networks (MLP, SIREN, Fourier features)
  have them; `first_order` drops them (FOMAML), `reptile` needs none and keeps lr fixed.
- Reptile (Nichol et al. 2018): theta moves towards the adapted weights, theta <- theta + eps (theta' - theta),
  fed to Adam as the gradient theta - mean(theta').

Checkpoints (weights, learning rates, Adam state, generator state, step) are written atomically
every `checkpoint_every` steps and resumed from; the loop is the same on CPU and CUDA.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from nfcore.errors import InputError
from nfcore.field import NeuralField
from nfcore.meta.config import MetaTrainConfig
from nfcore.meta.data import MetaShape
from nfcore.meta.functional import BoundField, Params, field_params
from nfcore.meta.inner import inner_loop, inner_task
from nfcore.meta.prior import Prior
from nfcore.progress import ProgressCallback, Reporter
from nfcore.train import DivergedError


@dataclass
class MetaTrainResult:
    """A meta-training run: the prior and what the run did."""

    prior: Prior
    steps: int
    seconds: float
    resumed_from: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)  # (outer step, mean outer loss), thinned


def outer_loss(fn, shape: MetaShape, task, cfg: MetaTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The meta-objective of adapted field `fn` on `shape`: clamped-L1 on SDF samples, else the cloud loss."""
    if shape.sdf_points is None:
        loss, _ = task.loss(fn, task.sample(0, generator), 0.0, generator)
        return loss
    m = shape.sdf_points.shape[0]
    idx = torch.randint(0, m, (min(cfg.outer_batch_size, m),), device=shape.sdf_points.device, generator=generator)
    f = fn(shape.sdf_points[idx])[:, 0]  # (B,)
    c = cfg.sdf_clamp
    return (f.clamp(-c, c) - shape.sdf_values[idx].clamp(-c, c)).abs().mean()


def _check_shapes(shapes: Sequence[MetaShape]) -> None:
    if len(shapes) < 2:
        raise InputError(f"meta-training needs at least 2 shapes, got {len(shapes)}")
    for s in shapes:
        if s.points.ndim != 2 or s.points.shape[1] != 3 or s.normals.shape != s.points.shape:
            raise InputError(f"shape {s.name or '?'}: points and normals must both be (N, 3)")
        if s.points.shape[0] < 16:
            raise InputError(f"shape {s.name or '?'} has {s.points.shape[0]} points; at least 16 are needed")


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save never leaves a truncated checkpoint


def post_adaptation_loss(
    field_: NeuralField, params: Params, lrs: Params, shapes: Sequence[MetaShape], cfg: MetaTrainConfig,
    generator: torch.Generator, steps: int | None = None,
) -> float:
    """Mean outer loss over `shapes` after `steps` (default: cfg.inner_steps) inner steps from `params` with `lrs`."""
    total = 0.0
    for shape in shapes:
        task = inner_task(shape.points, shape.normals, cfg.sdf, cfg.batch_size, cfg.precondition)
        p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
        lr = {n: t.detach() for n, t in lrs.items()}
        adapted = inner_loop(field_, p, lr, task, cfg.inner_steps if steps is None else steps, cfg.precondition,
                             generator, create_graph=False)
        with torch.no_grad():
            total += float(outer_loss(BoundField(field_, adapted), shape, task, cfg, generator))
    return total / len(shapes)


def meta_train(
    shapes: Sequence[MetaShape],
    cfg: MetaTrainConfig,
    *,
    device: torch.device | str = "cpu",
    callback: ProgressCallback | None = None,
    checkpoint_path: str | Path | None = None,
    info: dict | None = None,
) -> MetaTrainResult:
    """Meta-learn a prior from `shapes` (already in the training cube; see nfcore.meta.data).

    Args:
        callback: receives `nfcore.progress.Progress` (phase "meta-train") at most every
            `cfg.progress_interval_s`; returning False stops with FitCanceled.
        checkpoint_path: resume from it when it exists (same config, `steps` may grow), save to it
            every `cfg.checkpoint_every` steps and at the end.
        info: extra JSON-ready facts recorded in the prior (e.g. the data it was trained on).
    Raises:
        InputError: too few or malformed shapes, or a checkpoint of another config.
        DivergedError: the meta-loss became NaN or inf.
    """
    device = torch.device(device)
    _check_shapes(shapes)
    shapes = [s.to(device) for s in shapes]
    tasks = [inner_task(s.points, s.normals, cfg.sdf, cfg.batch_size, cfg.precondition) for s in shapes]
    init_gen = torch.Generator().manual_seed(cfg.seed)
    field_ = NeuralField(cfg.encoding, cfg.network, 3, 1, sdf=True, device=device, generator=init_gen)
    params = field_params(field_)  # the meta-parameters theta (leaves)
    lrs = {n: torch.full_like(p, cfg.inner_lr).requires_grad_(cfg.algorithm == "maml") for n, p in params.items()}
    groups = [{"params": list(params.values()), "lr": cfg.outer_lr}]
    if cfg.algorithm == "maml":
        groups.append({"params": list(lrs.values()), "lr": cfg.lr_lr or cfg.outer_lr})
    optimizer = torch.optim.Adam(groups)
    base_lrs = [g["lr"] for g in groups]
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    pick = torch.Generator().manual_seed(cfg.seed + 1)  # which shapes form each meta-batch (CPU: indices)
    config_json = cfg.model_copy(update={"steps": 1}).model_dump_json()  # everything but the length must match

    start = 0
    history: list[tuple[int, float]] = []
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, map_location=device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so, never unpickle it
            raise InputError(f"cannot resume from {ckpt.name}: not a meta-training checkpoint ({exc})") from None
        if state.get("config") != config_json:
            raise InputError(f"cannot resume from {ckpt.name}: it was written with other meta-training settings")
        with torch.no_grad():
            for n in params:
                params[n].copy_(state["params"][n])
                lrs[n].copy_(state["lrs"][n])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors
        pick.set_state(state["pick"].cpu())
        start = int(state["step"])
        history = [(int(s), float(v)) for s, v in state["history"].tolist()]

    def checkpoint(step: int) -> None:
        _save_checkpoint(ckpt, {
            "step": step, "config": config_json,
            "params": {n: p.detach() for n, p in params.items()}, "lrs": {n: t.detach() for n, t in lrs.items()},
            "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "pick": pick.get_state(),
            "history": torch.tensor(history, dtype=torch.float64).reshape(-1, 2),
        })

    reporter = Reporter(callback, cfg.progress_interval_s)
    history_every = max(1, cfg.steps // 200)
    all_params = list(params.values()) + (list(lrs.values()) if cfg.algorithm == "maml" else [])
    t0 = time.perf_counter()
    reporter.report("meta-train", start / cfg.steps, force=True, step=start, total_steps=cfg.steps,
                    message=f"{cfg.algorithm}: {len(shapes)} shapes, {cfg.inner_steps} inner steps")
    for step in range(start, cfg.steps):
        optimizer.zero_grad(set_to_none=True)
        chosen = torch.randperm(len(shapes), generator=pick)[: min(cfg.meta_batch_size, len(shapes))].tolist()
        meta_loss = 0.0
        if cfg.algorithm == "maml":
            for i in chosen:
                adapted = inner_loop(field_, params, lrs, tasks[i], cfg.inner_steps, cfg.precondition, generator,
                                     create_graph=not cfg.first_order)
                loss = outer_loss(BoundField(field_, adapted), shapes[i], tasks[i], cfg, generator) / len(chosen)
                loss.backward()  # per shape: its graph is freed before the next shape's is built
                meta_loss += float(loss.detach())
        else:
            delta = {n: torch.zeros_like(p) for n, p in params.items()}
            for i in chosen:
                p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
                p = inner_loop(field_, p, lrs, tasks[i], cfg.inner_steps, cfg.precondition, generator,
                               create_graph=False, detach=True)
                with torch.no_grad():
                    meta_loss += float(outer_loss(BoundField(field_, p), shapes[i], tasks[i], cfg, generator)) / len(chosen)
                    for n in params:
                        delta[n] += (params[n] - p[n]) / len(chosen)
            for n, prm in params.items():
                prm.grad = delta[n]
        if not math.isfinite(meta_loss):
            raise DivergedError(f"meta-loss became NaN or inf at outer step {step}; try a lower inner_lr or outer_lr")
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(all_params, cfg.clip_grad_norm)
        if cfg.outer_schedule == "cosine":  # from the step alone, so a resumed run continues the same curve
            scale = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * (0.1 + 0.9 * scale)  # ends at a tenth of the start
        optimizer.step()
        done = step + 1
        if step % history_every == 0 or done == cfg.steps:
            history.append((done, meta_loss))
        if ckpt is not None and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            checkpoint(done)
        if reporter.due() or done == cfg.steps:
            elapsed = time.perf_counter() - t0
            rate = (done - start) / elapsed if elapsed > 0 else math.inf
            reporter.report("meta-train", done / cfg.steps, force=done == cfg.steps, step=done, total_steps=cfg.steps,
                            loss={"outer": meta_loss}, eta_seconds=(cfg.steps - done) / rate if rate > 0 else None,
                            message=f"outer step {done}/{cfg.steps}")
    if ckpt is not None:
        checkpoint(cfg.steps)
    seconds = time.perf_counter() - t0
    prior = Prior(
        encoding=cfg.encoding, network=cfg.network,
        params={n: p.detach().cpu().clone() for n, p in params.items()},
        lrs={n: t.detach().cpu().clone() for n, t in lrs.items()},
        inner_steps=cfg.inner_steps, batch_size=cfg.batch_size, sdf=cfg.sdf,
        precondition=cfg.precondition.model_copy(update={"enabled": bool(cfg.precondition.enabled)}),
        info={"algorithm": cfg.algorithm, "first_order": cfg.first_order, "meta_steps": cfg.steps,
              "meta_batch_size": cfg.meta_batch_size, "n_shapes": len(shapes), "device": str(device),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(info or {})},
    )
    return MetaTrainResult(prior=prior, steps=cfg.steps - start, seconds=seconds, resumed_from=start, history=history)
