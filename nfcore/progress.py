"""Progress records and the throttled reporter that the training loop and `fit` use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from nfcore.errors import FitCanceled

PHASES = ("load", "train", "extract", "evaluate", "write")


@dataclass
class Progress:
    """One progress report. `fraction` is overall (0..1) and never decreases within a fit."""

    phase: str
    fraction: float
    elapsed_seconds: float
    step: int | None = None
    total_steps: int | None = None
    loss: dict[str, float] = field(default_factory=dict)
    noise_scale: float | None = None
    eta_seconds: float | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[Progress], "bool | None"]


class Reporter:
    """Sends Progress to a callback at a bounded rate and turns a `False` answer into FitCanceled.

    Args:
        callback: receives Progress; returning False (or raising FitCanceled) stops the fit.
        interval_s: minimum seconds between reports, except forced ones (phase changes, last step).
    """

    def __init__(self, callback: ProgressCallback | None, interval_s: float = 1.0):
        self.callback = callback
        self.interval_s = interval_s
        self.t0 = time.perf_counter()
        self._last = -float("inf")
        self._fraction = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def due(self) -> bool:
        """Whether a non-forced report would be sent now (lets callers skip building one)."""
        return self.callback is not None and time.perf_counter() - self._last >= self.interval_s

    def report(self, phase: str, fraction: float, *, force: bool = False, **fields) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        self._fraction = max(self._fraction, min(1.0, float(fraction)))
        progress = Progress(phase=phase, fraction=self._fraction, elapsed_seconds=now - self.t0, **fields)
        if self.callback(progress) is False:
            raise FitCanceled(f"canceled during {phase}")
