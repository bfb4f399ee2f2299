"""End-to-end fits through the public entry point, on real shared data."""

import json

import pytest
import torch
import trimesh

from nfcore.errors import FitCanceled, InputError
from nfcore.fit import fit
from nfcore.presets import resolve_config

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_sparse_noisy_bunny_reaches_chamfer_threshold(shared_data, tmp_path, device):
    cloud = shared_data / "pointclouds" / "bunny_sparse_10k_noisy.ply"
    gt = shared_data / "meshes" / "bunny.ply"
    config = resolve_config("sdf", "fast", {"train": {"steps": 300}, "extraction": {"resolution": 128}}, device="cpu")
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
    import numpy as np

    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    src = tmp_path / "s.xyz"
    np.savetxt(src, np.hstack([n, n]))
    config = resolve_config("sdf", "fast", {"train": {"steps": 10_000, "progress_interval_s": 0}})
    with pytest.raises(FitCanceled):
        fit(src, config, tmp_path / "out", device="cpu", callback=lambda p: not (p.phase == "train" and (p.step or 0) >= 3))


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        fit(tmp_path / "nope.ply", resolve_config("sdf", "fast"), tmp_path)
