"""MetaTrainConfig: how a prior is meta-learned (algorithm, field, inner and outer loops).

Defaults are sized for 2 CPU cores: a 3x128 softplus MLP on raw coordinates, first-order MAML with
5 inner steps on 1024 + 1024 points, meta-batches of 4 shapes, 1500 outer steps with a cosine decay
(8-9 minutes per family on 2 cores; bench/results/meta.md has the measured figures).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nfcore.config import (
    EncodingConfig,
    IdentityEncodingConfig,
    MLPNetworkConfig,
    NetworkConfig,
    PreconditionConfig,
    SDFTaskConfig,
    _Model,
)


def _default_network() -> MLPNetworkConfig:
    return MLPNetworkConfig(hidden_features=128, hidden_layers=3)


class MetaTrainConfig(_Model):
    """Meta-training settings; the resulting prior records the field and inner-loop parts."""

    algorithm: Literal["maml", "reptile"] = "maml"
    """maml: MetaSDF (MAML with learned per-parameter inner learning rates, Meta-SGD style);
    reptile: first-order, no second derivatives, inner learning rates stay at `inner_lr`."""
    first_order: bool = True
    """maml only: drop the second-order terms (gradients of the inner gradients); the learning rates are still
    learned. The default: on the test spheres it reached the second-order post-adaptation loss (0.0065 vs
    0.0073) at a third of the cost per outer step, which buys 3x the outer steps in the same time."""
    encoding: EncodingConfig = Field(default_factory=IdentityEncodingConfig)
    network: NetworkConfig = Field(default_factory=_default_network)
    steps: int = Field(1500, ge=1, le=1_000_000)
    """Outer (meta) steps."""
    meta_batch_size: int = Field(4, ge=1, le=1024)
    """Shapes per outer step."""
    inner_steps: int = Field(5, ge=1, le=100)
    inner_lr: float = Field(3e-4, gt=0, le=10)
    """Initial value of every per-parameter inner learning rate (fixed for reptile). The rates are learned
    as they are, sign included (Meta-SGD): a negative rate moves a weight against its gradient, and on the
    test spheres such rates (16-56% of them per layer) halved the post-adaptation loss that rates kept
    positive (learned as logarithms) reached."""
    outer_lr: float = Field(1e-4, gt=0, le=1)
    """Adam learning rate of the initial weights."""
    outer_schedule: Literal["constant", "cosine"] = "cosine"
    """Outer learning rates over the run: constant, or cosine decay to a tenth (quiets the noisy meta-gradient
    late). bench.meta: 1500 cosine steps against 600 constant ones lowered the held-out Chamfer-L1 after 5
    steps from 0.0207 to 0.0144 (revolution) and from 0.0125 to 0.0120 (superquadrics)."""
    lr_lr: float | None = Field(None, gt=0, le=1)
    """Adam learning rate of the inner learning rates; None = `outer_lr` (MetaSDF uses one optimizer for both)."""
    batch_size: int = Field(1024, ge=16, le=1_000_000)
    """On-surface points per inner step (as many off-surface points are added, as in SDFTask)."""
    outer_batch_size: int = Field(4096, ge=16, le=1_000_000)
    """Ground-truth SDF samples per shape in the outer loss."""
    sdf_clamp: float = Field(0.1, gt=0, le=2)
    """The outer loss is L1 between SDF values clamped to [-clamp, clamp] (DeepSDF, MetaSDF), in cube units."""
    sdf: SDFTaskConfig = Field(default_factory=lambda: SDFTaskConfig(surface_weight=300.0))
    """Inner loss weights (SDFTask's loss; 300 on the surface as the presets use for noisy scans)."""
    precondition: PreconditionConfig = Field(default_factory=lambda: PreconditionConfig(enabled=False))
    """Stochastic preconditioning in the inner loop (fractions of the inner steps); off by default."""
    clip_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the meta-gradient (weights and learning rates together)."""
    seed: int = 0
    checkpoint_every: int = Field(25, ge=1)
    progress_interval_s: float = Field(1.0, ge=0)
