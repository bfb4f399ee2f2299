"""End-to-end fits through the public entry point, on real shared data."""

import json

import numpy as np
import pytest
import torch
import trimesh

from nfcore.errors import FitCanceled, InputError
from nfcore.fit import fit
from nfcore.metrics import has_inside_test
from nfcore.spec import MethodSpec, resolve

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_sparse_noisy_bunny_reaches_chamfer_threshold(shared_data, tmp_path, device):
    cloud = shared_data / "pointclouds" / "bunny_sparse_10k_noisy.ply"
    gt = shared_data / "meshes" / "bunny.ply"
    config = resolve(MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 300}, "extraction": {"resolution": 128}}), "cpu")
    phases = []
    result = fit(cloud, config, tmp_path, device=device, gt_path=gt, callback=lambda p: phases.append(p.phase))
    metrics = result.metrics["ground_truth"]
    # Poisson depth 8 scores 0.0035 here; a short fit must already be close to that.
    assert metrics["chamfer_l1"] < 0.006, metrics
    assert metrics["normal_consistency"] > 0.9, metrics
    mesh = trimesh.load(result.artifacts["mesh.ply"])
    gt_bounds = trimesh.load(gt).bounds
    assert abs(mesh.bounds - gt_bounds).max() < 0.1  # written in the input's own coordinates
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["fit_residuals"]["normal_agreement"] > 0.9
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 300
    assert phases[0] == "load" and "train" in phases and "extract" in phases and phases[-1] == "write"


def test_fit_can_be_canceled_from_the_callback(tmp_path):
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    src = tmp_path / "s.xyz"
    np.savetxt(src, np.hstack([n, n]))
    config = resolve(MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 10_000, "progress_interval_s": 0}}), "cpu")
    with pytest.raises(FitCanceled):
        fit(src, config, tmp_path / "out", device="cpu", callback=lambda p: not (p.phase == "train" and (p.step or 0) >= 3))


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        fit(tmp_path / "nope.ply", resolve(MethodSpec(task="sdf", preset="fast"), "cpu"), tmp_path)


# ---- resuming from a checkpoint, for every task -------------------------------------------


def _tiny_cloud(tmp_path):
    n = np.random.default_rng(0).normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.savetxt(tmp_path / "sphere.xyz", np.hstack([n, n]))
    return tmp_path / "sphere.xyz", {"encoding": {"type": "identity"}}


def _tiny_image(tmp_path):
    from nfcore.io.images import write_image

    y, x = np.mgrid[0:12, 0:12].astype(np.float32) / 11
    return write_image(np.stack([x, y, x * y], axis=-1), tmp_path / "ramp.png"), {}


def _tiny_closed_mesh(tmp_path):
    if not has_inside_test():
        pytest.skip("the occupancy task labels points with Open3D's ray test")
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "sphere.ply")
    overrides = {
        "encoding": {"type": "identity"},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2, "activation": "relu"},
        "optimizer": {"type": "adam", "lr": 1e-2},  # high enough for a surface to show within 40 steps
        "occupancy": {"n_samples": 2000},
    }
    return tmp_path / "sphere.ply", overrides


@pytest.mark.parametrize(
    ("task", "make_input"), [("sdf", _tiny_cloud), ("image", _tiny_image), ("occupancy", _tiny_closed_mesh)]
)
def test_canceled_fit_resumes_from_its_checkpoint(tmp_path, task, make_input):
    src, overrides = make_input(tmp_path)
    train = {"steps": 40, "batch_size": 256, "checkpoint_every": 10, "progress_interval_s": 0}
    config = resolve(MethodSpec(task=task, preset="fast", overrides={**overrides, "train": train, "extraction": {"resolution": 32}}), "cpu")
    ckpt = tmp_path / "fit.ckpt"

    def stop_after_20(p):
        return not (p.phase == "train" and (p.step or 0) >= 20)

    with pytest.raises(FitCanceled):
        fit(src, config, tmp_path / "first", device="cpu", callback=stop_after_20, checkpoint_path=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 20

    result = fit(src, config, tmp_path / "second", device="cpu", checkpoint_path=ckpt)
    assert result.metrics["resumed_from"] == 20 and result.steps == 20
    assert torch.load(ckpt, weights_only=True)["step"] == 40
    assert set(result.metrics["timings"]) == {"load", "train", "extract", "evaluate", "write"}
    saved = json.loads(result.artifacts["metrics.json"].read_text())
    assert saved["task"] == task and saved["resumed_from"] == 20
