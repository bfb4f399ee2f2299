"""The `nfrecon` console script, run as a user would (a subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from nfrecon.cli import main


def _sphere_xyz(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = 2.0 + 1.5 * d  # off-centre and scaled: the output must come back in these coordinates
    np.savetxt(path, np.hstack([pts, d]), fmt="%.6f")
    return pts


TINY = ["--preset", "fast", "--steps", "150", "--resolution", "48", "-q"]


@pytest.mark.slow
def test_fit_writes_mesh_in_input_frame_and_summary(tmp_path):
    src = tmp_path / "sphere.xyz"
    _sphere_xyz(src)
    out = tmp_path / "sphere.obj"
    proc = subprocess.run(
        [sys.executable, "-m", "nfrecon", "fit", str(src), "-o", str(out), *TINY],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fit residuals" in proc.stdout and "wrote" in proc.stdout and "phases: load" in proc.stdout
    assert "cloud: 3000 points" in proc.stdout and "closed" in proc.stdout  # the analysis
    assert "chosen from the cloud:" in proc.stdout and "within: read" in proc.stdout
    mesh = trimesh.load(out, force="mesh")
    radius = np.linalg.norm(mesh.vertices - 2.0, axis=1)
    assert abs(np.median(radius) - 1.5) < 0.1
    metrics = json.loads(out.with_name("sphere.metrics.json").read_text())
    assert metrics["steps"] == 150 and metrics["fit_residuals"]["normal_agreement"] > 0.8


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "broken.xyz"
    bad.write_text("1 2 3\n4 5\nnot numbers\n")
    code = main(["fit", str(bad), "-o", str(tmp_path / "x.ply"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nfrecon: error:") and "Traceback" not in err


def test_bad_option_names_the_field(tmp_path, capsys):
    src = tmp_path / "s.xyz"
    _sphere_xyz(src, 200)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"steps": -5}}))
    code = main(["fit", str(src), "-o", str(tmp_path / "x.ply"), "--config", str(cfg), "-q"])
    assert code == 2 and "steps" in capsys.readouterr().err



def test_config_takes_inline_json_and_names_bad_json(tmp_path, capsys):
    src = tmp_path / "s.xyz"
    _sphere_xyz(src, 200)
    out = tmp_path / "x.ply"
    # Inline JSON as the README shows it: the bad value must reach the validator (and be named there).
    assert main(["fit", str(src), "-o", str(out), "--config", '{"train": {"steps": -5}}', "-q"]) == 2
    assert "steps" in capsys.readouterr().err
    assert main(["fit", str(src), "-o", str(out), "--config", '{"train": ', "-q"]) == 2
    err = capsys.readouterr().err
    assert "--config: not valid JSON" in err and "Traceback" not in err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["fit", str(src), "-o", str(out), "--config", str(tmp_path / "list.json"), "-q"]) == 2
    assert "expected a JSON object" in capsys.readouterr().err

def test_eval_prints_metrics_json(tmp_path, capsys):
    a = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    b = trimesh.creation.icosphere(subdivisions=3, radius=1.02)
    a.export(tmp_path / "a.ply")
    b.export(tmp_path / "b.ply")
    assert main(["eval", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--samples", "20000"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert 0 < m["chamfer_l1"] < 0.02 and m["normal_consistency"] > 0.99
