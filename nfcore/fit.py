"""The public entry point: fit a neural field to an input file and write the results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfcore.config import MethodConfig
from nfcore.errors import InputError
from nfcore.progress import ProgressCallback


@dataclass
class FitResult:
    """What a fit produced: files written, quality figures, the resolved config."""

    artifacts: dict[str, Path]
    metrics: dict
    config: MethodConfig
    seconds: float
    steps: int
    mesh: Any = field(default=None, repr=False)  # trimesh.Trimesh for sdf/occupancy


def fit(
    input_path: str | Path,
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
        device: "auto", "cpu", "cuda" or None (then `config.device`).
        callback: receives `nfcore.progress.Progress` at a bounded rate; returning False stops
            the fit with FitCanceled.
        gt_path: optional ground-truth mesh; adds Chamfer/F-score/NC/IoU to the metrics.
        checkpoint_path: resume from / save training checkpoints to this file.
    Raises:
        InputError: the input or the options are unusable (message names the problem).
        FitCanceled: the callback asked to stop.
    """
    path = Path(input_path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    kwargs = dict(device=device, callback=callback)
    if config.task == "sdf":
        from nfcore.tasks.sdf import fit_sdf

        return fit_sdf(path, config, out_dir, gt_path=gt_path, checkpoint_path=checkpoint_path, **kwargs)
    if config.task == "image":
        from nfcore.tasks.image import fit_image

        return fit_image(path, config, out_dir, **kwargs)
    if config.task == "occupancy":
        from nfcore.tasks.occupancy import fit_occupancy

        return fit_occupancy(path, config, out_dir, **kwargs)
    raise InputError(f"unknown task {config.task!r}")
