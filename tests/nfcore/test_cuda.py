"""The CUDA paths, run on a GPU: each checked against the same code on CPU.

Every test here needs a CUDA device and skips cleanly without one (the CPU suite covers the
same code). `bash bench/gpu_check.sh` runs them on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nfcore.config import (
    FinerNetworkConfig,
    FourierEncodingConfig,
    GaussNetworkConfig,
    HashGridEncodingConfig,
    IdentityEncodingConfig,
    MLPNetworkConfig,
    SirenNetworkConfig,
    TriplaneEncodingConfig,
    WireNetworkConfig,
)
from nfcore.encodings import HashGridEncoding
from nfcore.field import NeuralField
from nfcore.mesh import extract_mesh
from nfcore.precondition import perturb
from tests.utils.analytic import SphereField

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _eikonal_pass(enc: torch.nn.Module, x: torch.Tensor, w: torch.Tensor):
    """Features, d/dx with a graph, and the table gradient of an eikonal-style loss (2nd order)."""
    x = x.detach().requires_grad_(True)
    out = enc(x)  # (N, L F)
    f = out @ w  # (N,)
    (gx,) = torch.autograd.grad(f.sum(), x, create_graph=True)  # (N, 3)
    loss = ((gx.norm(dim=-1) - 1) ** 2).mean() + f.abs().mean()
    (gt,) = torch.autograd.grad(loss, enc.table)
    return out.detach(), gx.detach(), gt


@pytest.mark.parametrize("implementation", ["function", "autograd"])
def test_hashgrid_on_cuda_matches_cpu_to_second_order(implementation):
    # Dense and hashed levels (2^12 rows), float64 so that differences are the code's, not rounding's.
    cfg = HashGridEncodingConfig(
        n_levels=8, log2_hashmap_size=12, base_resolution=4, finest_resolution=256, implementation=implementation
    )
    enc = HashGridEncoding(cfg, 3, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        enc.table.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(1))
    x = torch.rand(5000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    w = torch.randn(enc.out_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cpu = _eikonal_pass(enc, x, w)
    enc_gpu = HashGridEncoding(cfg, 3, device="cuda").double()
    with torch.no_grad():
        enc_gpu.table.copy_(enc.table)
    gpu = _eikonal_pass(enc_gpu, x.cuda(), w.cuda())
    for name, a, b in zip(("features", "d/dx", "d loss/d table"), cpu, gpu, strict=True):
        assert torch.allclose(a, b.cpu(), rtol=1e-9, atol=1e-10), (name, (a - b.cpu()).abs().max())
    assert gpu[2].abs().sum() > 0


def test_hashgrid_float32_function_matches_autograd_on_cuda():
    # The production configuration: float32, 16 levels, 2^19 rows, custom Function vs plain autograd.
    results = []
    for implementation in ("function", "autograd"):
        cfg = HashGridEncodingConfig(log2_hashmap_size=19, implementation=implementation)
        enc = HashGridEncoding(cfg, 3, device="cuda", generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            enc.table.uniform_(-0.1, 0.1, generator=torch.Generator(device="cuda").manual_seed(1))
        x = torch.rand(65536, 3, generator=torch.Generator(device="cuda").manual_seed(2), device="cuda") * 2 - 1
        w = torch.randn(enc.out_dim, generator=torch.Generator(device="cuda").manual_seed(3), device="cuda")
        results.append(_eikonal_pass(enc, x, w))
    for name, a, b in zip(("features", "d/dx", "d loss/d table"), *results, strict=True):
        scale = b.abs().max()
        assert (a - b).abs().max() <= 1e-4 * scale, (name, (a - b).abs().max(), scale)


ENCODINGS = [
    IdentityEncodingConfig(),
    FourierEncodingConfig(),
    HashGridEncodingConfig(n_levels=8, log2_hashmap_size=14, finest_resolution=256),
    TriplaneEncodingConfig(),
]
NETWORKS = [
    MLPNetworkConfig(),
    SirenNetworkConfig(),
    FinerNetworkConfig(),
    GaussNetworkConfig(),
    WireNetworkConfig(),
]


@pytest.mark.parametrize(
    "encoding,network",
    [(e, MLPNetworkConfig()) for e in ENCODINGS] + [(IdentityEncodingConfig(), n) for n in NETWORKS[1:]],
    ids=lambda c: c.type,
)
@pytest.mark.parametrize("method", ["autograd", "finite_difference"])
def test_field_value_and_gradient_on_cuda_match_cpu(encoding, network, method):
    field = NeuralField(encoding, network, 3, 1, sdf=True, generator=torch.Generator().manual_seed(0))
    field_gpu = NeuralField(encoding, network, 3, 1, sdf=True, device="cuda")
    field_gpu.load_state_dict(field.state_dict())
    x = torch.rand(4096, 3, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    f, g = field.value_and_gradient(x, method=method)
    fg, gg = field_gpu.value_and_gradient(x.cuda(), method=method)
    assert fg.device.type == "cuda" and gg.device.type == "cuda"
    assert torch.allclose(f, fg.cpu(), rtol=1e-4, atol=1e-5 * (1 + f.abs().max().item()))
    tol = 1e-3 if method == "finite_difference" else 1e-4  # differences of float32 values / 2 eps
    assert torch.allclose(g, gg.cpu(), rtol=tol, atol=tol * (1 + g.abs().max().item()))
    # The parameters' gradient of a loss on both reaches every parameter on the GPU.
    ((fg**2).mean() + (gg.norm(dim=-1) - 1).square().mean()).backward()
    grads = [p.grad for p in field_gpu.parameters() if p.requires_grad]
    assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_preconditioning_noise_on_cuda_is_seeded_and_stays_in_the_cube():
    x = torch.rand(200_000, 3, device="cuda") * 2 - 1
    a = perturb(x, 0.05, generator=torch.Generator(device="cuda").manual_seed(7))
    b = perturb(x, 0.05, generator=torch.Generator(device="cuda").manual_seed(7))
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    interior = (x.abs() < 0.5).all(dim=-1)  # far from the walls: plain Gaussian, std 2 alpha in [-1, 1]
    std = (a - x)[interior].std().item()
    assert std == pytest.approx(0.1, rel=0.02)
    c = perturb(x, 0.3, boundary="clamp", generator=torch.Generator(device="cuda").manual_seed(7))
    assert c.min() >= -1 and c.max() <= 1 and (c.abs() == 1).any()


def test_marching_cubes_with_a_cuda_field_recovers_the_sphere():
    field = SphereField(0.5).cuda()
    mesh = extract_mesh(lambda p: field(p)[:, 0], resolution=128, device="cuda")
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - 0.5) < 2e-3
    assert mesh.area == pytest.approx(4 * np.pi * 0.25, rel=0.01)
    assert mesh.is_watertight and mesh.volume > 0


def _sphere_cloud(path, n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.savetxt(path, np.hstack([d * 0.8 + [0.1, 0.2, -0.1], d]))
    return path


@pytest.mark.parametrize("optimizer", ["adam", "esgd"])
def test_sdf_fit_on_cuda_recovers_a_sphere(tmp_path, optimizer):
    # The whole fit on the GPU: hash grid + SP + Adam or ESGD (third-order Hessian-vector products).
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve

    src = _sphere_cloud(tmp_path / "sphere.xyz")
    overrides = {
        "encoding": {"type": "hashgrid", "n_levels": 8, "log2_hashmap_size": 15, "finest_resolution": 128},
        "optimizer": {"type": optimizer},
        "train": {"steps": 300, "batch_size": 8192, "progress_interval_s": 0},
        "extraction": {"resolution": 96},
    }
    config = resolve(MethodSpec(task="sdf", preset="fast", overrides=overrides), "cuda")
    result = fit(src, config, tmp_path / "out", device="cuda")
    assert result.metrics["device"].startswith("cuda"), result.metrics
    res = result.metrics["fit_residuals"]
    assert res["normal_agreement"] > 0.95, res
    import trimesh

    mesh = trimesh.load(result.artifacts["mesh.ply"], force="mesh")
    r = np.linalg.norm(mesh.vertices - [0.1, 0.2, -0.1], axis=1)
    assert abs(np.median(r) - 0.8) < 0.02


def test_image_fit_on_cuda_reaches_psnr(tmp_path):
    from nfcore.fit import fit
    from nfcore.io.images import write_image
    from nfcore.spec import MethodSpec, resolve

    y, x = np.mgrid[0:32, 0:32].astype(np.float32) / 31
    img = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    img[(x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.09] = [1.0, 0.2, 0.1]
    src = write_image(img, tmp_path / "in.png")
    config = resolve(MethodSpec(task="image", preset="fast", overrides={
            "network": {"type": "siren", "hidden_features": 64, "hidden_layers": 2},
            "optimizer": {"type": "adam", "lr": 1e-3},
            "train": {"steps": 200, "progress_interval_s": 0},
            "image": {"full_batch": True},
        }), "cpu")
    result = fit(src, config, tmp_path / "out", device="cuda")
    assert result.metrics["psnr"] > 30.0, result.metrics["psnr"]


def test_divergence_on_cuda_names_the_first_bad_step():
    # On CUDA the loop does not sync every step; the first non-finite step is still the one reported.
    from nfcore.config import MethodConfig
    from nfcore.tasks.sdf import SDFTask
    from nfcore.train import DivergedError, train

    class LateNaN(SphereField):
        calls = 0

        def forward(self, x):
            self.calls += 1
            out = super().forward(x)
            return out * float("nan") if self.calls > 3 else out

    config = MethodConfig.model_validate(
        {"encoding": {"type": "identity"}, "train": {"steps": 50, "batch_size": 256, "progress_interval_s": 0}}
    )
    points = torch.randn(2000, 3, device="cuda")
    normals = points / points.norm(dim=-1, keepdim=True)
    task = SDFTask(normals * 0.5, normals, config.sdf, batch_size=256)
    with pytest.raises(DivergedError, match="step 3"):
        train(LateNaN(0.3).cuda(), task, config, device="cuda", generator=torch.Generator(device="cuda"))
