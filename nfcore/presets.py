"""Named presets: good settings per task and device, so a user need not tune anything.

A preset is a partial MethodConfig (a dict) merged onto the defaults; user overrides are merged
on top by `nfcore.spec.resolve`, so `MethodSpec(task="sdf", preset="fast", overrides={"train":
{"steps": 500}})` changes only the steps.
"""

from __future__ import annotations

import copy
from typing import Any

from nfcore.vocab import PRESETS, TASK_METHODS, TASKS

# Sections that are discriminated unions: an override naming another `type` replaces the section.
_UNION_SECTIONS = ("encoding", "network", "optimizer")

# Shared by every SDF preset (measured on the shared bunny clouds, see bench/sdf.py and the README):
# - noise stays on for the whole fit and decays from alpha_0 to alpha_0 / 8 (instead of the release's
#   hard stop at 25%): the residual blur keeps the fit from following position noise in sparse scans,
#   and at alpha_0 / 8 it is small enough for dense clean clouds;
# - a 10x lower surface weight than SIREN's lets the clean normals, not noisy positions, shape the surface;
# - the largest component drops the small floaters hash grids leave in empty space;
# - what depends on the cloud (its spacing and noise) is left to nfcore.adaptive: the extraction grid
#   and the field's finest cells follow the spacing, and clean scans drop the noise at the end;
# - vertices are projected onto the zero level (finer than marching cubes' interpolation on detail);
# - clouds that look open are trimmed where no point supports the surface (unscanned sides).
_SDF_COMMON: dict = {
    "precondition": {"initial_scale": 0.02, "start": 0.0, "end": 1.0, "decay_factor": 8.0},
    "sdf": {"surface_weight": 300.0},
    "extraction": {"largest_component": True, "project": True, "trim": "auto"},
    "adapt": ["extraction.resolution", "encoding.finest_resolution", "precondition.end", "sdf.surface_weight",
              "sdf.normal_weight"],
}

