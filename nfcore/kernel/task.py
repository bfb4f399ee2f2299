"""The sdf task solved by the kernel method: what `nfcore.fit.fit` drives when `config.method == "kernel"`.

Same input handling, metrics and artifacts as the neural SDF task (it is one); instead of a field to
train it has `solve()`, and it extracts on the sparse grid instead of a dense one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import trimesh

from nfcore.analysis import CloudAnalysis, analyze_cloud
from nfcore.config import MethodConfig
from nfcore.kernel.extract import extract_sparse, trim
from nfcore.kernel.field import KernelField
from nfcore.kernel.reconstruct import KernelSolution, solve_kernel_field
from nfcore.mesh import field_normals
from nfcore.normalize import fit_similarity
from nfcore.tasks.base import PhaseProgress
from nfcore.tasks.sdf import SDFTask, read_input_scans


@contextmanager
def cpu_threads(device: torch.device, n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` on a CPU device for the block, restored after (see KernelConfig.cpu_threads)."""
    if device.type != "cpu" or n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class KernelSDFTask(SDFTask):
    """An oriented cloud reconstructed by the kernel solve; `analysis` is measured in cube units."""

    analysis: CloudAnalysis
    solution: KernelSolution | None = None

    @classmethod
    def load(cls, input_path: Path | list[Path], config: MethodConfig, device: torch.device,
             progress: PhaseProgress) -> KernelSDFTask:
        """Read the cloud (or merge several scans), reject degenerate ones (before any solve), map it into the
        cube, measure it there."""
        icfg = config.input
        cloud, scans = read_input_scans(input_path, config)
        # Degeneracy needs only the count and principal extents: k=0 skips the neighbourhoods (and the
        # k-d tree over all points, 10 s at 10M). InputError naming the problem.
        analyze_cloud(cloud.points, cloud.normals, k=0).require_surface()
        similarity = fit_similarity(cloud.points, margin=icfg.normalize_margin)
        unit_points = similarity.to_unit(cloud.points).astype(np.float32)  # (N, 3) in [-1, 1]
        task = cls(
            torch.as_tensor(unit_points, device=device),
            torch.as_tensor(cloud.normals, dtype=torch.float32, device=device),
            config.sdf,
            batch_size=config.train.batch_size,
            similarity=similarity,
        )
        task.analysis = analyze_cloud(unit_points, rng=np.random.default_rng(config.train.seed))
        if scans is not None:  # what merging did goes in the metrics and the notes (SDFTask.evaluate)
            task.scans_report = scans
            task.input_report = {"notes": list(cloud.notes), "outliers_removed": cloud.outliers_removed,
                                 "normals_repaired": bool(cloud.normal_check and cloud.normal_check["repaired"])}
        return task

    def solve(self, config: MethodConfig, progress: PhaseProgress) -> KernelField:
        """The kernel field fitted to the points (progress and cancellation through `progress`)."""
        with cpu_threads(self.device, config.kernel.cpu_threads):
            self.solution = solve_kernel_field(self.points, self.normals, config.kernel, self.analysis, progress=progress)
        return self.solution.field

    def extract(self, field: KernelField, config: MethodConfig, progress: PhaseProgress) -> trimesh.Trimesh:
        """Marching cubes over the grid's voxels, trimmed where no point is near, in the input's frame."""
        kcfg = config.kernel
        progress(0.0, f"marching cubes over {field.grid.n_voxels} voxels at depth {field.grid.depth}")
        with cpu_threads(self.device, kcfg.cpu_threads):
            mesh = extract_sparse(field.sdf, field.grid, block=kcfg.block, upsample=kcfg.upsample,
                                  chunk_size=config.extraction.chunk_size, progress=lambda f: progress(0.9 * f))
            if kcfg.trim_distance is not None:
                mesh = trim(mesh, self.points.cpu().numpy(), kcfg.trim_distance * self.analysis.spacing + 2 * self.analysis.noise)
            if len(mesh.faces) == 0:
                raise ValueError("no surface left after trimming: every face was far from the points")
            if config.extraction.field_normals:
                mesh.vertex_normals = field_normals(lambda x: field.value_and_gradient(x)[1], np.asarray(mesh.vertices),
                                                    chunk_size=config.extraction.chunk_size, device=self.device)
        progress(1.0)
        return self.similarity.apply_to_mesh(mesh, inverse=True) if self.similarity is not None else mesh

    def evaluate(self, field: KernelField, mesh: trimesh.Trimesh, config: MethodConfig, gt_path: Path | None) -> dict:
        metrics = super().evaluate(field, mesh, config, gt_path)
        if self.solution is not None:
            metrics["kernel"] = self.solution.stats()
        return metrics


__all__ = ["KernelSDFTask", "cpu_threads"]
