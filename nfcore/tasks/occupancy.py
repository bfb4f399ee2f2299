"""3D occupancy from a closed mesh: labelled samples, binary cross-entropy, the 0.5 level set.

Points are drawn once before training: a fraction near the surface (surface samples plus
Gaussian jitter, where the labels carry the detail) and the rest uniformly in the cube. Each is
labelled inside/outside by Open3D's ray test (majority of three rays), which is robust to rays
grazing edges and fast on large meshes; trimesh's `contains` without Embree is orders of
magnitude slower and runs out of memory on the shared 100k-face meshes. The field outputs a
logit; the surface is its zero level (probability 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from nfcore.config import MethodConfig
from nfcore.errors import InputError
from nfcore.field import NeuralField
from nfcore.io import read_mesh
from nfcore.metrics import inside_mesh, mesh_metrics
from nfcore.normalize import Similarity, fit_similarity
from nfcore.tasks.base import PhaseProgress
from nfcore.tasks.surface import SurfaceTask, surface_metrics

__all__ = ["OccupancyTask", "label_inside", "sample_occupancy_points", "occupancy_iou"]

_EVAL_CHUNK = 131_072


def label_inside(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each of the (N, 3) points lies inside the closed `mesh` (Open3D ray parity)."""
    return inside_mesh(mesh, points)


def sample_occupancy_points(
    mesh: trimesh.Trimesh,
    count: int,
    *,
    near_surface_fraction: float,
    near_surface_sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(count, 3) float32 points in [-1, 1]: near the surface (jittered samples) and uniform in the cube.

    Args:
        mesh: the surface, already in the training cube.
        near_surface_sigma: standard deviation of the jitter, in cube units.
    """
    n_near = int(round(near_surface_fraction * count))
    uniform = rng.uniform(-1.0, 1.0, size=(count - n_near, 3))
    parts = [uniform]
    if n_near:
        surface, _ = trimesh.sample.sample_surface(mesh, n_near, seed=int(rng.integers(2**31)))
        parts.append(np.clip(surface + rng.normal(0.0, near_surface_sigma, size=surface.shape), -1.0, 1.0))
    return np.concatenate(parts).astype(np.float32)


class OccupancyTask(SurfaceTask):
    """Batches of labelled points and the binary cross-entropy on the field's logit.

    Args:
        points: (N, 3) points in the training cube.
        inside: (N,) 1 inside, 0 outside.
        batch_size: points per step.
        boundary: how preconditioning noise is kept in the cube.
        mesh: the closed input mesh, in its own frame: what `evaluate` compares with.
        similarity: the mesh's frame -> the training cube; None = the mesh is in the cube.
    """

    name = "occupancy"

    def __init__(
        self,
        points: torch.Tensor,
        inside: torch.Tensor,
        *,
        batch_size: int,
        boundary: str = "reflect",
        mesh: trimesh.Trimesh | None = None,
        similarity: Similarity | None = None,
    ):
        if points.ndim != 2 or points.shape[1] != 3 or inside.shape != points.shape[:1]:
            raise InputError(f"points must be (N, 3) and labels (N,), got {tuple(points.shape)} and {tuple(inside.shape)}")
        super().__init__(points, batch_size=batch_size, boundary=boundary, similarity=similarity)
        self.inside = inside.to(points.dtype)  # (N,) in {0, 1}
        self.mesh = mesh

    @classmethod
    def load(cls, input_path: Path, config: MethodConfig, device: torch.device, progress: PhaseProgress) -> OccupancyTask:
        """Read a closed mesh, map it into the cube, and draw and label the training points once."""
        mesh = read_mesh(input_path)
        if not mesh.is_watertight:
            raise InputError(
                f"the occupancy task needs a closed (watertight) mesh; {input_path.name} has open boundaries "
                "or non-manifold edges, so inside and outside are undefined"
            )
        similarity = fit_similarity(np.asarray(mesh.vertices), margin=config.input.normalize_margin)
        unit_mesh = similarity.apply_to_mesh(mesh, inverse=False)
        ocfg = config.occupancy
        progress(0.2, f"labelling {ocfg.n_samples} points")
        points = sample_occupancy_points(
            unit_mesh,
            ocfg.n_samples,
            near_surface_fraction=ocfg.near_surface_fraction,
            near_surface_sigma=ocfg.near_surface_sigma,
            rng=np.random.default_rng(config.train.seed),
        )
        return cls(
            torch.as_tensor(points, device=device),
            torch.as_tensor(label_inside(unit_mesh, points), device=device),
            batch_size=config.train.batch_size,
            boundary=config.precondition.boundary,
            mesh=mesh,
            similarity=similarity,
        )

    def build_field(self, config: MethodConfig, device: torch.device, generator: torch.Generator) -> NeuralField:
        return NeuralField(config.encoding, config.network, 3, 1, device=device, generator=generator)

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.points.shape[0], (self.batch_size,), device=self.device, generator=generator)
        return {"points": self.points[idx], "inside": self.inside[idx]}

    def loss(self, field, batch, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.perturbed(batch["points"], alpha, generator)  # (B, 3)
        logits = field(x)[:, 0]  # (B,)
        bce = F.binary_cross_entropy_with_logits(logits, batch["inside"])
        return bce, {"bce": float(bce.detach())}

    def level_set(self, field: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        # Negated so that, like an SDF, values grow outwards and face normals point out.
        return lambda x: -field(x)[:, 0]

    def evaluate(self, field, recon: trimesh.Trimesh, config: MethodConfig, gt_path: Path | None) -> dict:
        """IoU on held-out points, and `mesh_metrics` of the reconstruction against the input mesh.

        `iou` is volumetric (uniform points in the cube), `iou_near_surface` on points near the
        surface; both sets are drawn here, never trained on.
        """
        ocfg = config.occupancy
        unit_mesh = self.mesh if self.similarity is None else self.similarity.apply_to_mesh(self.mesh, inverse=False)
        rng = np.random.default_rng([config.train.seed, 1])  # a stream of its own, apart from the training points'
        n_eval = min(100_000, ocfg.n_samples)
        uniform = rng.uniform(-1.0, 1.0, size=(n_eval, 3)).astype(np.float32)
        near = sample_occupancy_points(
            unit_mesh, n_eval, near_surface_fraction=1.0, near_surface_sigma=ocfg.near_surface_sigma, rng=rng
        )
        return {
            "iou": occupancy_iou(_logits(field, uniform, self.device) > 0, label_inside(unit_mesh, uniform)),
            "iou_near_surface": occupancy_iou(_logits(field, near, self.device) > 0, label_inside(unit_mesh, near)),
            "iou_points": int(n_eval),
            "inside_fraction": float(self.inside.mean()),
            "n_samples": int(self.points.shape[0]),
            "mesh": mesh_metrics(recon, self.mesh, seed=config.train.seed),
            **surface_metrics(recon, gt_path, seed=config.train.seed),
        }


@torch.no_grad()
def _logits(field, points: np.ndarray, device: torch.device) -> np.ndarray:
    out = []
    for i in range(0, len(points), _EVAL_CHUNK):
        x = torch.as_tensor(points[i : i + _EVAL_CHUNK], dtype=torch.float32, device=device)
        out.append(field(x)[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def occupancy_iou(predicted: np.ndarray, inside: np.ndarray) -> float:
    """|pred and gt| / |pred or gt| of two boolean arrays (1.0 when both are empty)."""
    union = np.logical_or(predicted, inside).sum()
    return float(np.logical_and(predicted, inside).sum() / union) if union else 1.0
