"""The project's vocabularies, each in one place: tasks, presets, devices, input kinds, output formats.

The CLI, the readers, the upload validation, the method spec and `GET /v1/methods` all read these
names from here, so a new format or preset is added once. The `Literal` types are the source; the
tuples are derived from them for code that iterates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

TaskName = Literal["sdf", "image", "occupancy"]
TASKS: tuple[str, ...] = get_args(TaskName)

MethodName = Literal["neural", "kernel"]
"""How a field is obtained: a trained neural field, or the training-free kernel solve (nfcore.kernel)."""
METHODS: tuple[str, ...] = get_args(MethodName)

PresetName = Literal["fast", "balanced", "quality"]
PRESETS: tuple[str, ...] = get_args(PresetName)

DeviceKind = Literal["cpu", "cuda"]
"""The devices presets are tuned for (and that a job is resolved for)."""
DEVICE_KINDS: tuple[str, ...] = get_args(DeviceKind)

MeshFormat = Literal["ply", "obj", "glb", "stl"]
MESH_FORMATS: tuple[str, ...] = get_args(MeshFormat)

InputKind = Literal["pointcloud", "mesh", "image"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)

POINT_CLOUD_EXTENSIONS = (".xyz", ".ply", ".npz", ".npy")
MESH_EXTENSIONS = (".obj", ".off", ".stl", ".ply", ".glb")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")

INPUT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "pointcloud": POINT_CLOUD_EXTENSIONS,
    "mesh": MESH_EXTENSIONS,
    "image": IMAGE_EXTENSIONS,
}
"""File extensions per input kind (`.ply` is a cloud or a mesh, by whether it has faces)."""

TASK_INPUT_KINDS: dict[str, tuple[str, ...]] = {
    "sdf": ("pointcloud", "mesh"),
    "image": ("image",),
    "occupancy": ("mesh",),
}
"""What each task accepts: an SDF samples a mesh into a cloud; occupancy needs a closed mesh."""

TASK_METHODS: dict[str, tuple[str, ...]] = {
    "sdf": ("neural", "kernel"),
    "image": ("neural",),
    "occupancy": ("neural",),
}
"""The methods each task has: the kernel solve fits a surface to oriented points, so only the SDF task has it."""

TASK_OUTPUT_FORMATS: dict[str, tuple[str, ...]] = {
    "sdf": MESH_FORMATS,
    "image": ("png",),
    "occupancy": MESH_FORMATS,
}


def check_method(task: str | None, method: str) -> str:
    """`method` if `task` has it (or no task is known yet), else ValueError naming the choices."""
    if task is not None and method not in TASK_METHODS[task]:
        raise ValueError(f"method {method!r} is not available for task {task!r}; "
                         f"choose one of {', '.join(TASK_METHODS[task])}")
    return method


def task_extensions(task: str) -> tuple[str, ...]:
    """Every file extension `task` accepts, sorted."""
    return tuple(sorted({ext for kind in TASK_INPUT_KINDS[task] for ext in INPUT_EXTENSIONS[kind]}))


def default_task_for(path: str | Path) -> str:
    """The task a file suggests when none is named: images are fitted as images, the rest as SDFs."""
    return "image" if Path(path).suffix.lower() in IMAGE_EXTENSIONS else "sdf"


__all__ = [
    "TaskName", "TASKS", "MethodName", "METHODS", "TASK_METHODS", "PresetName", "PRESETS", "DeviceKind", "DEVICE_KINDS", "MeshFormat", "MESH_FORMATS",
    "InputKind", "INPUT_KINDS", "POINT_CLOUD_EXTENSIONS", "MESH_EXTENSIONS", "IMAGE_EXTENSIONS",
    "INPUT_EXTENSIONS", "TASK_INPUT_KINDS", "TASK_OUTPUT_FORMATS", "task_extensions", "default_task_for", "check_method",
]
