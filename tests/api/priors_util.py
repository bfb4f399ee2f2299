"""Helpers for the prior and meta-train tests (API and worker): a tiny real prior, zips of sphere meshes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

TINY_META_CONFIG = {"network": {"type": "mlp", "hidden_features": 32, "hidden_layers": 2}, "steps": 4,
                    "meta_batch_size": 1, "inner_steps": 2, "batch_size": 128, "outer_batch_size": 256}
"""A meta-training that takes about a second on 2 CPU cores."""
TINY_SHAPES = {"n_points": 300, "n_sdf": 2000}


def make_prior_file(path: Path, *, seed: int = 0, steps: int = 4) -> Path:
    """A real prior: nfcore.meta.meta_train for a few steps on 3 spheres given in the cube (with exact SDF samples)."""
    import torch

    from nfcore.meta import MetaShape, MetaTrainConfig, meta_train, save_prior

    g = torch.Generator().manual_seed(seed)
    shapes = []
    for radius in (0.3, 0.5, 0.7):
        d = torch.randn(300, 3, generator=g)
        d = d / d.norm(dim=1, keepdim=True)  # (300, 3) unit directions
        q = torch.rand(1000, 3, generator=g) * 2 - 1  # (1000, 3) in the cube
        shapes.append(MetaShape(d * radius, d, q, q.norm(dim=1) - radius, f"sphere-{radius}"))
    cfg = MetaTrainConfig.model_validate({**TINY_META_CONFIG, "steps": steps, "seed": seed, "progress_interval_s": 0})
    return save_prior(meta_train(shapes, cfg).prior, path)


def rewrite_prior(path: Path, *, metadata: dict | None = None, header: dict | None = None) -> Path:
    """The prior file at `path` with changed metadata or header (the digest recomputed for a header change:
    a consistent file that is wrong in another way)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from nfcore.meta.prior import _digest

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    if header is not None:
        meta["prior"] = json.dumps(header, sort_keys=True)
        meta["sha256"] = _digest(meta["prior"], tensors)
    meta.update(metadata or {})
    save_file(tensors, str(path), metadata=meta)
    return path


def sphere_zip(path: Path, radii=(0.4, 0.6, 0.8), *, extra: dict[str, bytes] | None = None) -> Path:
    """A zip of closed sphere meshes (.obj, .ply alternating) and `extra` members as given."""
    import trimesh

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, r in enumerate(radii):
            mesh = trimesh.creation.icosphere(subdivisions=2, radius=r)
            ext = "obj" if k % 2 == 0 else "ply"
            buf = io.BytesIO()
            mesh.export(buf, file_type=ext)
            zf.writestr(f"spheres/sphere_{k}.{ext}", buf.getvalue())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def sphere_meshes(directory: Path, radii=(0.4, 0.6)) -> list[Path]:
    """Closed sphere meshes as separate files (.obj, .ply alternating): uploads of kind mesh."""
    import trimesh

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, r in enumerate(radii):
        path = directory / f"ball_{k}.{'obj' if k % 2 == 0 else 'ply'}"
        trimesh.creation.icosphere(subdivisions=2, radius=r).export(path)
        paths.append(path)
    return paths


def post_prior(client, path: Path, *, headers=None, name: str | None = None):
    data = {"name": name} if name else None
    with open(path, "rb") as f:
        return client.post("/v1/priors", files={"file": (path.name, f, "application/octet-stream")}, data=data,
                           headers=headers or {})
