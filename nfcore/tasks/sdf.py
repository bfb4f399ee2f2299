"""SDF from an oriented point cloud: reading and normalising it, sampling, the SIREN loss, residuals.

Loss (Sitzmann et al. 2020, as used by Ling et al. 2025), every mean over the whole batch of
on- and off-surface points with the other entries counted as zero:
    w_s |f| on surface + w_o exp(-a |f|) off surface + w_n (1 - cos(grad f, n)) on surface
    + w_e eikonal(|grad f| - 1) everywhere (L1 as SIREN, or squared as Ling et al.).
Stochastic preconditioning perturbs every query point (on and off the surface); targets do not move.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from nfcore.adaptive import adapt_config
from nfcore.analysis import CloudAnalysis, NormalCheck, analyze_cloud
from nfcore.config import MethodConfig, SDFTaskConfig
from nfcore.field import NeuralField
from nfcore.io import read_point_cloud
from nfcore.mesh import trim_unsupported
from nfcore.metrics import fit_residuals
from nfcore.normalize import Similarity, fit_similarity
from nfcore.tasks.base import PhaseProgress
from nfcore.tasks.surface import SurfaceTask, surface_metrics


def read_input_cloud(input_path: Path | list[Path], config: MethodConfig):
    """The oriented cloud an SDF method fits, read as `config.input` says (normals estimated where missing).

    A list of paths is several scans (views) of one object: registered as `input.registration` says and
    merged (nfcore.scans); `read_input_scans` also returns what merging did.
    """
    return read_input_scans(input_path, config)[0]


def read_input_scans(input_path: Path | list[Path], config: MethodConfig):
    """(the cloud `read_input_cloud` reads, the scans report of nfcore.scans or None for one file)."""
    icfg = config.input
    if isinstance(input_path, (list, tuple)):
        from nfcore.scans import read_merged_cloud

        return read_merged_cloud([Path(p) for p in input_path], icfg, seed=config.train.seed)
    return read_point_cloud(
        input_path,
        estimate_normals=icfg.estimate_normals,
        normal_neighbors=icfg.normal_neighbors,
        min_points=icfg.min_points,
        max_points=icfg.max_points,
        mesh_samples=icfg.mesh_samples,
        seed=config.train.seed,
        outliers=icfg.outliers,
        outlier_min_fraction=icfg.outlier_min_fraction,
        verify_normals=icfg.check_normals,
    ), None


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
    analysis: CloudAnalysis | None = None
    """The cloud's figures in cube units (nfcore.analysis), measured by `load`."""
    input_report: dict | None = None
    """What reading did to the input: the reader's notes, outliers removed, normals repaired."""
    trim_report: dict | None = None
    """What `extract` trimmed (or why not), when `extraction.trim` is not "off"."""
    scans_report: dict | None = None
    """Several input scans: how they were registered and merged (nfcore.scans); None for one file."""

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
    def load(cls, input_path: Path | list[Path], config: MethodConfig, device: torch.device,
             progress: PhaseProgress) -> SDFTask:
        """Read a cloud (or sample a mesh; or merge several scans), estimating normals where missing, map it into
        the cube, measure it."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cloud, scans = read_input_scans(input_path, config)
        # With normal estimation where the file has none (and the registration of several scans).
        timings["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        similarity = fit_similarity(cloud.points, margin=config.input.normalize_margin)
        unit_points = similarity.to_unit(cloud.points).astype(np.float32)  # (N, 3) in [-1, 1]
        timings["normalize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        analysis = analyze_cloud(unit_points, rng=np.random.default_rng(config.train.seed))
        analysis.require_surface()  # InputError naming a degenerate cloud, before any training
        check = cloud.normal_check
        analysis = analysis.model_copy(update={
            "has_normals": not cloud.normals_estimated,
            "outlier_fraction": cloud.outlier_fraction,
            "normals": None if check is None else NormalCheck(
                agreement=check["agreement"], flipped_fraction=check["flipped_fraction"], reliable=check["reliable"]),
        })
        timings["analysis"] = time.perf_counter() - t0
        task = cls(
            torch.as_tensor(unit_points, device=device),
            torch.as_tensor(cloud.normals, dtype=torch.float32, device=device),
            config.sdf,
            batch_size=config.train.batch_size,
            boundary=config.precondition.boundary,
            gradient_losses_during_noise=config.precondition.gradient_losses_during_noise,
            similarity=similarity,
        )
        task.analysis = analysis
        task.step_seconds = timings
        task.input_report = {"notes": list(cloud.notes), "outliers_removed": cloud.outliers_removed,
                             "normals_repaired": bool(check and check["repaired"])}
        task.scans_report = scans
        return task

    def adapt(self, config: MethodConfig) -> tuple[MethodConfig, dict | None]:
        """The settings `config.adapt` leaves to the data, chosen from the cloud's analysis (nfcore.adaptive)."""
        if self.analysis is None or not config.adapt:
            return config, None
        adapted, record = adapt_config(config, self.analysis, scale=1.0)  # the analysis is in cube units
        self.cfg = adapted.sdf  # the loss weights the data chose (this task was built with the preset's)
        return adapted, record

    def extract(self, field: torch.nn.Module, config: MethodConfig, progress: PhaseProgress) -> trimesh.Trimesh:
        """The zero level set, trimmed where no point supports it when `extraction.trim` asks (open scans)."""
        mesh = super().extract(field, config, progress)
        with self.timed("trim"):
            return self._trim(mesh, config)

    def _trim(self, mesh: trimesh.Trimesh, config: MethodConfig) -> trimesh.Trimesh:
        """`mesh` (input frame) without the regions no point supports, as `config.extraction.trim` asks."""
        trim = config.extraction.trim
        if trim == "off" or self.analysis is None:
            return mesh
        if trim == "auto" and self.analysis.closed:
            self.trim_report = {"applied": False, "reason": "the cloud looks closed (nfcore.analysis)"}
            return mesh
        # Trimmed in the input frame (the mesh's): the points and the radius are mapped there instead.
        scale = self.similarity.scale if self.similarity is not None else 1.0  # cube units per input unit
        points = self.points.cpu().numpy()
        points = self.similarity.from_unit(points) if self.similarity is not None else points
        radius = (config.extraction.trim_radius * self.analysis.spacing + 2 * self.analysis.noise) / scale
        trimmed, report = trim_unsupported(mesh, points, radius, min_region_area=math.pi * (2 * radius) ** 2)
        if len(trimmed.faces) == 0:
            raise ValueError("no surface left after trimming: every face was far from the points")
        self.trim_report = {"applied": True, "reason": "asked for" if trim == "on" else "the cloud looks open (nfcore.analysis)",
                            **report}
        return trimmed

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
            **({"analysis": {"frame": "cube", **self.analysis.model_dump()}} if self.analysis is not None else {}),
            **({"trim": self.trim_report} if self.trim_report is not None else {}),
            **({"input": self.input_report} if self.input_report is not None else {}),
            **({"scans": self.scans_report} if self.scans_report is not None else {}),
            **surface_metrics(mesh, gt_path, seed=config.train.seed),
        }
