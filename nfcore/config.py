"""Typed configuration: one `MethodConfig` describes a whole method.

A method is data: encoding + network + preconditioning + optimizer + schedule + training +
extraction, each a small pydantic model with a `type` tag where there are alternatives (as
tiny-cuda-nn describes an encoding by a dict). The API publishes `MethodConfig.model_json_schema()`,
the worker stores the resolved JSON beside the results, and the CLI reads the same JSON with
`--config`. Builders (`nfcore.encodings.build_encoding`, `nfcore.networks.build_network`, ...)
map a config to a module; nothing else inspects strings.

Coordinates: every field is queried in the training cube [-1, 1]^d. Stochastic preconditioning
scales are stated in the unit cube [0, 1]^d, as in the release code of Ling et al. 2025
(so sigma = 0.02 there is 0.04 in [-1, 1]).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from nfcore.vocab import MeshFormat, MethodName, TaskName, check_method


class _Model(BaseModel):
    """Base: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


# --------------------------------------------------------------------------------------------
# Encodings


class IdentityEncodingConfig(_Model):
    """Raw coordinates, no encoding."""

    type: Literal["identity"] = "identity"


class FourierEncodingConfig(_Model):
    """NeRF-style positional encoding: sin(f x), sin(f x + pi/2) for f = 2^0 .. 2^(L-1)."""

    type: Literal["fourier"] = "fourier"
    n_frequencies: int = Field(12, ge=1, le=24)
    """Number of octaves L (release code of Ling et al.: 12)."""
    include_pi: bool = False
    """Multiply frequencies by pi (the ReLU+PE of Chng et al. does; Ling et al. do not)."""
    include_input: bool = False
    """Concatenate the raw coordinates to the features."""


class HashGridEncodingConfig(_Model):
    """Multiresolution hash grid (Instant-NGP), same layout as tiny-cuda-nn's HashGrid."""

    type: Literal["hashgrid"] = "hashgrid"
    n_levels: int = Field(16, ge=1, le=32)
    n_features_per_level: Literal[1, 2, 4, 8] = 2
    log2_hashmap_size: int = Field(19, ge=8, le=24)
    base_resolution: int = Field(16, ge=2, le=1024)
    per_level_scale: float | None = Field(None, gt=1.0, le=4.0)
    """Growth factor between levels; None derives it from `finest_resolution`."""
    finest_resolution: int = Field(2048, ge=4)
    """Resolution of the finest level, used when `per_level_scale` is None."""
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    """`auto` uses tinycudann on CUDA when importable and `implementation` is "function", else the
    pure PyTorch grid."""
    init_scale: float = Field(1e-4, gt=0)
    """Table entries start as U(-init_scale, init_scale), as tiny-cuda-nn does."""
    implementation: Literal["function", "autograd"] = "function"
    """Pure PyTorch backend: "function" = custom autograd with analytic (double) backward (fast);
    "autograd" = explicit differentiable ops (reference, any derivative order, e.g. ESGD with eikonal).
    tinycudann has its own fused kernels, so "autograd" always means the PyTorch grid."""

    @model_validator(mode="after")
    def _finest_not_below_base(self) -> HashGridEncodingConfig:
        # Otherwise the derived growth factor is below 1 and the "finest" level is the coarsest.
        if self.per_level_scale is None and self.n_levels > 1 and self.finest_resolution <= self.base_resolution:
            raise ValueError(f"encoding.finest_resolution ({self.finest_resolution}) must exceed "
                             f"encoding.base_resolution ({self.base_resolution})")
        return self

    @model_validator(mode="after")
    def _tcnn_is_not_autograd(self) -> HashGridEncodingConfig:
        # tcnn's fused kernels are not the plain differentiable torch ops "autograd" promises; running
        # them anyway would silently drop the requested implementation.
        if self.backend == "tcnn" and self.implementation == "autograd":
            raise ValueError(
                "encoding.backend 'tcnn' cannot run encoding.implementation 'autograd' (explicit "
                "differentiable torch ops): use backend 'torch' or 'auto', or implementation 'function'"
            )
        return self

    def resolved_per_level_scale(self) -> float:
        """Per-level growth factor b with base * b^(L-1) = finest."""
        if self.per_level_scale is not None:
            return self.per_level_scale
        if self.n_levels == 1:
            return 1.0 + 1e-6
        return math.exp(math.log(self.finest_resolution / self.base_resolution) / (self.n_levels - 1))


