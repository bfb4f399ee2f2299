"""What a task is: the protocol the training loop needs, and the stages the fit pipeline drives."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from nfcore.config import MethodConfig
from nfcore.normalize import Similarity
from nfcore.precondition import perturb

PhaseProgress = Callable[..., None]
"""`progress(fraction, message=None)`: how far (0..1) the current stage is; a message always reports."""


class Task(Protocol):
    """A fitting problem as the training loop sees it: how to draw a batch and score a field on it."""

    in_dim: int
    out_dim: int

    def sample(self, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One training batch on the task's device."""
        ...

    def loss(
        self, field: torch.nn.Module, batch: dict[str, torch.Tensor], alpha: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its named terms; `alpha` is the stochastic-preconditioning scale (0 = off)."""
        ...


class FitTask(Task):
    """A Task that `nfcore.fit.fit` can drive from an input file to written outputs.

    The pipeline calls, in order: `load` (a classmethod: read the input and return the task),
    `build_field`, the training loop (`sample`, `loss`, `on_step` after each step), `extract`,
    `evaluate`, `write`. Tasks return plain data; the pipeline adds the common metrics and files.
    """

    name: ClassVar[str]
    """The registry name, as in `config.task`."""
    device: torch.device
    """Where the task's samples live."""
    boundary: str
    """How preconditioning noise is kept in the domain (see nfcore.precondition.perturb)."""
    similarity: Similarity | None = None
    """Input frame <-> training cube, where the task normalises its input (written as normalization.json)."""
    step_seconds: dict[str, float] | None = None
    """Seconds of the steps inside the pipeline's phases (read, analysis, marching cubes, ...), as the
    task measured them with `timed`; the fit reports them as `timings_detail`."""

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the block's wall-clock seconds to `step_seconds[name]` (after a CUDA sync on a GPU task)."""
        if self.step_seconds is None:
            self.step_seconds = {}
        t0 = time.perf_counter()
        yield
        if getattr(self, "device", None) is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.step_seconds[name] = self.step_seconds.get(name, 0.0) + time.perf_counter() - t0

    @classmethod
    @abstractmethod
    def load(cls, input_path: Path, config: MethodConfig, device: torch.device, progress: PhaseProgress) -> FitTask:
        """Read and normalise the input; the returned task is ready to sample on `device`.

        Raises:
            InputError: the input cannot be used for this task (the message says why).
        """

    def adapt(self, config: MethodConfig) -> tuple[MethodConfig, dict | None]:
        """The config with the settings its `adapt` list leaves to the data filled in, and a record of
        the choices (None: nothing chosen). Called once after `load`; the default keeps `config`."""
        return config, None

    @abstractmethod
    def build_field(self, config: MethodConfig, device: torch.device, generator: torch.Generator) -> torch.nn.Module:
        """The untrained field; `generator` (CPU) seeds its initialisation."""

    def perturbed(self, x: torch.Tensor, alpha: float, generator: torch.Generator) -> torch.Tensor:
        """Query points `x` moved by stochastic-preconditioning noise of scale `alpha` (unmoved when 0)."""
        return perturb(x, alpha, boundary=self.boundary, generator=generator) if alpha > 0 else x

    def on_step(self, step: int, field: torch.nn.Module) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Called after training step `step` (from 0); bookkeeping such as the image PSNR curve."""

    @abstractmethod
    def extract(self, field: torch.nn.Module, config: MethodConfig, progress: PhaseProgress) -> Any:
        """The task's products from the trained field: a mesh, rendered images."""

    @abstractmethod
    def evaluate(self, field: torch.nn.Module, products: Any, config: MethodConfig, gt_path: Path | None) -> dict:
        """Task-specific metrics (JSON-ready); `gt_path` is an optional ground truth to compare with."""

    @abstractmethod
    def write(self, products: Any, out_dir: Path, config: MethodConfig) -> dict[str, Path]:
        """Write the products into `out_dir`; returns {artifact name: path}."""
