"""bench.image_presets: one real `nfrecon fit` run of a photo, its report and JSON."""

import json

from bench.image_presets import main


def test_one_run_writes_a_report_with_the_fit_figures(tmp_path):
    out = tmp_path / "image_presets"
    assert main(["--photos", "camera", "--presets", "fast", "--repeats", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["photo"], r["preset"], r["steps"]) for r in rows] == [("camera", "fast", 100)]
    row = rows[0]
    assert row["psnr"] > 25.0  # the fast preset's 100 steps on a 512x512 photo
    assert row["wall_seconds"] >= row["fit_seconds"] >= row["train_seconds"] > 0
    assert "| camera | fast | 100 |" in out.with_suffix(".md").read_text()