_SDF_CPU: dict[str, dict] = {
    "fast": {
        "encoding": {"type": "hashgrid", "n_levels": 8, "log2_hashmap_size": 15, "base_resolution": 8, "finest_resolution": 128},
        "network": {"type": "mlp", "hidden_features": 32, "hidden_layers": 1},
        "train": {"steps": 800, "batch_size": 4096},
        # With vertex projection, 128 scores within 0.3% of 192 on Chamfer-L1 (sparse bunny and
        # armadillo) in half the marching-cubes time; the spacing rule asks for less on 10k clouds.
        "extraction": {"resolution": 128},
    },
    # Warm-started from the kernel solve (init.kind "kernel", nfcore.warmstart), 500 steps scored below
    # 1000 steps from the geometric init on 4 of the 5 shared sparse-noisy clouds (rocker arm +1.7%;
    # bench/results/warmstart_balanced.md) and, on shapes never tuned on, on all 8 noisy cells (0.5-5.4%)
    # with the 8 clean ones within -0.3% to +0.7% (bench/results/stress_unseen.md), in about 0.7x the time.
    # The solve is capped as the kernel method's CPU presets are (depth 8): a million points solve in seconds.
    "balanced": {
        "encoding": {"type": "hashgrid", "n_levels": 12, "log2_hashmap_size": 17, "base_resolution": 8, "finest_resolution": 512},
        "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2},
        "train": {"steps": 500, "batch_size": 4096},
        "init": {"kind": "kernel"},
        "kernel": {"voxel_per_spacing": 1.2, "max_depth": 8},
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

# Images: a 2D hash grid with a small ReLU MLP, as instant-ngp fits images; SIREN at 1000 steps
# took about 30 minutes for a 512x512 photo on 2 CPU cores, this reaches 30+ dB in a few hundred
# cheap steps. The finest level matches the training side (max_side), so a level resolves a pixel.
# SIREN, FINER, Gauss and WIRE stay available through overrides ({"encoding": {"type": "identity"},
# "network": {"type": "siren"}}). Noise is off: an image is fitted at its own pixels.
_IMAGE_COMMON: dict = {
    "network": {"type": "mlp", "hidden_features": 64, "hidden_layers": 2, "activation": "relu", "geometric_init": False},
    "optimizer": {"type": "adam", "lr": 1e-2, "grid_lr": 1e-2},
    "precondition": {"enabled": False},
}


def _image_grid(log2_table: int, finest: int) -> dict:
    return {"type": "hashgrid", "n_levels": 12, "log2_hashmap_size": log2_table, "base_resolution": 16,
            "finest_resolution": finest}


_IMAGE: dict[str, dict[str, dict]] = {
    # Measured on 2 CPU cores, camera and astronaut 512x512 (hash grid, batch 16384): 100 steps
    # 28-29 dB, 300 steps 37 dB.
    "cpu": {
        "fast": {"encoding": _image_grid(16, 512), "train": {"steps": 100, "batch_size": 16384, "clip_grad_norm": None},
                 "image": {"max_side": 512}},
        "balanced": {"encoding": _image_grid(17, 512), "train": {"steps": 250, "batch_size": 16384, "clip_grad_norm": None},
                     "image": {"max_side": 512}},
        "quality": {"encoding": _image_grid(18, 1024), "train": {"steps": 800, "batch_size": 32768, "clip_grad_norm": None},
                    "image": {"max_side": 1024}},
    },
    # A GPU takes whole images per step for the same cost as a CPU's 16k pixels.
    "cuda": {
        "fast": {"encoding": _image_grid(17, 512), "train": {"steps": 300, "batch_size": 262144, "clip_grad_norm": None},
                 "image": {"max_side": 512}},
        "balanced": {"encoding": _image_grid(18, 1024), "train": {"steps": 500, "batch_size": 262144, "clip_grad_norm": None},
                     "image": {"max_side": 1024}},
        "quality": {"encoding": _image_grid(19, 2048), "train": {"steps": 2000, "batch_size": 524288, "clip_grad_norm": None},
                    "image": {"max_side": 2048}},
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


# The kernel method (training-free, sdf only; nfcore.kernel). The voxel follows the point spacing:
# 1.2 spacings per voxel beat Poisson depth 8 on Chamfer-L1 on the shared sparse-noisy clouds
# (bench/results/kernel.md; 1.0 put the rocker arm and the terrain a level deeper, slower and no better). Depth 8 caps the CPU presets: on a 1M-point bunny it matched Poisson
# depth 10 (Chamfer-L1 0.002441 against 0.002442) in 18 s and 2 GiB, while depth 9 has 4x the
# unknowns. `fast` takes coarser voxels, `quality` a level deeper and two marching-cubes samples
# per voxel edge. No largest-component filter: open scans stay open and the grid holds no floaters
# far from the data.
_KERNEL: dict[str, dict[str, dict]] = {
    "cpu": {
        "fast": {"kernel": {"voxel_per_spacing": 1.8, "max_depth": 8}},
        "balanced": {"kernel": {"voxel_per_spacing": 1.2, "max_depth": 8}},
        "quality": {"kernel": {"voxel_per_spacing": 1.2, "max_depth": 9, "upsample": 2}},
    },
    "cuda": {
        "fast": {"kernel": {"voxel_per_spacing": 1.8, "max_depth": 10}},
        "balanced": {"kernel": {"voxel_per_spacing": 1.2, "max_depth": 11}},
        "quality": {"kernel": {"voxel_per_spacing": 1.2, "max_depth": 11, "upsample": 2}},
    },
}


def preset_overrides(task: str, preset: str, device: str = "cpu", method: str = "neural") -> dict[str, Any]:
    """The partial config a preset stands for (a deep copy), for `method` ("neural" or "kernel")."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if method not in TASK_METHODS[task]:
        raise ValueError(f"method {method!r} is not available for task {task!r}; choose one of {', '.join(TASK_METHODS[task])}")
    if method == "kernel":
        return merge({"task": task, "method": method, "extraction": {"largest_component": False}},
                     _KERNEL["cuda" if device == "cuda" else "cpu"][preset])
    if task == "sdf":
        table = _SDF_CUDA if device == "cuda" else _SDF_CPU
        return merge({"task": task, **_SDF_COMMON}, table[preset])
    if task == "image":
        return merge({"task": task, **_IMAGE_COMMON}, _IMAGE["cuda" if device == "cuda" else "cpu"][preset])
    return copy.deepcopy({"task": task, **_OCCUPANCY[preset]})


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
