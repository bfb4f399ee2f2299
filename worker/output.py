"""`RunOutput`: what one kind of job (a fit, a meta-training) hands back to the runner to publish and record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunOutput:
    """Outputs written into the attempt directory, and what to record about them.

    Attributes:
        on_published: `on_published(metrics)` runs after the outputs are published and before the job is
            finished (a meta-train job registers its prior there and adds its id to `metrics`); it
            may return an undo, called when the job turns out to be no longer ours.
    """

    out_dir: Path
    metrics: dict
    seconds: float
    steps: int
    device: str
    on_published: Callable[[dict], Callable[[], None] | None] | None = None
