"""The method catalogue: what each task takes and produces, the JSON Schema of a method spec, the presets."""

from __future__ import annotations

from functools import lru_cache

from nfcore.vocab import (
    DEVICE_KINDS,
    PRESETS,
    TASK_INPUT_KINDS,
    TASK_METHODS,
    TASK_OUTPUT_FORMATS,
    TASKS,
    task_extensions,
)
from service.errors import ProblemError

DESCRIPTIONS = {
    "sdf": ("Neural SDF", "Signed distance field fitted to an oriented point cloud (or points sampled from a mesh), "
            "with stochastic preconditioning; the mesh is extracted with marching cubes. `method: kernel` instead "
            "solves for a sum of B-spline kernels on a sparse voxel grid (training-free, seconds; open scans stay open)."),
    "occupancy": ("Neural occupancy",
                  "Occupancy field fitted to a closed mesh (binary cross-entropy); mesh by marching cubes."),
    "image": ("Image fitting", "A 2D neural field fitted to an image; returns the fitted image and its PSNR curve."),
}


def summary(task: str) -> dict:
    title, description = DESCRIPTIONS[task]
    return {"name": task, "title": title, "description": description, "input_kinds": list(TASK_INPUT_KINDS[task]),
            "input_formats": list(task_extensions(task)), "requires_normals": False,
            "output_formats": list(TASK_OUTPUT_FORMATS[task]), "presets": list(PRESETS),
            "methods": list(TASK_METHODS[task]), "available": True,
            "links": {"self": f"/v1/methods/{task}"}}


def summaries() -> list[dict]:
    return [summary(task) for task in TASKS]


@lru_cache(maxsize=1)
def spec_schema() -> dict:
    from nfcore.spec import MethodSpec

    return MethodSpec.json_schema()


def detail(task: str) -> dict:
    """The task's summary, the spec's JSON Schema, and what each preset sets on each device."""
    if task not in TASKS:
        raise ProblemError(404, "method_not_found", f"no method {task!r}; choose one of {', '.join(TASKS)}")
    from nfcore.presets import preset_overrides

    by_method = {method: {device: {p: preset_overrides(task, p, device, method) for p in PRESETS} for device in DEVICE_KINDS}
                 for method in TASK_METHODS[task]}
    return {**summary(task), "spec_schema": spec_schema(), "preset_options": by_method["neural"],
            "method_preset_options": by_method}
