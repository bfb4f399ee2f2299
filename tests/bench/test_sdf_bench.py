"""bench.sdf: the run matrix and the report (the fits themselves are covered by tests/nfcore/test_fit.py)."""

import json

from bench.sdf import build_matrix, main, write_report


def _args(**kw):
    import argparse

    base = dict(shapes=["bunny"], clouds=["sparse"], presets=["fast"], encodings=["hashgrid", "fourier"],
                encoding_preset="balanced", steps=None, poisson_depth=8, device="cpu")
    base.update(kw)
    return argparse.Namespace(**base)


def test_matrix_has_baseline_presets_and_sp_pairs():
    specs = build_matrix(_args())
    names = [s["name"] for s in specs]
    assert names[0] == "bunny/sparse/poisson"
    assert "bunny/sparse/fast" in names
    for enc in ("hashgrid", "fourier"):
        on = next(s for s in specs if s["name"] == f"bunny/sparse/{enc}/sp")
        off = next(s for s in specs if s["name"] == f"bunny/sparse/{enc}/nosp")
        # equal steps and the same network: only the preconditioning differs
        assert on["overrides"]["precondition"] == {"enabled": True}
        assert off["overrides"]["precondition"] == {"enabled": False}
        assert {k: v for k, v in on["overrides"].items() if k != "precondition"} == {
            k: v for k, v in off["overrides"].items() if k != "precondition"}
    assert build_matrix(_args(poisson_depth=0, presets=[], encodings=[])) == []


def test_report_files(tmp_path):
    rows = [{"name": "a", "encoding": "hashgrid", "precondition": True, "steps": 3, "wall_seconds": 1.5,
             "samples_per_second": 10.0, "peak_memory_bytes": 2**20, "chamfer_l1": 0.003, "fscore@0.01": 1.0,
             "fscore@0.005": 0.9, "normal_consistency": 0.98, "iou": None},
            {"name": "b", "error": "Traceback\nValueError: boom"}]
    write_report(rows, tmp_path / "r", {"device": "cpu", "date": "now"})
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["chamfer_l1"] == 0.003
    md = (tmp_path / "r.md").read_text()
    assert "| a | hashgrid | yes | 3 |" in md and "ValueError: boom" in md


def test_missing_data_is_reported(tmp_path, monkeypatch):
    import bench.sdf as mod

    monkeypatch.setattr(mod, "DATA", tmp_path / "nope")
    assert main(["--out", str(tmp_path / "x")]) == 1
