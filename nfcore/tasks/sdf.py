"""SDF from an oriented point cloud: sampling, the SIREN loss, and the whole fit.

Loss (Sitzmann et al. 2020, as used by Ling et al. 2025), every mean over the whole batch of
on- and off-surface points with the other entries counted as zero:
    w_s |f| on surface + w_o exp(-a |f|) off surface + w_n (1 - cos(grad f, n)) on surface
    + w_e eikonal(|grad f| - 1) everywhere (L1 as SIREN, or squared as Ling et al.).
Stochastic preconditioning perturbs every query point (on and off the surface); targets do not move.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nfcore.config import MethodConfig, SDFTaskConfig
from nfcore.precondition import perturb


class SDFTask:
    """Batches of on-surface points with normals plus off-surface points, and the SDF loss.

    Args:
        points: (N, 3) surface points in the training cube [-1, 1].
        normals: (N, 3) unit normals.
        cfg: loss weights and gradient method.
        batch_size: on-surface points per step (as many off-surface points are added).
        boundary: how preconditioning noise is kept in the cube.
        gradient_losses_during_noise: keep normal/eikonal terms while alpha > 0.
    """

    in_dim = 3
    out_dim = 1

    def __init__(
        self,
        points: torch.Tensor,
        normals: torch.Tensor,
        cfg: SDFTaskConfig,
        *,
        batch_size: int,
        boundary: str = "reflect",
        gradient_losses_during_noise: bool = True,
    ):
        if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
            raise ValueError(f"points and normals must both be (N, 3), got {tuple(points.shape)} and {tuple(normals.shape)}")
        self.points = points  # (N, 3) in [-1, 1]
        self.normals = normals  # (N, 3) unit
        self.cfg = cfg
        self.batch_size = batch_size
        self.boundary = boundary
        self.gradient_losses_during_noise = gradient_losses_during_noise

    @property
    def device(self) -> torch.device:
        return self.points.device

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
        if alpha > 0:
            x = perturb(x, alpha, boundary=self.boundary, generator=generator)
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


def sdf_and_gradient_fn(field, *, chunk: int = 65536):
    """A function points (M, 3) array -> (sdf (M,), grad (M, 3)) numpy, evaluated in chunks."""
    device = next(field.parameters()).device

    def fn(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, grads = [], []
        for i in range(0, len(points), chunk):
            x = torch.as_tensor(points[i : i + chunk], dtype=torch.float32, device=device)
            with torch.enable_grad():
                f, g = field.value_and_gradient(x, method="autograd", create_graph=False)
            values.append(f.detach().cpu().numpy())
            grads.append(g.detach().cpu().numpy())
        return np.concatenate(values), np.concatenate(grads)

    return fn


def fit_sdf(
    input_path: str | Path,
    config: MethodConfig,
    out_dir: str | Path,
    *,
    device=None,
    callback=None,
    gt_path: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
):
    """Read a cloud (or mesh), train an SDF, extract and write the mesh in the input's frame."""
    from nfcore.device import resolve_device
    from nfcore.field import NeuralField
    from nfcore.fit import FitResult
    from nfcore.io import read_mesh, read_point_cloud, write_mesh
    from nfcore.mesh import extract_field_mesh
    from nfcore.metrics import fit_residuals, has_inside_test, mesh_metrics
    from nfcore.normalize import fit_similarity
    from nfcore.progress import Reporter
    from nfcore.train import train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device if device is not None else config.device)
    reporter = Reporter(callback, config.train.progress_interval_s)
    reporter.report("load", 0.0, force=True, message=f"reading {Path(input_path).name}")

    icfg = config.input
    cloud = read_point_cloud(
        input_path,
        estimate_normals=icfg.estimate_normals,
        normal_neighbors=icfg.normal_neighbors,
        min_points=icfg.min_points,
        max_points=icfg.max_points,
        mesh_samples=icfg.mesh_samples,
        seed=config.train.seed,
    )
    similarity = fit_similarity(cloud.points, margin=icfg.normalize_margin)
    unit_points = similarity.to_unit(cloud.points).astype(np.float32)  # (N, 3) in [-1, 1]
    points = torch.as_tensor(unit_points, device=device)
    normals = torch.as_tensor(cloud.normals, dtype=torch.float32, device=device)

    init_generator = torch.Generator().manual_seed(config.train.seed)
    field = NeuralField(config.encoding, config.network, 3, 1, sdf=True, device=device, generator=init_generator)
    task = SDFTask(
        points,
        normals,
        config.sdf,
        batch_size=config.train.batch_size,
        boundary=config.precondition.boundary,
        gradient_losses_during_noise=config.precondition.gradient_losses_during_noise,
    )
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    reporter.report("train", 0.05, force=True, step=0, total_steps=config.train.steps, message="training")
    result = train(
        field, task, config, device=device, generator=generator, reporter=reporter,
        checkpoint_path=checkpoint_path, phase_span=(0.05, 0.85),
    )

    reporter.report("extract", 0.85, force=True, message=f"marching cubes at {config.extraction.resolution}^3")
    ecfg = config.extraction

    def sdf(x: torch.Tensor) -> torch.Tensor:
        return field(x).squeeze(-1)

    mesh = extract_field_mesh(
        sdf, ecfg, device=device, similarity=similarity,
        progress=lambda f: reporter.report("extract", 0.85 + 0.1 * f),
    )  # in the input's coordinates

    reporter.report("evaluate", 0.95, force=True, message="fit residuals")
    residuals = fit_residuals(sdf_and_gradient_fn(field), unit_points, cloud.normals)
    residuals["mean_abs_sdf"] = residuals["mean_abs_sdf"] / similarity.scale  # in input units
    if "median_abs_sdf" in residuals:
        residuals["median_abs_sdf"] = residuals["median_abs_sdf"] / similarity.scale
    metrics: dict = {
        "task": "sdf",
        "n_points": int(len(cloud.points)),
        "steps": result.steps,
        "train_seconds": result.seconds,
        "samples_per_second": result.samples_per_second,
        "final_loss": result.final_loss,
        "n_vertices": int(len(mesh.vertices)),
        "n_faces": int(len(mesh.faces)),
        "fit_residuals": residuals,
        "device": str(device),
        "precondition": config.precondition_enabled(),
    }
    if gt_path is not None:
        gt_mesh = read_mesh(gt_path)
        # IoU needs a closed GT (the reconstruction is inside/outside-tested by ray parity either
        # way) and Open3D's ray casting; without them it is reported as None.
        metrics["ground_truth"] = mesh_metrics(
            mesh, gt_mesh, seed=config.train.seed, iou=gt_mesh.is_watertight and has_inside_test()
        )

    reporter.report("write", 0.98, force=True, message="writing artifacts")
    artifacts: dict[str, Path] = {}
    for fmt in ecfg.formats:
        path = out_dir / f"mesh.{fmt}"
        write_mesh(mesh, path)
        artifacts[path.name] = path
    metrics["seconds"] = reporter.elapsed()
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2))
    (out_dir / "normalization.json").write_text(json.dumps(similarity.to_dict(), indent=2))
    for name in ("metrics.json", "config.json", "normalization.json"):
        artifacts[name] = out_dir / name
    reporter.report("write", 1.0, force=True, message="done")
    return FitResult(artifacts=artifacts, metrics=metrics, config=config, seconds=reporter.elapsed(), steps=result.steps, mesh=mesh)
