"""bench.convergence: the summary (fewest steps within tolerance) and the report, on made-up runs."""

import json

from bench.convergence import summarise, write_report


def _row(steps, cl1):
    return {"steps": steps, "batch_size": 4096, "samples_seen": steps * 4096, "train_seconds": steps / 40,
            "wall_seconds": steps / 30, "chamfer_l1": cl1, "fscore@0.005": 0.9, "normal_consistency": 0.98}


def test_summary_finds_the_fewest_steps_within_tolerance_and_the_report_shows_them(tmp_path):
    runs = {
        "a/sparse": [_row(400, 0.00320), _row(600, 0.00301), _row(800, 0.00300), _row(1200, 0.00299)],
        "b/sparse": [_row(400, 0.00250), _row(600, 0.00240), _row(800, 0.00200), _row(1200, 0.00199)],
        "c/sparse": [_row(400, 0.00100), {"steps": 600, "error": "boom"}, _row(800, 0.00100), _row(1200, 0.00100)],
    }
    summary = summarise(runs, 800, 0.005)
    fewest = {s["cloud"]: s["fewest_steps_within_tolerance"] for s in summary}
    assert fewest == {"a/sparse": 600, "b/sparse": 800, "c/sparse": 400}
    assert abs(summary[1]["relative"][600] - 0.2) < 1e-9
    meta = {"preset": "fast", "device": "cpu", "steps": [400, 600, 800, 1200], "reference_steps": 800,
            "batch_size": 4096, "tolerance": 0.005, "date": "now", "argv": []}
    out = tmp_path / "conv"
    write_report({"meta": meta, "summary": summary, "runs": runs}, out)
    text = out.with_suffix(".md").read_text()
    assert "| b/sparse | 0.002500 (+25.0%) | 0.002400 (+20.0%) | 0.002000 (+0.0%) | 0.001990 (-0.5%) | 800 |" in text
    assert "| worst relative | +25.00% | +20.00% | +0.00% | +0.00% |" in text
    assert json.loads(out.with_suffix(".json").read_text())["summary"][0]["cloud"] == "a/sparse"
