"""`nfrecon meta-train` and `nfrecon fit --prior`, end to end on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from nfcore.meta import load_prior
from nfrecon.cli import main
from tests.conftest import sphere_cloud

TINY = {"network": {"type": "mlp", "hidden_features": 32, "hidden_layers": 2}, "batch_size": 128,
        "outer_batch_size": 256, "inner_steps": 2, "meta_batch_size": 2, "checkpoint_every": 1}


def _family(tmp_path):
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    for i, r in enumerate((0.6, 0.8, 1.0)):
        trimesh.creation.icosphere(subdivisions=3, radius=r).export(shapes / f"s{i}.obj")
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return shapes


@pytest.mark.slow
def test_meta_train_then_fit_with_the_prior(tmp_path, capsys):
    shapes = _family(tmp_path)
    prior = tmp_path / "prior.pt"
    args = ["meta-train", str(shapes), "-o", str(prior), "--config", str(tmp_path / "tiny.json"), "--steps", "3",
            "--device", "cpu", "-q"]
    assert main(args) == 0, capsys.readouterr().err
    assert "wrote prior" in capsys.readouterr().out
    loaded = load_prior(prior)
    assert loaded.inner_steps == 2 and loaded.info["n_shapes"] == 3 and loaded.info["meta_steps"] == 3
    assert not (tmp_path / "prior.pt.ckpt").exists()  # removed once the prior is written

    points, normals = sphere_cloud(1500, radius=1.3, center=(1.0, 0.0, 0.0), seed=4)
    src = tmp_path / "scan.xyz"
    np.savetxt(src, np.hstack([points, normals]), fmt="%.6f")
    out = tmp_path / "scan.ply"
    code = main(["fit", str(src), "-o", str(out), "--prior", str(prior), "--steps", "5", "--resolution", "32",
                 "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(out.with_name("scan.metrics.json").read_text())
    assert metrics["prior"]["inner_steps"] == 2 and metrics["steps"] == 5 and metrics["network"] == "mlp"
    mesh = trimesh.load(out, force="mesh")
    assert abs(np.median(np.linalg.norm(mesh.vertices - [1.0, 0.0, 0.0], axis=1)) - 1.3) < 0.15


@pytest.mark.slow
def test_meta_train_resumes_and_refuses_to_overwrite_a_checkpoint(tmp_path, capsys):
    shapes = _family(tmp_path)
    prior = tmp_path / "prior.safetensors"
    ckpt = tmp_path / "run.ckpt"
    base = ["meta-train", str(shapes), "-o", str(prior), "--config", str(tmp_path / "tiny.json"), "--device", "cpu",
            "--checkpoint", str(ckpt), "-q"]
    # A first run cut short leaves its checkpoint (simulated: 2 steps with the same settings but a kept checkpoint).
    from nfcore.meta import MetaTrainConfig, load_shapes, meta_train

    cfg = MetaTrainConfig.model_validate({**TINY, "steps": 2})
    meta_train(load_shapes([shapes]), cfg, checkpoint_path=ckpt)
    assert main([*base, "--steps", "4"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*base, "--steps", "4", "--resume"]) == 0
    assert "resumed from step 2" in capsys.readouterr().out


def test_fit_with_a_bad_prior_is_a_clear_error(tmp_path, capsys):
    points, normals = sphere_cloud(500, seed=1)
    src = tmp_path / "scan.xyz"
    np.savetxt(src, np.hstack([points, normals]))
    fake = tmp_path / "prior.pt"
    fake.write_bytes(b"\x80\x02not a prior at all" * 10)
    code = main(["fit", str(src), "-o", str(tmp_path / "o.ply"), "--prior", str(fake), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "not a prior file" in err and "Traceback" not in err
