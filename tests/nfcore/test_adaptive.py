"""nfcore.adaptive: settings chosen from the cloud's analysis, within the preset's bounds, never over the user's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from nfcore.adaptive import (
    CAP,
    CLEAN_END,
    CLEAN_MIN_NOISY_STEPS,
    CLEAN_RATIO,
    ESTIMATED_NORMAL_FACTOR,
    adapt_config,
)
from nfcore.analysis import analyze_cloud
from nfcore.fit import fit
from nfcore.spec import MethodSpec, resolve

ADAPTED = ["encoding.finest_resolution", "extraction.resolution", "precondition.end", "sdf.surface_weight",
           "sdf.normal_weight"]


def _sphere(n: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p = 0.8 * p / np.linalg.norm(p, axis=1, keepdims=True)
    return p + rng.normal(size=p.shape) * noise


def _config(**overrides):
    return resolve(MethodSpec(task="sdf", overrides={"adapt": ADAPTED, **overrides}), "cpu")


def test_a_dense_clean_cloud_gets_finer_extraction_and_a_clean_schedule_than_a_sparse_noisy_one():
    config = _config()
    # scale 0.5: the sphere spans half the cube, as a 400k-point cloud would be spaced across it.
    dense, dense_record = adapt_config(config, analyze_cloud(_sphere(100_000, 0.0)), scale=0.5)
    sparse, sparse_record = adapt_config(config, analyze_cloud(_sphere(3_000, 0.02)), scale=1.0)
    assert dense.extraction.resolution > sparse.extraction.resolution
    assert dense.encoding.finest_resolution >= sparse.encoding.finest_resolution == config.encoding.finest_resolution
    # Off after CLEAN_END of training, but never before CLEAN_MIN_NOISY_STEPS steps.
    floor = CLEAN_MIN_NOISY_STEPS / config.train.steps
    assert dense.precondition.end == pytest.approx(min(config.precondition.end, max(CLEAN_END, floor)))
    # A short fit keeps the noise for CLEAN_MIN_NOISY_STEPS steps (the coarse shape needs them).
    short = _config(train={"steps": 2 * CLEAN_MIN_NOISY_STEPS})
    assert adapt_config(short, analyze_cloud(_sphere(100_000, 0.0)), scale=0.5)[0].precondition.end == pytest.approx(0.5)
    assert sparse.precondition.end == config.precondition.end  # noise stays on to average position noise
    assert dense.sdf.surface_weight > sparse.sdf.surface_weight == config.sdf.surface_weight
    assert dense_record["analysis"]["noise_ratio"] < CLEAN_RATIO <= sparse_record["analysis"]["noise_ratio"]
    for record in (dense_record, sparse_record):
        assert set(record["chosen"]) == set(ADAPTED)
        assert all(c["reason"] for c in record["chosen"].values())



def test_estimated_normals_weigh_less_than_given_ones_on_noisy_clouds_only():
    config = _config()
    clean, noisy = _sphere(3000, 0.0), _sphere(3000, 0.02)
    given, given_record = adapt_config(config, analyze_cloud(noisy, np.ones_like(noisy)), scale=1.0)
    estimated_clean, clean_record = adapt_config(config, analyze_cloud(clean), scale=1.0)
    estimated_noisy, noisy_record = adapt_config(config, analyze_cloud(noisy), scale=1.0)
    assert clean_record["analysis"]["noise_ratio"] < CLEAN_RATIO <= noisy_record["analysis"]["noise_ratio"]
    assert given.sdf.normal_weight == config.sdf.normal_weight
    assert estimated_noisy.sdf.normal_weight == pytest.approx(config.sdf.normal_weight * ESTIMATED_NORMAL_FACTOR)
    assert estimated_noisy.sdf.normal_weight < given.sdf.normal_weight
    # a clean cloud's surface weight is raised: its estimated normals keep their full weight against it
    assert estimated_clean.sdf.surface_weight > config.sdf.surface_weight
    assert estimated_clean.sdf.normal_weight == config.sdf.normal_weight
    assert "estimated" in clean_record["chosen"]["sdf.normal_weight"]["reason"]
    assert "noisy" in noisy_record["chosen"]["sdf.normal_weight"]["reason"]
    assert "given" in given_record["chosen"]["sdf.normal_weight"]["reason"]


def test_the_task_trains_with_the_adapted_loss_weights(tmp_path):
    # The weights the data chose must reach the loss, not only the record (they once did not).
    from nfcore.tasks.sdf import SDFTask

    config = _config()
    # without normals: a clean cloud raises the surface weight, a noisy one lowers the normal weight
    for noise, changed in ((0.0, "sdf.surface_weight"), (0.02, "sdf.normal_weight")):
        cloud = tmp_path / f"sphere-{noise}.xyz"
        np.savetxt(cloud, _sphere(3000, noise, seed=5))
        task = SDFTask.load(cloud, config, torch.device("cpu"), lambda *a, **k: None)
        adapted, record = task.adapt(config)
        assert record["chosen"][changed]["value"] != record["chosen"][changed]["preset"]
        assert task.cfg == adapted.sdf
        assert task.cfg.surface_weight == record["chosen"]["sdf.surface_weight"]["value"]
        assert task.cfg.normal_weight == record["chosen"]["sdf.normal_weight"]["value"]

def test_choices_stay_within_the_presets_bounds():
    config = _config()
    very_dense = analyze_cloud(_sphere(200_000, 0.0))
    tiny_scale, _ = adapt_config(config, very_dense, scale=100.0)  # spacing 100x coarser in cube units
    huge_scale, _ = adapt_config(config, very_dense, scale=0.01)  # spacing 100x finer
    res = config.extraction.resolution
    assert tiny_scale.extraction.resolution == res
    assert huge_scale.extraction.resolution == int(CAP * res)
    finest = config.encoding.finest_resolution
    assert tiny_scale.encoding.finest_resolution == finest
    assert huge_scale.encoding.finest_resolution == pytest.approx(finest * CAP)


def test_a_value_the_user_states_is_not_adapted():
    spec = MethodSpec(task="sdf", overrides={"adapt": ADAPTED})
    assert resolve(spec, "cpu").adapt == ADAPTED
    stated = resolve(MethodSpec(task="sdf", overrides={"extraction": {"resolution": 96}}), "cpu")
    assert "extraction.resolution" not in stated.adapt
    config, record = adapt_config(stated, analyze_cloud(_sphere(100_000, 0.0)), scale=1.0)
    assert config.extraction.resolution == 96 and "extraction.resolution" not in record["chosen"]
    off = resolve(MethodSpec(task="sdf", overrides={"adapt": []}), "cpu")
    assert adapt_config(off, analyze_cloud(_sphere(1000, 0.0)), scale=1.0)[1]["chosen"] == {}


def test_a_finest_resolution_is_skipped_without_a_hash_grid():
    config = _config(encoding={"type": "fourier"})
    adapted, record = adapt_config(config, analyze_cloud(_sphere(5000, 0.0)), scale=1.0)
    assert "encoding.finest_resolution" in record["skipped"]
    assert adapted.encoding.type == "fourier"


def test_a_fit_records_the_analysis_the_choices_and_the_adapted_config(tmp_path):
    cloud = tmp_path / "sphere.xyz"
    points = _sphere(4000, 0.0, seed=3)
    np.savetxt(cloud, np.c_[points, points / np.linalg.norm(points, axis=1, keepdims=True)])
    config = _config(train={"steps": 30, "batch_size": 512}, extraction={"resolution": 32})
    result = fit(cloud, config, tmp_path / "out", device="cpu")
    settings = result.metrics["settings"]
    assert set(settings["chosen"]) == {"encoding.finest_resolution", "precondition.end", "sdf.surface_weight",
                                       "sdf.normal_weight"}
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["precondition"]["end"] == settings["chosen"]["precondition.end"]["value"]
    assert written["encoding"]["finest_resolution"] == settings["chosen"]["encoding.finest_resolution"]["value"]
    assert result.metrics["analysis"]["closed"] is True
    assert result.metrics["analysis"]["n_points"] == 4000


def test_an_open_scan_is_trimmed_where_no_point_supports_the_surface(tmp_path):
    # A hemisphere: the field closes it underneath; trimming must take that invented cap off again.
    points = _sphere(6000, 0.0, seed=4)
    points = points[points[:, 2] > 0]
    cloud = tmp_path / "dome.xyz"
    np.savetxt(cloud, np.c_[points, points / np.linalg.norm(points, axis=1, keepdims=True)])
    config = resolve(MethodSpec(task="sdf", preset="fast", overrides={
        "train": {"steps": 150, "batch_size": 1024}, "extraction": {"resolution": 64, "trim": "auto"}}), "cpu")
    result = fit(cloud, config, tmp_path / "out", device="cpu")
    assert result.metrics["analysis"]["closed"] is False
    trim = result.metrics["trim"]
    assert trim["applied"] and trim["removed_fraction"] > 0.2, trim
    mesh = trimesh.load(result.artifacts["mesh.ply"])
    assert mesh.vertices[:, 2].min() > -0.2  # nothing left far below the scanned dome (radius 0.8)
    # Nor a skirt folded under the rim: within 2 spacings (+2 noise levels) of the rim points at most.
    assert mesh.vertices[:, 2].min() > -0.1, mesh.vertices[:, 2].min()  # the former 4 spacings + 3 noise failed this
