"""SDF from an oriented point cloud: reading and normalising it, sampling, the SIREN loss, residuals.

Loss (Sitzmann et al. 2020, as used by Ling et al. 2025), every mean over the whole batch of
on- and off-surface points with the other entries counted as zero:
    w_s |f| on surface + w_o exp(-a |f|) off surface + w_n (1 - cos(grad f, n)) on surface
    + w_e eikonal(|grad f| - 1) everywhere (L1 as SIREN, or squared as Ling et al.).
Stochastic preconditioning perturbs every query point (on and off the surface); targets do not move.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from nfcore.config import MethodConfig, SDFTaskConfig
from nfcore.field import NeuralField
from nfcore.io import read_point_cloud
from nfcore.metrics import fit_residuals
from nfcore.normalize import Similarity, fit_similarity
from nfcore.tasks.base import PhaseProgress
from nfcore.tasks.surface import SurfaceTask, surface_metrics


def read_input_cloud(input_path: Path, config: MethodConfig):
    """The oriented cloud an SDF method fits, read as `config.input` says (normals estimated where missing)."""
    icfg = config.input
    return read_point_cloud(
        input_path,
        estimate_normals=icfg.estimate_normals,
        normal_neighbors=icfg.normal_neighbors,
        min_points=icfg.min_points,
        max_points=icfg.max_points,
        mesh_samples=icfg.mesh_samples,
        seed=config.train.seed,
    )


class SDFTask(SurfaceTask):
    """Batches of on-surface points with normals plus off-surface points, and the SDF loss.

    Args:
        points: (N, 3) surface points in the training cube [-1, 1].
        normals: (N, 3) unit normals.
        cfg: loss weights and gradient method.
        batch_size: on-surface points per step (as many off-surface points are added).
        boundary: how preconditioning noise is kept in the cube.
        gradient_losses_during_noise: keep normal/eikonal terms while alpha > 0.
        similarity: the input frame of `points`; None = they are the input (no mapping back).
    """

    name = "sdf"

    def __init__(
        self,
        points: torch.Tensor,
        normals: torch.Tensor,
        cfg: SDFTaskConfig,
        *,
        batch_size: int,
        boundary: str = "reflect",
        gradient_losses_during_noise: bool = True,
        similarity: Similarity | None = None,
    ):
        if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
            raise ValueError(f"points and normals must both be (N, 3), got {tuple(points.shape)} and {tuple(normals.shape)}")
        super().__init__(points, batch_size=batch_size, boundary=boundary, similarity=similarity)
        self.normals = normals  # (N, 3) unit
        self.cfg = cfg
        self.gradient_losses_during_noise = gradient_losses_during_noise

    @classmethod
    def load(cls, input_path: Path, config: MethodConfig, device: torch.device, progress: PhaseProgress) -> SDFTask:
        """Read a cloud (or sample a mesh), estimating normals where missing, and map it into the cube."""
        cloud = read_input_cloud(input_path, config)
        similarity = fit_similarity(cloud.points, margin=config.input.normalize_margin)
        unit_points = similarity.to_unit(cloud.points).astype(np.float32)  # (N, 3) in [-1, 1]
        return cls(
            torch.as_tensor(unit_points, device=device),
            torch.as_tensor(cloud.normals, dtype=torch.float32, device=device),
            config.sdf,
            batch_size=config.train.batch_size,
            boundary=config.precondition.boundary,
            gradient_losses_during_noise=config.precondition.gradient_losses_during_noise,
            similarity=similarity,
        )

    def build_field(self, config: MethodConfig, device: torch.device, generator: torch.Generator) -> NeuralField:
        return NeuralField(config.encoding, config.network, 3, 1, sdf=True, device=device, generator=generator)

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = self.batch_size
        idx = torch.randint(0, self.points.shape[0], (n,), device=self.device, generator=generator)
        surface = self.points[idx]
        n_near = int(round(self.cfg.near_surface_fraction * n))
        uniform = torch.rand((n - n_near, 3), device=self.device, generator=generator) * 2 - 1
        off = [uniform]
        if n_near:
            j = torch.randint(0, self.points.shape[0], (n_near,), device=self.device, generator=generator)
            jitter = torch.randn((n_near, 3), device=self.device, generator=generator) * self.cfg.near_surface_sigma
            off.append((self.points[j] + jitter).clamp(-1, 1))
        # "points" first: the training loop counts samples from the first tensor.
        return {"points": torch.cat([surface, *off]), "normals": self.normals[idx]}

    def loss(self, field, batch, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        x = batch["points"]  # (2N, 3): N on-surface then N off-surface
        n_on = batch["normals"].shape[0]
        total = x.shape[0]
        x = self.perturbed(x, alpha, generator)
        use_grad = alpha <= 0 or self.gradient_losses_during_noise
        if use_grad and (cfg.normal_weight > 0 or cfg.eikonal_weight > 0):
            f, grad = field.value_and_gradient(
                x, method=cfg.gradient, eps=cfg.finite_difference_eps, create_graph=True
            )
        else:
            f, grad = field(x).squeeze(-1), None
        f_on, f_off = f[:n_on], f[n_on:]
        terms = {
            "surface": cfg.surface_weight * f_on.abs().sum() / total,
            "offsurface": cfg.offsurface_weight * torch.exp(-cfg.offsurface_alpha * f_off.abs()).sum() / total,
        }
        if grad is not None:
            if cfg.normal_weight > 0:
                cos = F.cosine_similarity(grad[:n_on], batch["normals"], dim=-1)
                terms["normal"] = cfg.normal_weight * (1 - cos).sum() / total
            if cfg.eikonal_weight > 0:
                dev = grad.norm(dim=-1) - 1
                eik = dev.abs() if cfg.eikonal_norm == "l1" else dev.square()
                terms["eikonal"] = cfg.eikonal_weight * eik.mean()
        loss = sum(terms.values())
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def level_set(self, field: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: field(x).squeeze(-1)

    def evaluate(self, field, mesh: trimesh.Trimesh, config: MethodConfig, gt_path: Path | None) -> dict:
        """`fit_residuals` on the input cloud (distances in input units) and the mesh's size and GT scores."""
        residuals = fit_residuals(field, self.points, self.normals)
        scale = self.similarity.scale if self.similarity is not None else 1.0  # cube units per input unit
        for key in ("mean_abs_sdf", "median_abs_sdf"):
            if key in residuals:
                residuals[key] /= scale
        return {
            "n_points": int(self.points.shape[0]),
            "fit_residuals": residuals,
            **surface_metrics(mesh, gt_path, seed=config.train.seed),
        }
