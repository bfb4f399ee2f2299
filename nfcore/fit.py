"""The public entry point: fit a neural field to an input file and write the results.

Every task goes through the same stages, each a slice of the overall progress fraction:
load 0-0.05, train 0.05-0.85, extract 0.85-0.95, evaluate 0.95-0.98, write 0.98-1.0.
The kernel method (`config.method == "kernel"`, sdf only) runs a "solve" phase in place of "train".
The task (nfcore.tasks) says what each stage means for its kind of input; this module runs
them, adds the metrics every task shares and writes metrics.json and config.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import trimesh

from nfcore.config import MethodConfig
from nfcore.device import resolve_device
from nfcore.errors import InputError
from nfcore.heap import reuse_freed_memory
from nfcore.progress import ProgressCallback, Reporter
from nfcore.tasks import PhaseProgress, task_type
from nfcore.train import train

PHASE_SPANS: dict[str, tuple[float, float]] = {
    "load": (0.0, 0.05),
    "train": (0.05, 0.85),
    "solve": (0.05, 0.85),  # the kernel method's training-free solve, in place of "train"
    "extract": (0.85, 0.95),
    "evaluate": (0.95, 0.98),
    "write": (0.98, 1.0),
}


@dataclasses.dataclass
class FitResult:
    """What a fit produced: files written, quality figures, the resolved config."""

    artifacts: dict[str, Path]
    metrics: dict
    config: MethodConfig
    seconds: float
    steps: int
    mesh: Any = dataclasses.field(default=None, repr=False)  # trimesh.Trimesh for sdf/occupancy


class _Phases:
    """Reports the start and sub-progress of each pipeline phase and keeps its wall-clock seconds.

    Args:
        reporter: where progress goes.
        device: on CUDA each phase ends with a synchronize, so that work queued on the GPU is
            timed in the phase that queued it.
    """

    def __init__(self, reporter: Reporter, device: torch.device):
        self.reporter = reporter
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def run(self, phase: str, message: str, **fields) -> Iterator[PhaseProgress]:
        """Enter `phase`; yields its `progress(fraction, message=None)`, fraction 0..1 within the phase."""
        lo, hi = PHASE_SPANS[phase]

        def progress(fraction: float, message: str | None = None) -> None:
            self.reporter.report(phase, lo + (hi - lo) * fraction, force=message is not None, message=message or "")

        self.reporter.report(phase, lo, force=True, message=message, **fields)
        t0 = time.perf_counter()
        yield progress
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[phase] = time.perf_counter() - t0


def _resuming(checkpoint_path: str | Path | None) -> bool:
    """Whether training will resume from a checkpoint (whose weights replace any warm start)."""
    return checkpoint_path is not None and Path(checkpoint_path).exists()


@reuse_freed_memory()
def fit(
    input_path: str | Path | list[str | Path],
    config: MethodConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    callback: ProgressCallback | None = None,
    gt_path: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
) -> FitResult:
    """Fit `config.task` to `input_path` and write artifacts into `out_dir`.

    Args:
        input_path: one file, or a list of point-cloud files that are overlapping scans (views) of one
            object in a common frame (sdf only): registered as `config.input.registration` says and
            merged (nfcore.scans); the metrics gain `scans`. A list of one is that one file.
        device: "auto", "cpu", "cuda" or None (then `config.device`).
        callback: receives `nfcore.progress.Progress` at a bounded rate; returning False stops
            the fit with FitCanceled.
        gt_path: optional ground-truth mesh (sdf, occupancy); adds Chamfer/F-score/NC/IoU to the metrics.
        checkpoint_path: resume from / save training checkpoints to this file (every
            `config.train.checkpoint_every` steps and at the end).
    Raises:
        InputError: the input or the options are unusable (message names the problem).
        FitCanceled: the callback asked to stop.
    """
    paths = [Path(p) for p in input_path] if isinstance(input_path, (list, tuple)) else [Path(input_path)]
    if not paths:
        raise InputError("no input file given")
    for p in paths:
        if not p.is_file():
            raise InputError(f"input file not found: {p}")
    if len(paths) > 1 and config.task != "sdf":
        raise InputError(f"several inputs are scans of one object, which only the sdf task merges; task "
                         f"{config.task!r} takes one input ({len(paths)} given)")
    path = paths[0]
    source = paths if len(paths) > 1 else path  # what the task reads: one file, or the scans to merge
    kernel = config.method == "kernel"
    if kernel:
        from nfcore.kernel.task import KernelSDFTask  # the one task with a kernel method (config validates it)

        task_cls = KernelSDFTask
    else:
        task_cls = task_type(config.task)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device if device is not None else config.device)
    reporter = Reporter(callback, config.train.progress_interval_s)
    phases = _Phases(reporter, device)
    seed = config.train.seed
    gt = Path(gt_path) if gt_path is not None else None

    prior = prior_info = init_info = None
    if config.prior is not None and not kernel and config.prior.path is None:
        # An id names a prior in the service's store; only the service knows its file.
        raise InputError(f"prior id {config.prior.id!r} was not resolved to a file: nfcore reads prior files "
                         "(`prior.path`); the service resolves `prior.id` before the fit")
    if config.prior is not None and not kernel:  # a meta-learned prior brings its own field (nfcore.meta)
        from nfcore.meta.adapt import config_with_prior

        config, prior = config_with_prior(config)

    reading = f"reading {path.name}" if len(paths) == 1 else f"reading and merging {len(paths)} scans"
    with phases.run("load", reading) as progress:
        task = task_cls.load(source, config, device, progress)
        if prior is not None:  # the prior's weights fix the field's shape: its encoding is not adapted
            config = config.model_copy(update={"adapt": [p for p in config.adapt if not p.startswith("encoding.")]})
        config, settings = task.adapt(config)  # what the preset leaves to the data (nfcore.adaptive)
        built = kernel or prior is not None  # neither trains a freshly initialised field
        field = None if built else task.build_field(config, device, torch.Generator().manual_seed(seed))

    hook_seconds = 0.0

    def on_step(step: int, field: torch.nn.Module) -> None:
        nonlocal hook_seconds
        t0 = time.perf_counter()
        task.on_step(step, field)
        hook_seconds += time.perf_counter() - t0

    if kernel:
        with phases.run("solve", "solving the kernel system") as progress:
            field = task.solve(config, progress)
        training = None
    else:
        with phases.run("train", "training", step=0, total_steps=config.train.steps):
            train_generator = torch.Generator(device=device).manual_seed(seed)
            train_span = PHASE_SPANS["train"]
            train_config = config
            if prior is not None:  # the prior's learned inner steps first, then the usual loop
                from nfcore.meta.adapt import start_from_prior

                field, prior_info = start_from_prior(prior, task, config, device, train_generator)
            elif config.init.kind == "kernel" and not _resuming(checkpoint_path):
                # The kernel solve distilled into the field (nfcore.warmstart), in the first tenth of
                # the train span; its own generator leaves the training batches as without it.
                from nfcore.warmstart import warm_start, warm_started

                lo, hi = train_span
                mid = lo + 0.1 * (hi - lo)
                warm = warm_start(
                    field, task.points, task.normals, config,
                    generator=torch.Generator(device=device).manual_seed(seed + 1),
                    progress=lambda fraction, message=None: reporter.report(
                        "train", lo + (mid - lo) * fraction, force=message is not None, message=message or ""),
                )
                init_info = warm.stats()
                train_span = (mid, hi)
                train_config = warm_started(config)
                # Training proper starts now: say so (with its step count) as the phase's start did, since a
                # short training after the warm start may otherwise report no step before it ends.
                reporter.report("train", mid, force=True, message="training", step=0, total_steps=config.train.steps)
            training = train(
                field,
                task,
                train_config,
                device=device,
                generator=train_generator,
                reporter=reporter,
                checkpoint_path=checkpoint_path,
                phase_span=train_span,
                on_step=on_step,
            )

    with phases.run("extract", "extracting") as progress:
        products = task.extract(field, config, progress)

    with phases.run("evaluate", "computing metrics"):
        task_metrics = task.evaluate(field, products, config, gt)

    with phases.run("write", "writing artifacts"):
        artifacts = task.write(products, out_dir, config)
        (out_dir / "config.json").write_text(config.model_dump_json(indent=2))
        artifacts["config.json"] = out_dir / "config.json"
        if task.similarity is not None:
            (out_dir / "normalization.json").write_text(json.dumps(task.similarity.to_dict(), indent=2))
            artifacts["normalization.json"] = out_dir / "normalization.json"

    if training is None:  # the kernel method: no training, no network (its solve figures are under "kernel")
        common: dict = {"method": "kernel", "steps": 0, "solve_seconds": phases.seconds["solve"]}
    else:
        common = {
            "method": "neural",
            "steps": training.steps,
            "resumed_from": training.resumed_from,
            "train_seconds": max(0.0, training.seconds - hook_seconds),  # the on_step bookkeeping is not training
            "samples_per_second": training.samples_per_second,
            "final_loss": training.final_loss,
            "encoding": config.encoding.type,
            "network": config.network.type,
            "optimizer": config.optimizer.type,
            "precondition": config.precondition_enabled(),
            **({"prior": prior_info} if prior_info is not None else {}),
            # The warm start's solve and distillation (their seconds are in timings["train"], not in train_seconds).
            "init": init_info if init_info is not None else {"kind": "default"},
        }
    metrics = {
        "task": task.name,
        **task_metrics,
        **common,
        **({"settings": settings} if settings is not None else {}),
        "device": str(device),
        "timings": phases.seconds,
        **({"timings_detail": task.step_seconds} if task.step_seconds else {}),
        "seconds": reporter.elapsed(),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    artifacts["metrics.json"] = out_dir / "metrics.json"
    reporter.report("write", 1.0, force=True, message="done")
    mesh = products if isinstance(products, trimesh.Trimesh) else None
    steps = training.steps if training is not None else 0
    return FitResult(artifacts=artifacts, metrics=metrics, config=config, seconds=reporter.elapsed(), steps=steps, mesh=mesh)
