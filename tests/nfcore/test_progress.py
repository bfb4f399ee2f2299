"""Progress lines never show None; the ETA comes from a smoothed rate and only after a few measurements."""

from __future__ import annotations

import pytest

from nfcore import progress as progress_mod
from nfcore.progress import ETA_MIN_RATE_SAMPLES, Progress, Reporter, describe_progress


def test_describe_leaves_unknown_fields_out():
    p = Progress(phase="load", fraction=0.01, elapsed_seconds=0.2, message="reading cloud.ply")
    assert p.describe() == "load 1.0% reading cloud.ply"
    line = describe_progress({"phase": "train", "fraction": 0.42, "step": 1260, "total_steps": 3000,
                              "loss": {"surface": 0.01234}, "eta_seconds": 31.4, "message": "step 1260/3000"})
    assert line == "train 42.0% step 1260/3000 surface=0.01234 ETA 31 s"
    assert "None" not in describe_progress({"phase": None, "fraction": None, "step": None, "total_steps": None,
                                            "loss": None, "eta_seconds": None, "message": None})
    assert describe_progress({"phase": "train", "step": 5, "eta_seconds": 3725}) == "train step 5 ETA 1 h 02 min"


def test_eta_waits_for_a_few_rates_then_follows_a_smoothed_rate(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: clock["t"])
    seen: list[Progress] = []
    reporter = Reporter(seen.append, interval_s=0)
    # A slow first step (warm-up: 30 s), then 1 step per second; 100 steps in all.
    clock["t"] = 30.0
    reporter.report("train", 0.1, step=1, total_steps=100, eta_seconds=2970.0)  # the naive ETA, overridden
    for step in range(2, 12):
        clock["t"] += 1.0
        reporter.report("train", 0.1 + step / 200, step=step, total_steps=100)
    etas = [p.eta_seconds for p in seen]
    assert etas[:ETA_MIN_RATE_SAMPLES] == [None] * ETA_MIN_RATE_SAMPLES
    # The warm-up never enters the rate: 1 step/s, so the ETA is the remaining steps in seconds.
    assert etas[-1] == pytest.approx(100 - 11)
    # A sudden slow step moves the ETA only part of the way (smoothing), not to 2 s/step at once.
    clock["t"] += 2.0
    reporter.report("train", 0.2, step=12, total_steps=100)
    assert 88 < seen[-1].eta_seconds < 2 * 88


def test_eta_restarts_with_a_new_phase(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: clock["t"])
    seen: list[Progress] = []
    reporter = Reporter(seen.append, interval_s=0)
    for step in range(1, 8):
        clock["t"] += 1.0
        reporter.report("train", step / 100, step=step, total_steps=10)
    assert seen[-1].eta_seconds is not None
    clock["t"] += 1.0
    reporter.report("extract", 0.9, step=1, total_steps=10)
    assert seen[-1].eta_seconds is None


def test_every_report_carries_the_training_curve_so_far_thinned():
    seen: list[Progress] = []
    reporter = Reporter(seen.append, interval_s=0)
    reporter.report("train", 0.1, step=0, total_steps=1000, message="training")  # no loss: not a curve point
    for step in range(1, 1001):
        reporter.report("train", 0.1 + step / 2000, step=step, total_steps=1000,
                        loss={"surface": 1.0 / step}, noise_scale=0.02 / step)
    reporter.report("extract", 0.7, message="marching cubes")
    curve = seen[-1].curve
    assert seen[0].curve == []
    assert 100 <= len(curve) <= progress_mod.CURVE_POINTS + 1  # the kept points and the latest
    steps = [c["step"] for c in curve]
    # thinned evenly over the whole training, the first and the last step kept
    assert steps[-1] == 1000 and steps[0] <= 10 and steps == sorted(steps)
    assert max(b - a for a, b in zip(steps, steps[1:], strict=False)) <= 2 * (1000 // len(steps)) + 2
    assert curve[-1] == {"step": 1000, "loss": {"surface": 1.0 / 1000}, "noise_scale": 0.02 / 1000}
    assert seen[-1].phase == "extract" and seen[-1].step is None