class TriplaneEncodingConfig(_Model):
    """Three axis-aligned feature planes, bilinearly sampled and summed or concatenated."""

    type: Literal["triplane"] = "triplane"
    resolution: int = Field(128, ge=4, le=2048)
    n_features: int = Field(16, ge=1, le=128)
    reduce: Literal["concat", "sum", "product"] = "concat"
    init_scale: float = Field(0.1, gt=0)
    """Planes start as N(0, init_scale^2)."""


EncodingConfig = Annotated[
    Union[IdentityEncodingConfig, FourierEncodingConfig, HashGridEncodingConfig, TriplaneEncodingConfig],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------------------
# Networks


class MLPNetworkConfig(_Model):
    """Fully connected network with ReLU or softplus; geometric init for SDFs (SAL/IGR)."""

    type: Literal["mlp"] = "mlp"
    hidden_features: int = Field(64, ge=1, le=4096)
    hidden_layers: int = Field(2, ge=1, le=16)
    activation: Literal["relu", "softplus"] = "softplus"
    softplus_beta: float = Field(100.0, gt=0)
    geometric_init: bool = True
    """Initialise the output as the SDF of a sphere (only meaningful for SDF tasks)."""
    geometric_init_radius: float = Field(0.5, gt=0)
    skip_layers: list[int] = Field(default_factory=list)
    """Hidden layer indices that get the input concatenated again (divided by sqrt 2)."""
    weight_norm: bool = False


class SirenNetworkConfig(_Model):
    """SIREN: sin(omega_0 (W x + b)) with Sitzmann et al.'s initialisation."""

    type: Literal["siren"] = "siren"
    hidden_features: int = Field(256, ge=1, le=4096)
    hidden_layers: int = Field(3, ge=1, le=16)
    omega_0: float = Field(30.0, gt=0)
    first_omega_0: float = Field(30.0, gt=0)


class FinerNetworkConfig(_Model):
    """FINER: sin(omega_0 (|z| + 1) z), z = W x + b; scale detached as in the release code."""

    type: Literal["finer"] = "finer"
    hidden_features: int = Field(256, ge=1, le=4096)
    hidden_layers: int = Field(3, ge=1, le=16)
    omega_0: float = Field(30.0, gt=0)
    first_omega_0: float = Field(30.0, gt=0)
    first_bias_scale: float | None = None
    """If set, first-layer bias ~ U(-k, k) (FINER paper); None keeps PyTorch's default."""
    detach_scale: bool = True
    """Treat (|z| + 1) as a constant in the backward pass, as the reference code does."""


class GaussNetworkConfig(_Model):
    """Gaussian activation exp(-z^2 / (2 sigma^2)) (Ramasinghe and Lucey)."""

    type: Literal["gauss"] = "gauss"
    hidden_features: int = Field(256, ge=1, le=4096)
    hidden_layers: int = Field(3, ge=1, le=16)
    sigma: float = Field(0.05, gt=0)
    """0.05 for images, 0.09 for occupancy in Chng et al."""


class WireNetworkConfig(_Model):
    """Real Gabor wavelet (WIRE): cos(omega_0 z_f) exp(-(s_0 z_s)^2) with two linear maps per layer."""

    type: Literal["wire"] = "wire"
    hidden_features: int = Field(256, ge=1, le=4096)
    hidden_layers: int = Field(3, ge=1, le=16)
    omega_0: float = Field(10.0, gt=0)
    scale: float = Field(10.0, gt=0)


NetworkConfig = Annotated[
    Union[MLPNetworkConfig, SirenNetworkConfig, FinerNetworkConfig, GaussNetworkConfig, WireNetworkConfig],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------------------
# Stochastic preconditioning (Ling et al. 2025)


class PreconditionConfig(_Model):
    """Annealed Gaussian noise on query coordinates during training; never at extraction.

    Schedule (fractions of the training steps): alpha = initial_scale before `start`,
    initial_scale * g^(-p) between `start` and `end` (p in [0, 1)), then 0 (off).
    """

    enabled: bool | None = None
    """None = on for hash grid, Fourier and triplane encodings, off otherwise (as in the paper)."""
    initial_scale: float = Field(0.02, ge=0, le=0.5)
    """Noise standard deviation alpha_0 in unit-cube units ([0, 1]); 0.02 is the release default."""
    start: float = Field(0.25, ge=0, le=1)
    """Fraction of training at which the decay starts."""
    end: float = Field(0.25, ge=0, le=1)
    """Fraction of training after which the noise is off."""
    decay_factor: float | None = Field(None, gt=1.0)
    """g in the decay; None = the hash grid's per-level scale, or 8 for other encodings."""
    boundary: Literal["reflect", "clamp"] = "reflect"
    """How noised points are brought back into the cube."""
    gradient_losses_during_noise: bool = True
    """Keep normal and eikonal terms while noise is on (release code); False = research code."""

    @model_validator(mode="after")
    def _ordered(self) -> PreconditionConfig:
        if self.end < self.start:
            raise ValueError(f"precondition.end ({self.end}) must be >= precondition.start ({self.start})")
        return self


# --------------------------------------------------------------------------------------------
# Optimisation


class AdamConfig(_Model):
    """Adam with separate learning rates for grid tables and network weights."""

    type: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)
    """Learning rate of the network (and of encodings without tables)."""
    grid_lr: float | None = Field(1e-2, gt=0, le=10)
    """Learning rate of hash-grid and triplane tables; None = `lr`."""
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = Field(1e-15, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class ESGDConfig(_Model):
    """Equilibrated SGD with Hessian-vector products (Chng et al. 2025)."""

    type: Literal["esgd"] = "esgd"
    lr: float = Field(0.15, gt=0, le=100)
    grid_lr: float | None = Field(None, gt=0, le=100)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-4, gt=0)
    """Damping added to sqrt(D)."""
    weight_decay: float = Field(0.0, ge=0)
    update_d_every: int = Field(100, ge=1)
    d_warmup: int = Field(50, ge=0)
    bias_correction: Literal["steps", "d_updates"] = "steps"
    """How D's bias correction counts: optimiser steps (the reference code's behaviour, which its
    lr 0.15 was tuned with) or D refreshes (the textbook form; needs a retuned lr)."""


OptimizerConfig = Annotated[Union[AdamConfig, ESGDConfig], Field(discriminator="type")]


class ScheduleConfig(_Model):
    """Learning-rate schedule over the training steps."""

    kind: Literal["constant", "cosine", "exponential", "step"] = "cosine"
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    final_factor: float = Field(0.05, gt=0, le=1)
    """lr at the end = lr * final_factor (cosine, exponential)."""
    step_every: float = Field(0.33, gt=0, le=1)
    """For `step`: multiply by `step_gamma` every this fraction of training."""
    step_gamma: float = Field(0.5, gt=0, le=1)


class TrainConfig(_Model):
    """Training loop settings shared by every task."""

    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(8192, ge=1, le=10_000_000)
    """Samples per step (SDF: on-surface points; as many off-surface points are added)."""
    clip_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    progress_interval_s: float = Field(1.0, ge=0)
    """Minimum seconds between progress callbacks (the last step always reports)."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Save a checkpoint every this many steps (when a checkpoint path is given)."""


# --------------------------------------------------------------------------------------------
# Tasks


class SDFTaskConfig(_Model):
    """SDF from an oriented point cloud: the SIREN loss with configurable weights."""

    surface_weight: float = Field(3e3, ge=0)
    offsurface_weight: float = Field(1e2, ge=0)
    offsurface_alpha: float = Field(100.0, gt=0)
    """exp(-alpha |f|) penalises small values off the surface."""
    normal_weight: float = Field(1e2, ge=0)
    eikonal_weight: float = Field(5e1, ge=0)
    eikonal_norm: Literal["l1", "l2"] = "l2"
    """l1 = |‖∇f‖ - 1| (SIREN), l2 = (‖∇f‖ - 1)^2 (Ling et al.)."""
    gradient: Literal["autograd", "finite_difference"] = "autograd"
    """How ∇f is computed for the normal and eikonal terms."""
    finite_difference_eps: float = Field(1e-3, gt=0, le=0.1)
    """Step of the central differences, in [-1, 1] units."""
    near_surface_fraction: float = Field(0.0, ge=0, le=1)
    """Fraction of off-surface samples drawn near the surface (surface point + small noise) rather than uniformly."""
    near_surface_sigma: float = Field(0.02, gt=0, le=1)


class ImageTaskConfig(_Model):
    """2D image fitting (MSE on RGB in [0, 1])."""

    full_batch: bool = False
    """Use every pixel each step; otherwise `train.batch_size` random pixels."""
    max_side: int = Field(512, ge=8, le=8192)
    """Images larger than this are downsampled for training (the output keeps the original size)."""
    output_scale: float = Field(1.0, gt=0, le=8)
    """Render the result at this multiple of the original size."""
    psnr_every: int | None = Field(None, ge=1)
    """Evaluate the PSNR curve every this many steps; None = about 50 points over training."""


class OccupancyTaskConfig(_Model):
    """3D occupancy from a closed mesh (binary cross-entropy)."""

    near_surface_fraction: float = Field(0.5, ge=0, le=1)
    near_surface_sigma: float = Field(0.02, gt=0, le=1)
    n_samples: int = Field(200_000, ge=1000, le=20_000_000)
    """Labelled points drawn once before training."""


class InputConfig(_Model):
    """How an input point cloud is read and prepared."""

    estimate_normals: bool = True
    """Estimate and orient normals when the input has none (else fail with a clear error)."""
    normal_neighbors: int = Field(30, ge=3, le=500)
    min_points: int = Field(100, ge=4)
    max_points: int = Field(5_000_000, ge=100)
    mesh_samples: int = Field(100_000, ge=100, le=10_000_000)
    """Points sampled from a mesh input (area-weighted)."""
    normalize_margin: float = Field(0.1, ge=0, lt=0.9)
    """The longest bounding-box side maps to [-1 + margin, 1 - margin]."""
    outliers: Literal["auto", "on", "off"] = "auto"
    """Statistical outlier removal before normals and normalisation (nfcore.outliers): `auto` removes them
    when their estimated fraction is at least `outlier_min_fraction`."""
    outlier_min_fraction: float = Field(0.005, ge=0, le=1)
    check_normals: Literal["auto", "on", "off"] = "auto"
    """Check given normals against the local geometry and repair flipped or noisy ones when there are many
    (nfcore.normals); `auto` up to 500k points."""
    registration: Literal["auto", "on", "off"] = "auto"
    """Several inputs (overlapping scans of one object, nfcore.scans): refine each scan's pose by
    point-to-plane ICP against the others before merging, keeping a transform only when it lowers the
    overlap residual; `auto` registers when that residual is clearly above the within-scan noise."""
    registration_distance: float = Field(4.0, gt=0, le=100)
    """Correspondence distance of that registration (and the overlap radius), in point spacings."""


class ExtractionConfig(_Model):
    """Marching cubes settings."""

    resolution: int = Field(256, ge=16, le=2048)
    chunk_size: int = Field(262_144, ge=1024)
    """Points per field evaluation (bounds memory)."""
    coarse_to_fine: bool = True
    """Evaluate a coarse grid first and refine only cells near the surface."""
    largest_component: bool = False
    field_normals: bool = True
    """Vertex normals from the field's gradient instead of the mesh's faces."""
    project: bool = False
    """Move each vertex onto the zero level by one Newton step along the field's gradient (finer than
    marching cubes' linear interpolation on curved detail; one more gradient pass over the vertices)."""
    trim: Literal["auto", "on", "off"] = "off"
    """Remove surface that no input point supports (an unscanned side the field closed): `auto` trims
    clouds that look open (nfcore.analysis); sdf task only."""
    trim_radius: float = Field(2.0, gt=0, le=100)
    """A face is unsupported farther than this many point spacings (plus 2 noise levels) from every point: the
    kernel method's rule. On the open terrain (shared mountain, 10k) 4 spacings + 3 noise kept the skirt the
    field folds under the sheet's edges (Chamfer-L1 0.00709 against Poisson's 0.00592); 2 + 2 removes it
    (0.00357), and on the closed shapes no face lies that far from the points (nothing removed)."""
    formats: list[MeshFormat] = Field(default_factory=lambda: ["ply"])


# --------------------------------------------------------------------------------------------
# The kernel method (training-free, nfcore.kernel)


class KernelConfig(_Model):
    """Training-free gradient fitting with compactly supported kernels on a sparse voxel grid (`method: kernel`).

    Lengths are in voxels of the finest level unless stated; the voxel size follows the cloud's point
    spacing (nfcore.analysis) unless `depth` is set.
    """

    depth: int | None = Field(None, ge=4, le=12)
    """Finest level: 2^depth voxels across the cube [-1, 1]; None = from the point spacing."""
    voxel_per_spacing: float = Field(1.2, gt=0, le=8)
    """With depth None: the finest voxel is about this many point spacings (rounded to a power of two)."""
    min_depth: int = Field(5, ge=3, le=12)
    max_depth: int = Field(10, ge=4, le=12)
    """Bounds on the depth chosen from the spacing (memory grows about 4x per level)."""
    levels: int = Field(2, ge=1, le=6)
    """Levels of the coarse-to-fine cascade; each level's solve starts from the coarser level's solution."""
    band: int | None = Field(None, ge=1, le=8)
    """Voxels kept around the data at each level; None = 2, or 1 where the point spacing is at most half
    a voxel. 1 leaves holes where random samples are more than about two voxels apart (a torus from 8k
    points came out with Euler number -105, 2 closed it); in a dense cloud no such gaps exist, and one
    layer less is about 40% fewer unknowns."""
    value_weight: float = Field(1.0, ge=0)
    """Weight of f(p) = 0 at the points, divided by 1 + (noise / voxel)^2: noisy positions pull less."""
    gradient_weight: float = Field(1.0, gt=0)
    """Weight of grad f(p) = n at the points."""
    smoothness: float = Field(0.05, gt=0)
    """Weight of the thin-plate (second difference) term per node."""
    noise_smoothing: float = Field(1.0, ge=0)
    """The smoothness weight is multiplied by 1 + noise_smoothing (noise / voxel)^2."""
    backend: Literal["auto", "torch", "scipy"] = "auto"
    """Sparse products of the conjugate gradients: torch CSR (CPU or CUDA) or scipy.sparse (CPU, faster
    there); auto = scipy on CPU, torch on CUDA."""
    cpu_threads: int | None = Field(1, ge=1, le=256)
    """torch intra-op threads while the kernel method runs on a CPU (restored after); None leaves them.
    Its vectors are small and memory-bound: on 2 busy cores OpenMP's second thread made the sparse
    bunny 10x slower (16 s against 1.5 s, measured), never faster."""
    tolerance: float = Field(1e-4, gt=0, lt=1)
    """Relative residual of the normal equations at which conjugate gradients stop."""
    max_iterations: int = Field(2000, ge=1, le=100_000)
    """Conjugate-gradient iterations per level; a finest level not converged by then is an error."""
    upsample: int = Field(1, ge=1, le=4)
    """Marching-cubes samples per voxel edge."""
    block: int = Field(16, ge=4, le=128)
    """Voxels per block edge of the sparse extraction."""
    trim_distance: float | None = Field(2.0, gt=0)
    """Faces farther than this many point spacings (plus twice the noise) from every point are removed;
    None keeps everything the grid holds."""

    @model_validator(mode="after")
    def _depths_ordered(self) -> KernelConfig:
        if self.max_depth < self.min_depth:
            raise ValueError(f"kernel.max_depth ({self.max_depth}) must be >= kernel.min_depth ({self.min_depth})")
        return self


# --------------------------------------------------------------------------------------------
# A meta-learned prior (nfcore.meta)


class PriorConfig(_Model):
    """Start from a meta-learned prior (MetaSDF): its weights, then `inner_steps` plain SGD steps with its
    learned per-parameter learning rates, then the usual training loop (sdf task, neural method).

    The prior's field (encoding and network) replaces the configured one: its weights fit no other.
    Exactly one of `path` and `id` names it.
    """

    path: str | None = Field(None, min_length=1)
    """The prior file (`nfrecon meta-train`, a safetensors file validated on load)."""
    id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    """A prior stored by the service (`POST /v1/priors`); the worker resolves it to a file (`path`)
    before the fit: nfcore itself only reads files."""
    inner_steps: int | None = Field(None, ge=0, le=1000)
    """SGD steps with the learned learning rates; None = the count the prior was meta-trained for."""

    @model_validator(mode="after")
    def _one_source(self) -> PriorConfig:
        if (self.path is None) == (self.id is None):
            raise ValueError("prior needs exactly one of `path` (a prior file) and `id` (a prior stored by the service)")
        return self


# --------------------------------------------------------------------------------------------
# Warm start of the neural fit (nfcore.warmstart)


class InitConfig(_Model):
    """How the neural field starts (sdf task, neural method): its own initialisation, or distilled from the kernel solve.

    `kind: kernel` solves the kernel method (`kernel` section) on the same normalised points, then
    regresses the field (L1) on the kernel function's values at samples near the points and in the
    volume for `distill_steps` first-order steps (no gradient-of-gradient: each is a fraction of a
    training step's cost), then the usual training runs. Outside the kernel grid's voxels, where the
    kernel function is not defined, the target is the signed distance to the nearest point (signed
    by its normal).
    """

    kind: Literal["default", "kernel"] = "default"
    """`default`: the field's own initialisation (the geometric sphere for an MLP); `kernel`: the warm start."""
    distill_steps: int = Field(300, ge=1, le=100_000)
    """Regression steps on the kernel function's values; never more than `train.steps`."""
    batch_size: int = Field(8192, ge=16, le=10_000_000)
    """Samples per regression step."""
    near_fraction: float = Field(0.75, ge=0, le=1)
    """Fraction of samples near the points (point + Gaussian of `near_sigma` kernel voxels); the rest are uniform in the cube."""
    near_sigma: float = Field(1.0, gt=0, le=8)
    """Standard deviation of the near samples around the points, in kernel voxels."""
    gradient_weight: float = Field(0.0, ge=0)
    """Weight of an L1 term on the gradient against the kernel's at near samples (needs a second backward: slower)."""
    lr: float = Field(1e-3, gt=0, le=10)
    """Adam learning rate of the network during the regression."""
    grid_lr: float = Field(1e-2, gt=0, le=10)
    """Adam learning rate of grid tables during the regression."""
    lr_factor: float = Field(0.3, gt=0, le=1)
    """The training after the regression runs at the optimizer's learning rates times this factor. Adam's first
    steps move every parameter by about its learning rate whatever the gradient's size, so at the preset's rates
    they disturb a field that already lies within a voxel of the surface: on the sparse bunny, 500 CPU `balanced`
    steps after the warm start scored Chamfer-L1 0.003000 at 0.3 against 0.003052 at 1.0. (On the smaller `fast`
    field 0.3 won on the bunny and spot and lost 1-2% on the armadillo and rocker arm: bench/results/warmstart_lr03.md.)"""
    pool_size: int = Field(262_144, ge=1024, le=50_000_000)
    """Samples drawn (with their targets) once before the regression; batches are drawn from them."""


# --------------------------------------------------------------------------------------------
# The method


AdaptPath = Literal[
    "encoding.finest_resolution", "extraction.resolution", "precondition.end", "sdf.surface_weight",
    "sdf.normal_weight",
]
"""Settings that nfcore.adaptive can choose from a cloud's analysis."""


class MethodConfig(_Model):
    """A whole method: what to fit, with which field, how to train it and how to extract it."""

    task: TaskName = "sdf"
    method: MethodName = "neural"
    """`neural`: train a neural field; `kernel`: the training-free kernel solve (sdf only; see `kernel`)."""
    encoding: EncodingConfig = Field(default_factory=HashGridEncodingConfig)
    network: NetworkConfig = Field(default_factory=MLPNetworkConfig)
    precondition: PreconditionConfig = Field(default_factory=PreconditionConfig)
    optimizer: OptimizerConfig = Field(default_factory=AdamConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sdf: SDFTaskConfig = Field(default_factory=SDFTaskConfig)
    image: ImageTaskConfig = Field(default_factory=ImageTaskConfig)
    occupancy: OccupancyTaskConfig = Field(default_factory=OccupancyTaskConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)
    kernel: KernelConfig = Field(default_factory=KernelConfig)
    prior: PriorConfig | None = None
    """A meta-learned prior to start from (sdf task, neural method only); None = train from scratch."""
    init: InitConfig = Field(default_factory=InitConfig)
    """How the neural field starts; `kind: kernel` distils the kernel solve first (sdf task, neural method;
    a prior, when given, takes precedence)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    adapt: list[AdaptPath] = Field(default_factory=list)
    """Settings chosen from the input cloud's analysis when the fit starts (nfcore.adaptive), as dotted
    paths; presets list them, and a value set in a spec's overrides takes its path off the list."""

    @model_validator(mode="after")
    def _prior_for_neural_sdf(self) -> MethodConfig:
        if self.prior is not None and (self.task != "sdf" or self.method != "neural"):
            raise ValueError(f"prior is for the sdf task with the neural method, not task {self.task!r} "
                             f"with method {self.method!r}")
        return self

    @model_validator(mode="after")
    def _kernel_init_for_neural_sdf(self) -> MethodConfig:
        # The kernel method itself ignores `init` (it trains nothing), and a prior's weights take
        # precedence over it (nfcore.fit), so a preset may set it for sdf; it must not reach a task
        # that has no kernel solve.
        if self.init.kind == "kernel" and self.task != "sdf":
            raise ValueError(f"init.kind 'kernel' is for the sdf task, not {self.task!r}")
        return self

    @field_validator("method")
    @classmethod
    def _method_of_task(cls, method: str, info: ValidationInfo) -> str:
        return check_method(info.data.get("task"), method)

    def precondition_enabled(self) -> bool:
        """Whether stochastic preconditioning is on, resolving the per-encoding default."""
        if self.precondition.enabled is not None:
            return self.precondition.enabled
        return self.encoding.type in ("hashgrid", "fourier", "triplane")

    def precondition_decay_factor(self) -> float:
        """g in the schedule: the hash grid's level scale, else 8 (release code)."""
        if self.precondition.decay_factor is not None:
            return self.precondition.decay_factor
        if isinstance(self.encoding, HashGridEncodingConfig):
            return self.encoding.resolved_per_level_scale()
        return 8.0


def load_config(data: dict | str) -> MethodConfig:
    """Parse a MethodConfig from a dict or a JSON string (raises pydantic.ValidationError)."""
    if isinstance(data, str):
        return MethodConfig.model_validate_json(data)
    return MethodConfig.model_validate(data)
