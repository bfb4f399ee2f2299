"""Smoke run of bench/hashgrid.py with tiny sizes: every variant trains, the reports and the profile are written."""

import json

from bench.hashgrid import main


def test_hashgrid_bench_smoke(tmp_path):
    rows = main(
        [
            "--device", "cpu", "--batch", "64", "32", "--log2", "10", "--levels", "4", "--hidden", "16",
            "--steps", "1", "--warmup", "1", "--repeats", "1", "--profile", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    combos = {(r["variant"], r["gradient"]) for r in rows}
    assert combos == {(v, g) for v in ("stacked", "explicit", "function") for g in ("autograd", "finite_difference")}
    for r in rows:
        assert r["samples_per_s"] > 0 and r["samples_per_cpu_s"] > 0 and r["finite_loss"]
    data = json.loads((tmp_path / "hashgrid.json").read_text())
    assert data["meta"]["batch_samples"] == [128, 64] and len(data["results"]) == 12
    assert sorted({r["batch_samples"] for r in rows}) == [64, 128]
    md = (tmp_path / "hashgrid.md").read_text()
    assert md.count("\n| 10 | 128 |") == 6 and md.count("\n| 10 | 64 |") == 6
    profile = (tmp_path / "profile.txt").read_text()
    assert profile.count("## log2=10") == 6 and "aten::" in profile
