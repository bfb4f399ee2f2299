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
    # The training so far, thinned to at most CURVE_POINTS: [{"step", "loss", "noise_scale"}, ...]. A
    # service keeps only the latest report, so a page that opens late (or polls slower than a short
    # training reports) still draws the whole curve from it.
    curve: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One log line: only the fields that are known (never 'None'), e.g.
        `train 42.0% step 1260/3000 surface=0.0123 ETA 31 s`."""
        return describe_progress(self.to_dict())


def _seconds(s: float) -> str:
    s = max(0, round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def describe_progress(data: dict) -> str:
    """Progress.describe for a progress dict (as stored with a job): unknown fields are left out."""
    parts = [str(data.get("phase") or "progress")]
    fraction = data.get("fraction")
    if isinstance(fraction, (int, float)):
        parts.append(f"{100 * fraction:.1f}%")
    step, total = data.get("step"), data.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total is not None else f"step {step}")
    loss = data.get("loss") or {}
    if loss:
        parts.append(", ".join(f"{k}={v:.4g}" for k, v in loss.items() if isinstance(v, (int, float))))
    eta = data.get("eta_seconds")
    if isinstance(eta, (int, float)):
        parts.append(f"ETA {_seconds(eta)}")
    message = data.get("message") or ""
    if message and not (step is not None and message.startswith("step ")):  # "step i/n" is already there
        parts.append(message)
    return " ".join(p for p in parts if p)


ProgressCallback = Callable[[Progress], "bool | None"]


ETA_MIN_RATE_SAMPLES = 3
"""Rate measurements (between reports) needed before an ETA is shown: the first steps include warm-up
(allocation, caches, a GPU's kernel compilation), and an ETA from them overshoots by far."""
ETA_SMOOTHING = 0.3
"""Weight of the newest rate in its exponential moving average."""
CURVE_POINTS = 200
"""Most points of the loss curve that a report carries (a few hundred draw fast and stay small as JSON)."""


class _Curve:
    """The loss curve thinned evenly: every `stride`-th point plus the latest, the stride doubling
    whenever more than CURVE_POINTS are kept (so old and new parts stay equally dense)."""

    def __init__(self):
        self._kept: list[dict] = []
        self._stride = 1
        self._count = 0
        self._latest: dict | None = None

    def add(self, point: dict) -> None:
        if self._count % self._stride == 0:
            self._kept.append(point)
            if len(self._kept) > CURVE_POINTS:
                self._kept = self._kept[::2]
                self._stride *= 2
        self._count += 1
        self._latest = point

    def points(self) -> list[dict]:
        if self._latest is None or (self._kept and self._kept[-1] is self._latest):
            return list(self._kept)
        return [*self._kept, self._latest]


class Reporter:
    """Sends Progress to a callback at a bounded rate and turns a `False` answer into FitCanceled.

    For reports with `step` and `total_steps`, `eta_seconds` is the Reporter's own: remaining steps
    over an exponentially smoothed step rate, measured from the phase's first reported step (not
    from its start, which includes warm-up) and None until ETA_MIN_RATE_SAMPLES rates were measured.

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
        self._rate_phase: str | None = None
        self._rate_step = 0
        self._rate_time = 0.0
        self._rate: float | None = None
        self._rate_samples = 0
        self._curve = _Curve()

    def _eta(self, phase: str, step: int, total: int, now: float) -> float | None:
        if phase != self._rate_phase or step < self._rate_step:
            # A new phase (or a resumed run): start measuring again.
            self._rate_phase, self._rate_step, self._rate_time = phase, step, now
            self._rate, self._rate_samples = None, 0
            return None
        dt, done = now - self._rate_time, step - self._rate_step
        if dt > 0 and done > 0:
            rate = done / dt
            self._rate = rate if self._rate is None else ETA_SMOOTHING * rate + (1 - ETA_SMOOTHING) * self._rate
            self._rate_samples += 1
            self._rate_step, self._rate_time = step, now
        if self._rate is None or self._rate_samples < ETA_MIN_RATE_SAMPLES:
            return None
        return max(0.0, (total - step) / self._rate)

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
        if fields.get("step") is not None and fields.get("total_steps"):
            fields["eta_seconds"] = self._eta(phase, int(fields["step"]), int(fields["total_steps"]), now)
        if fields.get("step") is not None and fields.get("loss"):
            self._curve.add({"step": int(fields["step"]), "loss": dict(fields["loss"]),
                             "noise_scale": fields.get("noise_scale")})
        progress = Progress(phase=phase, fraction=self._fraction, elapsed_seconds=now - self.t0,
                            curve=self._curve.points(), **fields)
        if self.callback(progress) is False:
            raise FitCanceled(f"canceled during {phase}")
