"""Meta-training as a job: its spec (`MetaTrainSpec`), the limits checked at submit, and the input check.

A meta-train job is a job like the others (queued on the gpu queue unless it or the server asks for
the CPU, canceled, retried, deleted the same way), with `task` "meta-train", its shapes as input and
a prior as its result, registered as a prior of the job's key (service/priors.py). The shapes are
either one zip (an upload of kind "shapes", service/shapesets.py) or a list of 2 to
`meta_max_inputs` uploads, each a mesh or an oriented cloud; the job gets its own copy (a hard link)
of every file at submit (`jobs/<id>/input/shapes/shape-NNNN.<ext>`), so deleting or expiring an
upload never reaches it, and a retry copies the old job's. `config` is a partial
`nfcore.meta.MetaTrainConfig`; nfcore.meta imports torch, so it is read inside functions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ProblemError
from store import Upload

META_TRAIN = "meta-train"
"""The `task` of a meta-train job (its spec's and its row's)."""
MIN_LIST = 2
"""Fewest uploads a meta-train job may list (nfcore.meta.load_shapes needs two shapes)."""


class ShapeSampling(BaseModel):
    """How each mesh of the zip becomes a meta-training shape (nfcore.meta.load_shapes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_points: int = Field(3000, ge=100, description="Points of the sparse noisy scan drawn from each mesh (what "
                          "adaptation sees); at most the server's `meta_max_points`.")
    noise: float = Field(0.005, ge=0, le=0.1, description="Scan noise: standard deviation as a fraction of the "
                         "mesh's longest side.")
    n_sdf: int = Field(50_000, ge=1000, description="Ground-truth SDF samples per closed mesh (the outer loss); "
                       "at most `meta_max_points`.")


class MetaTrainSpec(BaseModel):
    """A meta-train job: learn a prior (MetaSDF) from a zip of meshes or oriented clouds of one kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["meta-train"] = "meta-train"
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="A partial MetaTrainConfig (nfcore.meta.config) merged onto its defaults: `algorithm` "
        "(maml|reptile), `first_order`, `encoding`, `network`, `steps` (outer steps, at most the server's "
        "`meta_max_steps`), `meta_batch_size`, `inner_steps`, `inner_lr`, `outer_lr`, `batch_size`, "
        "`outer_batch_size`, `sdf`, `precondition`, `seed`, ... The field's weights and learning rates must fit "
        "in `max_prior_bytes` (8 bytes per parameter).",
        examples=[{"steps": 300, "inner_steps": 5, "network": {"type": "mlp", "hidden_features": 128,
                                                               "hidden_layers": 3}}])
    shapes: ShapeSampling = Field(default_factory=ShapeSampling)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`cpu` sends the job to the cpu queue; "
                                                   "`auto`/`cuda` to the gpu queue (as a method spec's device).")

    @property
    def requested_device(self) -> str:
        return self.device


def _errors(exc: ValidationError, prefix: list) -> list[dict]:
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def parse_config(spec: MetaTrainSpec, loc: list, settings=None):
    """The spec's MetaTrainConfig; with `settings`, 422 naming each field over the server's limits."""
    from nfcore.meta.config import MetaTrainConfig

    try:
        cfg = MetaTrainConfig.model_validate(spec.config)
    except ValidationError as exc:
        errors = _errors(exc, [*loc, "config"])
        fields = ", ".join(".".join(str(p) for p in e["loc"][len(loc):]) for e in errors[:5])
        raise ProblemError(422, "invalid_options", f"invalid meta-training config: {fields}", errors=errors) from exc
    if settings is None:
        return cfg

    def over(field: list, detail: str):
        return ProblemError(422, "invalid_options", detail, errors=[{"loc": [*loc, *field], "msg": detail}])

    if cfg.steps > settings.meta_max_steps:
        raise over(["config", "steps"], f"config.steps {cfg.steps} is over this server's limit of "
                   f"{settings.meta_max_steps} outer steps")
    for name in ("n_points", "n_sdf"):
        value = getattr(spec.shapes, name)
        if value > settings.meta_max_points:
            raise over(["shapes", name], f"shapes.{name} {value} is over this server's limit of {settings.meta_max_points}")
    try:
        n = parameter_count(cfg)
    except (ValueError, TypeError, RuntimeError) as exc:  # a field nfcore cannot build (InputError is a ValueError)
        raise over(["config"], f"the field of this config cannot be built: {exc}") from exc
    if 8 * n > settings.max_prior_bytes:
        raise over(["config", "network"], f"the field has {n} parameters: its prior ({8 * n} bytes of weights and "
                   f"learning rates) would be over this server's max_prior_bytes ({settings.max_prior_bytes})")
    return cfg


def parameter_count(cfg) -> int:
    """Parameters of the field `cfg` meta-trains (built on the meta device: no memory, no init)."""
    from nfcore.field import NeuralField

    net = NeuralField(cfg.encoding, cfg.network, 3, 1, sdf=True, device="meta")
    return sum(p.numel() for p in net.parameters())


def check_input(upload: Upload) -> None:
    """422 unless the upload is a shape set (a zip of meshes, checked when it was uploaded)."""
    if upload.kind != "shapes":
        raise ProblemError(422, "invalid_input",
                           f"a meta-train job takes a zip of meshes or oriented clouds (an upload of kind shapes), "
                           f"or a list of {MIN_LIST} or more mesh and oriented-cloud uploads; "
                           f"upload {upload.id} ({upload.filename}) is a {upload.kind}",
                           errors=[{"loc": ["body", "inputs", 0], "msg": f"a {upload.kind} is not a shape set"}])


# ---- a list of uploads as the shapes ----------------------------------------------------------------

SHAPE_INPUT_KINDS = ("mesh", "pointcloud")
"""The upload kinds a meta-train job takes in a list (a cloud only with normals)."""


def _bad_input(i: int, detail: str, msg: str, code: str = "invalid_input") -> ProblemError:
    return ProblemError(422, code, detail, errors=[{"loc": ["body", "inputs", i], "msg": msg}])


def find_inputs(store, owner: str, upload_ids: Sequence[str], settings) -> list[Upload]:
    """The uploads a meta-train request names, in order.

    One id (a zip): 404 when it is not the key's upload, as for a fit. A list: 422 naming
    `["body", "inputs", i]` for an id that is not the key's upload or is listed twice, and 422 naming
    `["body", "inputs"]` past `meta_max_inputs`.
    """
    ids = list(upload_ids)
    if len(ids) == 1:
        up = store.get_upload(ids[0], owner)
        if up is None:
            raise ProblemError(404, "upload_not_found", f"no upload with id {ids[0]!r}",
                               errors=[{"loc": ["body", "inputs", 0], "msg": "unknown upload"}])
        return [up]
    limit = min(settings.meta_max_inputs, settings.meta_max_shapes)
    if len(ids) > limit:
        raise ProblemError(422, "too_many_inputs", f"{len(ids)} uploads listed; a meta-train job takes at most {limit} "
                           "(NFRECON_META_MAX_INPUTS; put more shapes in one zip)",
                           errors=[{"loc": ["body", "inputs"], "msg": f"at most {limit} uploads"}])
    uploads, seen = [], {}
    for i, uid in enumerate(ids):
        if uid in seen:
            raise _bad_input(i, f"upload {uid} is listed twice (inputs[{seen[uid]}] and inputs[{i}])", "listed twice")
        seen[uid] = i
        up = store.get_upload(uid, owner)
        if up is None:
            raise _bad_input(i, f"inputs[{i}]: no upload with id {uid!r}", "unknown upload", "upload_not_found")
        uploads.append(up)
    return uploads


def check_inputs(uploads: Sequence[Upload]) -> None:
    """422 unless the inputs make a meta-train job: one shape set (a zip), or 2 or more meshes and oriented
    clouds (a zip in a list, an image or a cloud without normals is named by its place in `inputs`)."""
    if len(uploads) == 1:
        check_input(uploads[0])
        return
    for i, up in enumerate(uploads):
        what = f"inputs[{i}]: upload {up.id} ({up.filename})"
        if up.kind == "shapes":
            raise _bad_input(i, f"{what} is a zip of shapes; submit a zip alone (inputs: [its id]) or list meshes "
                             "and oriented clouds", "a zip of shapes in a list")
        if up.kind not in SHAPE_INPUT_KINDS:
            raise _bad_input(i, f"{what} is a {up.kind}; a meta-train job takes meshes or oriented point clouds",
                             f"a {up.kind} is not a shape")
        if up.kind == "pointcloud" and not (up.report or {}).get("has_normals"):
            raise _bad_input(i, f"{what} is a point cloud without normals; meta-training takes oriented clouds "
                             "(or meshes)", "point cloud without normals")


__all__ = ["META_TRAIN", "SHAPE_INPUT_KINDS", "MetaTrainSpec", "ShapeSampling", "check_input", "check_inputs",
           "find_inputs", "parameter_count", "parse_config"]
