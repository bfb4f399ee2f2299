"""The method catalogue: what each method takes and produces, and its options schema."""

from __future__ import annotations

import importlib.util
from functools import lru_cache

from api.errors import ProblemError

INPUT_FORMATS = {
    "pointcloud": [".xyz", ".ply", ".npz", ".npy"],
    "mesh": [".obj", ".off", ".stl", ".ply", ".glb"],
    "image": [".png", ".jpg", ".jpeg"],
}

METHODS = {
    "sdf": {
        "title": "Neural SDF",
        "description": "Signed distance field fitted to an oriented point cloud (or points sampled from a mesh), "
        "with stochastic preconditioning; the mesh is extracted with marching cubes.",
        "input_kinds": ["pointcloud", "mesh"],
        "requires_normals": False,
        "output_formats": ["ply", "obj", "glb", "stl"],
    },
    "occupancy": {
        "title": "Neural occupancy",
        "description": "Occupancy field fitted to a closed mesh (binary cross-entropy); mesh by marching cubes.",
        "input_kinds": ["mesh"],
        "requires_normals": False,
        "output_formats": ["ply", "obj", "glb", "stl"],
    },
    "image": {
        "title": "Image fitting",
        "description": "A 2D neural field fitted to an image; returns the fitted image and its PSNR curve.",
        "input_kinds": ["image"],
        "requires_normals": False,
        "output_formats": ["png"],
    },
}

PRESETS = ["fast", "balanced", "quality"]


def available(name: str) -> bool:
    """Whether nfcore ships the method's task module (methods land one by one)."""
    try:
        return importlib.util.find_spec(f"nfcore.tasks.{name}") is not None
    except ModuleNotFoundError:
        return False


def summary(name: str) -> dict:
    m = METHODS[name]
    formats = sorted({f for k in m["input_kinds"] for f in INPUT_FORMATS[k]})
    return {"name": name, **m, "input_formats": formats, "presets": PRESETS, "available": available(name),
            "links": {"self": f"/v1/methods/{name}"}}


@lru_cache(maxsize=1)
def options_schema() -> dict:
    from nfcore.config import MethodConfig

    return MethodConfig.model_json_schema()


def detail(name: str, device: str) -> dict:
    if name not in METHODS:
        raise ProblemError(404, "method_not_found", f"no method {name!r}; choose one of {', '.join(METHODS)}")
    from nfcore.presets import preset_overrides

    dev = "cpu" if device == "cpu" else "cuda" if device == "cuda" else "cpu"
    presets = {}
    for p in PRESETS:
        try:
            presets[p] = preset_overrides(name, p, dev)
        except ValueError:
            presets[p] = {}
    return {**summary(name), "options_schema": options_schema(), "preset_options": presets}
