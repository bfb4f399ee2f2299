"""Named presets: good settings per task and device, so a user need not tune anything.

A preset is a partial MethodConfig (a dict) merged onto the defaults; user overrides are merged
on top by `nfcore.spec.resolve`, so `MethodSpec(task="sdf", preset="fast", overrides={"train":
{"steps": 500}})` changes only the steps.
"""

from __future__ import annotations

import copy
from typing import Any

from nfcore.vocab import PRESETS, TASKS

# Sections that are discriminated unions: an override naming another `type` replaces the section.
_UNION_SECTIONS = ("encoding", "network", "optimizer")

# Shared by every SDF preset (measured on the shared bunny clouds, see bench/sdf.py and the README):
# - noise stays on for the whole fit and decays from alpha_0 to alpha_0 / 8 (instead of the release's
#   hard stop at 25%): the residual blur keeps the fit from following position noise in sparse scans,
#   and at alpha_0 / 8 it is small enough for dense clean clouds;
# - a 10x lower surface weight than SIREN's lets the clean normals, not noisy positions, shape the surface;
# - the largest component drops the small floaters hash grids leave in empty space.
_SDF_COMMON: dict = {
    "precondition": {"initial_scale": 0.02, "start": 0.0, "end": 1.0, "decay_factor": 8.0},
    "sdf": {"surface_weight": 300.0},
    "extraction": {"largest_component": True},
}

_SDF_CPU: dict[str, dict] = {
    "fast": {
        "encoding": {"type": "hashgrid", "n_levels": 8, "log2_hashmap_size": 15, "base_resolution": 8, "finest_resolution": 128},
        "network": {"type": "mlp", "hidden_features": 32, "hidden_layers": 1},
        "train": {"steps": 800, "batch_size": 4096},
        "extraction": {"resolution": 192},
    },
    "balanced": {
        "encoding": {"type": "hashgrid", "n_levels": 12, "log2_hashmap_size": 17, "base_resolution": 8, "finest_resolution": 512},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 1000, "batch_size": 4096},
        "extraction": {"resolution": 256},
    },
    "quality": {
        "encoding": {"type": "hashgrid", "n_levels": 16, "log2_hashmap_size": 19, "base_resolution": 16, "finest_resolution": 2048},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 3000, "batch_size": 8192},
        "extraction": {"resolution": 384},
    },
}

# Measured on an H200 on the bunny (bench/results/sdf_cuda*.md): big batches fit the noise of a sparse
# scan more than the CPU's small ones, so a finer grid or more samples does not help there.
# `balanced` (the CPU balanced grid, 2000 x 131k samples) scores best on the sparse-noisy cloud and
# matches the finest setting on the dense one in less than half its time; `quality` is that finest
# setting (finest 2048), the best on dense clean clouds.
_SDF_CUDA: dict[str, dict] = {
    "fast": {
        "encoding": {"type": "hashgrid", "n_levels": 16, "log2_hashmap_size": 19, "base_resolution": 16, "finest_resolution": 1024},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 2000, "batch_size": 65536},
        "extraction": {"resolution": 256},
    },
    "balanced": {
        "encoding": {"type": "hashgrid", "n_levels": 12, "log2_hashmap_size": 17, "base_resolution": 8, "finest_resolution": 512},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 2000, "batch_size": 65536},
        "extraction": {"resolution": 512},
    },
    "quality": {
        "encoding": {"type": "hashgrid", "n_levels": 16, "log2_hashmap_size": 19, "base_resolution": 16, "finest_resolution": 2048},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 5000, "batch_size": 131072},
        "extraction": {"resolution": 512},
    },
}

_IMAGE: dict[str, dict] = {
    "fast": {
        "encoding": {"type": "identity"},
        "network": {"type": "siren", "hidden_features": 128, "hidden_layers": 3},
        "optimizer": {"type": "adam", "lr": 1e-4},
        "precondition": {"enabled": False},
        "train": {"steps": 300, "batch_size": 16384, "clip_grad_norm": None},
        "image": {"max_side": 256},
    },
    "balanced": {
        "encoding": {"type": "identity"},
        "network": {"type": "siren", "hidden_features": 256, "hidden_layers": 3},
        "optimizer": {"type": "adam", "lr": 1e-4},
        "precondition": {"enabled": False},
        "train": {"steps": 1000, "batch_size": 65536, "clip_grad_norm": None},
        "image": {"max_side": 512},
    },
    "quality": {
        "encoding": {"type": "identity"},
        "network": {"type": "siren", "hidden_features": 256, "hidden_layers": 4},
        "optimizer": {"type": "adam", "lr": 1e-4},
        "precondition": {"enabled": False},
        "train": {"steps": 3000, "batch_size": 65536, "clip_grad_norm": None},
        "image": {"max_side": 1024},
    },
}

_OCCUPANCY: dict[str, dict] = {
    name: {
        "encoding": {"type": "hashgrid", "n_levels": 12, "log2_hashmap_size": 17, "base_resolution": 8, "finest_resolution": 512},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2, "activation": "relu", "geometric_init": False},
        "train": {"steps": steps, "batch_size": 8192},
        "occupancy": {"n_samples": samples},
        "extraction": {"resolution": res},
    }
    for name, steps, samples, res in (("fast", 500, 100_000, 128), ("balanced", 1500, 200_000, 256), ("quality", 4000, 500_000, 384))
}


def preset_overrides(task: str, preset: str, device: str = "cpu") -> dict[str, Any]:
    """The partial config a preset stands for (a deep copy)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if task == "sdf":
        table = _SDF_CUDA if device == "cuda" else _SDF_CPU
        return merge({"task": task, **_SDF_COMMON}, table[preset])
    if task == "image":
        table = _IMAGE
    else:
        table = _OCCUPANCY
    return copy.deepcopy({"task": task, **table[preset]})


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` into a copy of `base`; a union section with a new `type` is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if key in _UNION_SECTIONS and "type" in value and value["type"] != out[key].get("type"):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


__all__ = ["preset_overrides", "merge"]
