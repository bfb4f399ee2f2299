"""Meta-learned priors (nfcore.meta): meta-training, the prior file, adaptation, fit and the CLI with a prior."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from nfcore.config import MethodConfig, MLPNetworkConfig
from nfcore.errors import FitCanceled, InputError
from nfcore.field import NeuralField
from nfcore.meta import (
    MetaShape,
    MetaTrainConfig,
    Prior,
    adapt,
    load_prior,
    meta_train,
    post_adaptation_loss,
    save_prior,
)
from nfcore.meta.prior import _digest
from tests.conftest import sphere_cloud

TINY_NET = MLPNetworkConfig(hidden_features=32, hidden_layers=2)


def _sphere(radius: float, generator: torch.Generator, n: int = 400, m: int = 2000) -> MetaShape:
    """A sphere of `radius` about the origin, already in the cube: cloud, normals and exact SDF samples."""
    d = torch.randn(n, 3, generator=generator)
    d = d / d.norm(dim=1, keepdim=True)  # (n, 3) unit
    q = torch.rand(m, 3, generator=generator) * 2 - 1  # (m, 3) uniform in the cube
    return MetaShape(d * radius, d, q, q.norm(dim=1) - radius, f"sphere-{radius:.2f}")


def _spheres(count: int, seed: int) -> list[MetaShape]:
    g = torch.Generator().manual_seed(seed)
    return [_sphere(float(0.2 + 0.6 * torch.rand(1, generator=g)), g) for _ in range(count)]


def _cfg(**kw) -> MetaTrainConfig:
    base = dict(network=TINY_NET, steps=60, meta_batch_size=2, inner_steps=3, batch_size=256, outer_batch_size=512,
                inner_lr=1e-4, outer_lr=1e-4, outer_schedule="constant", progress_interval_s=0)
    return MetaTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sphere_prior() -> Prior:
    return meta_train(_spheres(8, seed=0), _cfg()).prior


def _random_init_loss(cfg: MetaTrainConfig, held_out: list[MetaShape]) -> float:
    field = NeuralField(cfg.encoding, cfg.network, 3, 1, sdf=True, generator=torch.Generator().manual_seed(cfg.seed))
    params = dict(field.named_parameters())
    lrs = {n: torch.full_like(p, cfg.inner_lr) for n, p in params.items()}
    return post_adaptation_loss(field, params, lrs, held_out, cfg, torch.Generator().manual_seed(7))


def _prior_loss(prior: Prior, cfg: MetaTrainConfig, held_out: list[MetaShape]) -> float:
    field = prior.build_field()
    return post_adaptation_loss(field, dict(field.named_parameters()), prior.lrs, held_out, cfg,
                                torch.Generator().manual_seed(7))


def test_maml_on_spheres_lowers_the_post_adaptation_loss(sphere_prior):
    cfg = _cfg()
    held_out = _spheres(4, seed=1)
    before = _random_init_loss(cfg, held_out)
    after = _prior_loss(sphere_prior, cfg, held_out)
    # Measured: 0.0174 from the random (geometric) init, 0.0073 from the prior after 60 outer steps.
    assert after < 0.6 * before, (before, after)
    # The learning rates were learned (MetaSDF), not left at their initial value.
    assert any(not torch.allclose(lr, torch.full_like(lr, cfg.inner_lr)) for lr in sphere_prior.lrs.values())


def test_reptile_on_spheres_lowers_the_post_adaptation_loss():
    cfg = _cfg(algorithm="reptile", steps=40, outer_lr=1e-3)
    held_out = _spheres(4, seed=1)
    prior = meta_train(_spheres(8, seed=0), cfg).prior
    before, after = _random_init_loss(cfg, held_out), _prior_loss(prior, cfg, held_out)
    assert after < 0.8 * before, (before, after)
    assert all(torch.equal(lr, torch.full_like(lr, cfg.inner_lr)) for lr in prior.lrs.values())  # reptile keeps lr


def test_meta_training_reports_progress_and_resumes_exactly(tmp_path):
    shapes = _spheres(4, seed=3)
    cfg = _cfg(steps=4, checkpoint_every=2, algorithm="maml", first_order=True)
    seen = []
    straight = meta_train(shapes, cfg, callback=seen.append).prior
    assert seen[-1].phase == "meta-train" and seen[-1].step == 4 and "outer" in seen[-1].loss

    ckpt = tmp_path / "meta.ckpt"
    meta_train(shapes, cfg.model_copy(update={"steps": 2}), checkpoint_path=ckpt)
    resumed = meta_train(shapes, cfg, checkpoint_path=ckpt)
    assert resumed.resumed_from == 2 and resumed.steps == 2
    for name, p in straight.params.items():
        torch.testing.assert_close(resumed.prior.params[name], p)
        torch.testing.assert_close(resumed.prior.lrs[name], straight.lrs[name])
    with pytest.raises(InputError, match="other meta-training settings"):
        meta_train(shapes, cfg.model_copy(update={"inner_lr": 1e-3}), checkpoint_path=ckpt)


def test_cosine_outer_schedule_acts_and_resumes_exactly_after_an_interruption(tmp_path):
    shapes = _spheres(4, seed=3)
    cfg = _cfg(steps=4, checkpoint_every=2, outer_schedule="cosine")
    straight = meta_train(shapes, cfg).prior
    constant = meta_train(shapes, cfg.model_copy(update={"outer_schedule": "constant"})).prior
    assert any(not torch.equal(straight.params[n], constant.params[n]) for n in straight.params)

    ckpt = tmp_path / "meta.ckpt"
    with pytest.raises(FitCanceled):  # stopped after step 2, whose checkpoint is on disk
        meta_train(shapes, cfg, checkpoint_path=ckpt, callback=lambda progress: progress.step < 2)
    resumed = meta_train(shapes, cfg, checkpoint_path=ckpt)
    assert resumed.resumed_from == 2
    for name, p in straight.params.items():  # the learning rate follows the step, not the restart
        torch.testing.assert_close(resumed.prior.params[name], p)


def test_too_few_shapes_is_an_input_error():
    with pytest.raises(InputError, match="at least 2 shapes"):
        meta_train(_spheres(1, seed=0), _cfg())


# ---- the prior file ---------------------------------------------------------------------------


def test_prior_round_trips_through_save_and_load(sphere_prior, tmp_path):
    path = save_prior(sphere_prior, tmp_path / "prior.safetensors")
    loaded = load_prior(path)
    assert loaded.header() == json.loads(json.dumps(sphere_prior.header()))
    for name in sphere_prior.params:
        assert torch.equal(loaded.params[name], sphere_prior.params[name])
        assert torch.equal(loaded.lrs[name], sphere_prior.lrs[name])
    x = torch.rand(100, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(loaded.build_field()(x), sphere_prior.build_field()(x))


def _rewrite(path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def _contents(path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        return load_file(str(path)), dict(f.metadata())


def test_corrupt_and_foreign_files_are_refused(sphere_prior, tmp_path):
    good = save_prior(sphere_prior, tmp_path / "good.safetensors")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not a prior file"):
        load_prior(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(InputError, match="not a readable prior file"):
        load_prior(truncated)
    # A pickle (what torch.save writes) is never unpickled, whatever it holds.
    pickled = tmp_path / "pickled.pt"
    torch.save({"params": sphere_prior.params, "note": "not tensors only"}, pickled)
    with pytest.raises(InputError, match="not a prior file"):
        load_prior(pickled)
    with pytest.raises(InputError, match="not found"):
        load_prior(tmp_path / "missing.safetensors")


def test_tampered_file_is_refused(sphere_prior, tmp_path):
    path = save_prior(sphere_prior, tmp_path / "prior.safetensors")
    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    data[8 + header_len + 5] ^= 0xFF  # flip bits inside the first tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="modified after it was written"):
        load_prior(path)


def test_wrong_version_format_and_field_are_refused(sphere_prior, tmp_path):
    path = save_prior(sphere_prior, tmp_path / "prior.safetensors")
    tensors, meta = _contents(path)

    _rewrite(path, tensors, {**meta, "version": "99"})
    with pytest.raises(InputError, match="version '99'"):
        load_prior(path)

    _rewrite(path, tensors, {**meta, "format": "something-else"})
    with pytest.raises(InputError, match="not an nfrecon prior"):
        load_prior(path)

    # A header naming a wider network than the tensors (digest recomputed: a consistent but wrong file).
    header = json.loads(meta["prior"])
    header["network"]["hidden_features"] = 64
    header_json = json.dumps(header, sort_keys=True)
    _rewrite(path, tensors, {**meta, "prior": header_json, "sha256": _digest(header_json, tensors)})
    with pytest.raises(InputError, match=r"do not fit the field.*network.layers.0.weight is \(32, 3\) but the field needs \(64, 3\)"):
        load_prior(path)

    # Integer tensors are no prior's.
    ints = {k: v.to(torch.int32) for k, v in tensors.items()}
    _rewrite(path, ints, {**meta, "sha256": _digest(meta["prior"], ints)})
    with pytest.raises(InputError, match="float32 only"):
        load_prior(path)


def test_a_prior_does_not_load_into_another_field(sphere_prior):
    from nfcore.meta.prior import check_field

    other = NeuralField(sphere_prior.encoding, MLPNetworkConfig(hidden_features=16, hidden_layers=2), 3, 1, sdf=True)
    with pytest.raises(InputError, match="do not fit the field"):
        check_field(sphere_prior, other)


# ---- using a prior ------------------------------------------------------------------------------


def test_adapt_fits_a_new_sphere_better_than_the_prior_alone(sphere_prior):
    points, normals = sphere_cloud(2000, radius=0.45, seed=5)
    x = torch.as_tensor(points)
    start = sphere_prior.build_field()(x).abs().mean().item()
    field = adapt(sphere_prior, points, normals, steps=3, generator=torch.Generator().manual_seed(0))
    adapted = field(x).abs().mean().item()
    assert adapted < 0.8 * start, (start, adapted)
    with pytest.raises(InputError, match=r"points must have shape \(N, 3\)"):
        adapt(sphere_prior, points[:, :2], normals)


def test_fit_with_a_prior_uses_its_field_and_steps(sphere_prior, tmp_path):
    from nfcore.fit import fit

    path = save_prior(sphere_prior, tmp_path / "prior.safetensors")
    points, normals = sphere_cloud(1500, radius=0.7, seed=2)
    src = tmp_path / "s.xyz"
    np.savetxt(src, np.hstack([points + 3.0, normals]))
    config = MethodConfig(prior={"path": str(path), "inner_steps": 2}, train={"steps": 5},
                          extraction={"resolution": 32})
    result = fit(src, config, tmp_path / "out", device="cpu")
    assert result.metrics["prior"]["inner_steps"] == 2 and result.metrics["network"] == "mlp"
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["encoding"]["type"] == "identity" and written["network"]["hidden_features"] == 32
    assert written["prior"]["path"] == str(path)
    assert result.metrics["fit_residuals"]["normal_agreement"] > 0.9
    with pytest.raises(ValueError, match="prior is for the sdf task"):
        MethodConfig(task="image", prior={"path": str(path)})


@pytest.mark.parametrize("field", [
    {"encoding": {"type": "fourier", "n_frequencies": 4}},
    {"network": {"type": "siren", "hidden_features": 32, "hidden_layers": 2}},
    {"encoding": {"type": "hashgrid", "n_levels": 4, "log2_hashmap_size": 10, "base_resolution": 4,
                  "finest_resolution": 32}},
], ids=["mlp+fourier", "siren", "mlp+hashgrid"])
def test_second_order_maml_runs_on_other_fields(field, tmp_path):
    cfg = MetaTrainConfig.model_validate({**_cfg(steps=2, inner_steps=2, first_order=False).model_dump(), **field})
    result = meta_train(_spheres(3, seed=0), cfg)
    start = NeuralField(cfg.encoding, cfg.network, 3, 1, sdf=True, generator=torch.Generator().manual_seed(cfg.seed))
    moved = [n for n, p in start.named_parameters() if not torch.equal(p.detach(), result.prior.params[n])]
    assert moved and all(np.isfinite(v) for _, v in result.history)
    # The meta-gradient reached the learning rates too (second order through the inner steps).
    assert any(not torch.allclose(lr, torch.full_like(lr, cfg.inner_lr)) for lr in result.prior.lrs.values())
    loaded = load_prior(save_prior(result.prior, tmp_path / "p.safetensors"))
    assert loaded.encoding == cfg.encoding and loaded.network == cfg.network


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_meta_training_and_adaptation_run_on_cuda(tmp_path):
    shapes = _spheres(4, seed=0)
    result = meta_train(shapes, _cfg(steps=3), device="cuda", checkpoint_path=tmp_path / "ckpt")
    assert all(t.device.type == "cpu" for t in result.prior.params.values())  # a prior is stored on the CPU
    resumed = meta_train(shapes, _cfg(steps=4), device="cuda", checkpoint_path=tmp_path / "ckpt")
    assert resumed.resumed_from == 3
    points, normals = sphere_cloud(1000, radius=0.5, seed=1)
    field = adapt(result.prior, points, normals, device="cuda")
    x = torch.as_tensor(points, device="cuda")
    assert field(x).is_cuda and torch.isfinite(field(x)).all()


def test_a_prior_is_named_by_exactly_one_of_path_and_id_and_fit_refuses_an_unresolved_id(tmp_path):
    from nfcore.config import PriorConfig
    from nfcore.fit import fit

    assert PriorConfig(id="pri_abc").path is None
    with pytest.raises(ValueError, match="exactly one of `path`"):
        PriorConfig(path="p.safetensors", id="pri_abc")
    with pytest.raises(ValueError, match="exactly one of `path`"):
        PriorConfig(inner_steps=3)
    with pytest.raises(ValueError, match="id"):
        PriorConfig(id="../etc/passwd")  # an id is a name, never a path
    points, normals = sphere_cloud(500, radius=0.7, seed=2)
    src = tmp_path / "s.xyz"
    np.savetxt(src, np.hstack([points, normals]))
    config = MethodConfig(prior={"id": "pri_abc"}, train={"steps": 2}, extraction={"resolution": 16})
    with pytest.raises(InputError, match="prior id 'pri_abc' was not resolved to a file"):
        fit(src, config, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "metrics.json").exists()
