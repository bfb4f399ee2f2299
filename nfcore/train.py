"""The one training loop, shared by every task (SDF, image, occupancy) and every optimizer."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nfcore.config import MethodConfig
from nfcore.errors import FitCanceled
from nfcore.heap import reuse_freed_memory
from nfcore.optim import build_optimizer, build_scheduler
from nfcore.precondition import noise_scale
from nfcore.progress import Reporter
from nfcore.tasks.base import Task


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says at which step."""


@dataclass
class TrainResult:
    """What a training run did."""

    steps: int
    seconds: float
    samples_per_second: float
    final_loss: dict[str, float]
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, total loss), thinned
    resumed_from: int = 0


def _raise_if_diverged(bad_step: torch.Tensor | None) -> None:
    """DivergedError if a step's loss was NaN or inf (reads the device flag: a sync)."""
    if bad_step is not None and (step := int(bad_step)) >= 0:
        raise DivergedError(f"loss became NaN or inf at step {step}; try a lower learning rate")


def _save_checkpoint(path: Path, field_: torch.nn.Module, optimizer, scheduler, step: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {"step": step, "field": field_.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp,
    )
    os.replace(tmp, path)  # atomic: a crash mid-save never leaves a truncated checkpoint


@reuse_freed_memory()
def train(
    field_: torch.nn.Module,
    task: Task,
    config: MethodConfig,
    *,
    device: torch.device | str,
    generator: torch.Generator,
    reporter: Reporter | None = None,
    checkpoint_path: str | Path | None = None,
    phase_span: tuple[float, float] = (0.0, 1.0),
    on_step=None,
) -> TrainResult:
    """Fit `field_` to `task` for `config.train.steps` steps.

    Args:
        reporter: receives "train" progress; its callback can stop training (FitCanceled).
        checkpoint_path: if given, resume from it when it exists and save to it every
            `config.train.checkpoint_every` steps and at the end.
        phase_span: the part of the overall progress fraction that training covers.
        on_step: optional `on_step(step, field_)` hook (e.g. PSNR curves); called after each step.
    Raises:
        DivergedError: the loss became NaN or inf.
        FitCanceled: the progress callback asked to stop.
    """
    tcfg = config.train
    total = tcfg.steps
    optimizer = build_optimizer(field_, config.optimizer, generator=generator)
    scheduler = build_scheduler(optimizer, config.schedule, total)
    sp_enabled = config.precondition_enabled()
    sp_decay = config.precondition_decay_factor()
    wants_graph = getattr(optimizer, "should_create_graph", None)
    refresh_curvature = getattr(optimizer, "refresh_curvature", None)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    start_step = 0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        field_.load_state_dict(state["field"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])

    lo, hi = phase_span
    t0 = time.perf_counter()
    history: list[tuple[int, float]] = []
    history_every = max(1, total // 200)
    terms: dict[str, float] = {}
    samples = 0
    # The first non-finite step, kept on the loss's device: testing `isfinite(loss)` in Python every
    # step would wait for the GPU each time (the CPU could not queue the next step's kernels
    # meanwhile, ~2x slower on an H200). It is read where the loop reads the loss anyway; on CPU
    # reading it costs nothing, so it is read every step there.
    bad_step: torch.Tensor | None = None
    check_every_step = torch.device(device).type == "cpu"
    field_.train()
    for step in range(start_step, total):
        alpha = noise_scale(step, total, config.precondition, sp_decay, sp_enabled)
        batch = task.sample(step, generator)
        create_graph = bool(wants_graph()) if wants_graph else False
        optimizer.zero_grad(set_to_none=True)
        loss, terms = task.loss(field_, batch, alpha, generator)
        if bad_step is None:
            bad_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
        bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        if check_every_step:
            _raise_if_diverged(bad_step)
        loss.backward(create_graph=create_graph)
        if create_graph and refresh_curvature is not None:
            # The Hessian-vector product needs the raw graph-carrying gradients, which clipping in
            # place would cut; take it first, so that the momentum still gets clipped gradients.
            refresh_curvature()
        if tcfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, tcfg.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        if create_graph:
            for p in params:  # free the graph kept for the Hessian-vector product
                p.grad = None
        samples += next(iter(batch.values())).shape[0] if batch else 0
        if step % history_every == 0 or step == total - 1:
            _raise_if_diverged(bad_step)
            history.append((step, float(loss.detach())))
        if on_step is not None:
            on_step(step, field_)

        done = step + 1
        if ckpt is not None and tcfg.checkpoint_every and done % tcfg.checkpoint_every == 0 and done < total:
            _raise_if_diverged(bad_step)  # never save a diverged state
            _save_checkpoint(ckpt, field_, optimizer, scheduler, done)
        if reporter is not None and (reporter.due() or done == total):
            _raise_if_diverged(bad_step)
            elapsed = time.perf_counter() - t0
            rate = (done - start_step) / elapsed if elapsed > 0 else math.inf
            eta = (total - done) / rate if rate > 0 else None
            reporter.report(
                "train",
                lo + (hi - lo) * done / total,
                force=done == total,
                step=done,
                total_steps=total,
                loss={k: float(v) for k, v in terms.items()},
                noise_scale=alpha,
                eta_seconds=eta,
                message=f"step {done}/{total}",
            )
    _raise_if_diverged(bad_step)
    if ckpt is not None:
        _save_checkpoint(ckpt, field_, optimizer, scheduler, total)
    field_.eval()
    seconds = time.perf_counter() - t0
    return TrainResult(
        steps=total - start_step,
        seconds=seconds,
        samples_per_second=samples / seconds if seconds > 0 else 0.0,
        final_loss={k: float(v) for k, v in terms.items()},
        history=history,
        resumed_from=start_step,
    )


__all__ = ["train", "TrainResult", "DivergedError", "FitCanceled"]
