"""What the 3D tasks (SDF, occupancy) share: the field's zero level set as a mesh in the input's frame."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import torch
import trimesh

from nfcore.config import MethodConfig
from nfcore.io import read_mesh, write_mesh
from nfcore.mesh import extract_field_mesh
from nfcore.metrics import has_inside_test, mesh_metrics
from nfcore.normalize import Similarity
from nfcore.tasks.base import FitTask, PhaseProgress


class SurfaceTask(FitTask):
    """A 3D task whose product is a mesh: marching cubes on `level_set(field)`, mapped back by `similarity`.

    Args:
        points: (N, 3) training points in the cube [-1, 1], on the training device.
        batch_size: points per step.
        boundary: how preconditioning noise is kept in the cube.
        similarity: the input frame -> the cube; None = the input is the cube.
    """

    in_dim = 3
    out_dim = 1

    def __init__(self, points: torch.Tensor, *, batch_size: int, boundary: str, similarity: Similarity | None):
        self.points = points  # (N, 3) in [-1, 1]
        self.batch_size = batch_size
        self.boundary = boundary
        self.similarity = similarity
        self.device = points.device

    @abstractmethod
    def level_set(self, field: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """(M, 3) cube points -> (M,) values: the surface at zero, negative inside."""

    def extract(self, field: torch.nn.Module, config: MethodConfig, progress: PhaseProgress) -> trimesh.Trimesh:
        progress(0.0, f"marching cubes at {config.extraction.resolution}^3")
        if self.step_seconds is None:
            self.step_seconds = {}
        return extract_field_mesh(
            self.level_set(field), config.extraction, device=self.device, similarity=self.similarity, progress=progress,
            timings=self.step_seconds,
        )  # in the input's coordinates

    def write(self, mesh: trimesh.Trimesh, out_dir: Path, config: MethodConfig) -> dict[str, Path]:
        return {f"mesh.{fmt}": write_mesh(mesh, out_dir / f"mesh.{fmt}") for fmt in config.extraction.formats}


def surface_metrics(mesh: trimesh.Trimesh, gt_path: Path | None, *, seed: int) -> dict:
    """Size of the extracted mesh and, given a ground-truth mesh, its `mesh_metrics` under "ground_truth"."""
    metrics: dict = {"n_vertices": int(len(mesh.vertices)), "n_faces": int(len(mesh.faces))}
    if gt_path is not None:
        gt_mesh = read_mesh(gt_path)
        # IoU needs a closed GT (the reconstruction is inside/outside-tested by ray parity either
        # way) and Open3D's ray casting; without them it is reported as None.
        metrics["ground_truth"] = mesh_metrics(
            mesh, gt_mesh, seed=seed, iou=gt_mesh.is_watertight and has_inside_test()
        )
    return metrics
