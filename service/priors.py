"""Priors as a resource: store a validated prior file, list, read, delete, and name one in a job by id.

A prior (nfcore.meta: one safetensors file, versioned, digest-checked) belongs to the API key that
uploaded it or whose meta-train job made it; another key's prior is a 404. A job names it as
`overrides.prior.id`; `overrides.prior.path` (a file on the server) is refused through the service.

Deletion: a job gets its own copy (a hard link) of the prior when it is submitted, as it does of
its input upload, so deleting a prior is always allowed and never reaches a queued or running job;
only new submissions (and retries of jobs whose copy has expired) stop finding it.

nfcore's `load_prior` (torch, imported on first use only: the reaper and the Celery parent stay free
of it) validates every file before it is stored; it reads a safetensors header and raw tensors and
never unpickles, so it runs in the API process, one at a time to bound its memory.

Idempotency: `POST /v1/priors` honours `Idempotency-Key` as uploads and jobs do (the same key table,
scope "POST /v1/priors"): the same key with the same file and name replays the stored prior, with
another file or name it is a 422 `idempotency_key_reused`, and once that prior is deleted a 409
`idempotency_key_stale`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from service.errors import ProblemError, not_found
from service.pages import decode_token, encode_token
from store import ArtifactStore, IdempotencyKey, JobStore, Prior, PriorStore, file_sha256, utcnow

_validate_lock = threading.Lock()
SCOPE = "POST /v1/priors"
"""The idempotency scope of prior uploads."""


def new_prior_id() -> str:
    return f"pri_{uuid.uuid4().hex[:24]}"


def prior_public(row: Prior) -> dict:
    """The prior as the API shows it (a dict for `api.schemas.PriorPublic`)."""
    header = row.header or {}
    info = header.get("info") or {}
    return {
        "id": row.id, "name": row.name, "size": row.size, "sha256": row.sha256, "created_at": row.created_at,
        "source_job": row.source_job,
        "field": {"encoding": header.get("encoding"), "network": header.get("network")},
        "inner_steps": header.get("inner_steps"), "batch_size": header.get("batch_size"),
        "algorithm": info.get("algorithm"), "info": info,
        "links": {"self": f"/v1/priors/{row.id}", "file": f"/v1/priors/{row.id}/file"},
    }


def read_prior_header(path: Path, display_name: str) -> dict:
    """The header of a valid prior file (nfcore's `load_prior`); 422 `invalid_prior` naming why it is not one.

    Blocking (torch): call it from a worker thread.
    """
    from nfcore.errors import InputError
    from nfcore.meta.prior import load_prior

    try:
        with _validate_lock:
            prior = load_prior(path)
    except InputError as exc:
        # Name the client's file, never our storage path.
        detail = str(exc).replace(str(path), display_name).replace(path.name, display_name)
        if display_name not in detail:
            detail = f"{display_name}: {detail}"
        raise ProblemError(422, "invalid_prior", detail, errors=[{"loc": ["body", "file"], "msg": detail}]) from None
    return json.loads(json.dumps(prior.header(), default=str))


def add_prior(priors: PriorStore, artifacts: ArtifactStore, owner: str, src: Path, *, name: str,
              source_job: str | None = None, move: bool = True,
              idempotency: tuple[str, str, int] | None = None) -> Prior:
    """Validate the prior file `src`, put it in place under a new id (atomically) and record it.

    Args:
        move: rename `src` into place (a received upload); False links or copies it (a job's artifact).
        idempotency: (Idempotency-Key, fingerprint, seconds to keep it), recorded with the prior.
    Raises:
        ProblemError: 422 when `src` is not a valid prior.
        IdempotencyConflict: another request recorded this key first (nothing of this one is kept).
    """
    header = read_prior_header(src, name)
    prior_id = new_prior_id()
    size, sha = src.stat().st_size, file_sha256(src)
    path = artifacts.store_prior(src, prior_id, move=move)
    row = Prior(id=prior_id, owner=owner, name=name, path=artifacts.relative(path), size=size, sha256=sha,
                header=header, source_job=source_job, created_at=utcnow())
    key = None
    if idempotency is not None:
        now = utcnow()
        key = IdempotencyKey(owner=owner, scope=SCOPE, key=idempotency[0], fingerprint=idempotency[1],
                             resource_id=prior_id, created_at=now, expires_at=now + timedelta(seconds=idempotency[2]))
    try:
        priors.add(row, key)
    except BaseException:
        artifacts.remove_prior(prior_id)
        raise
    return row


def prior_fingerprint(name: str, sha256: str) -> str:
    """What an Idempotency-Key of `POST /v1/priors` stands for: the display name and the file's digest."""
    return hashlib.sha256(f"{name}\n{sha256}".encode()).hexdigest()


def check_idempotency_key(key: str) -> None:
    if len(key) > 255:
        raise ProblemError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")


def replay_prior(store: JobStore, priors: PriorStore, owner: str, key: str, fingerprint: str) -> Prior | None:
    """The prior an earlier request with this key stored (None: the key is new); 422 when that request
    sent another file or name, 409 when its prior was deleted since."""
    check_idempotency_key(key)
    existing = store.get_idempotency(owner, SCOPE, key)
    return None if existing is None else replay_existing(priors, owner, existing, fingerprint)


def replay_existing(priors: PriorStore, owner: str, existing: IdempotencyKey, fingerprint: str) -> Prior:
    if existing.fingerprint != fingerprint:
        raise ProblemError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different file or name; use a new key")
    row = priors.get(existing.resource_id, owner)
    if row is None:
        raise ProblemError(409, "idempotency_key_stale", "the prior stored with this Idempotency-Key was deleted")
    return row


def get_prior(priors: PriorStore, owner: str, prior_id: str) -> Prior:
    row = priors.get(prior_id, owner)
    if row is None:
        raise not_found("prior", prior_id)
    return row


def prior_file(priors: PriorStore, artifacts: ArtifactStore, owner: str, prior_id: str) -> tuple[Prior, Path]:
    """The prior and its file; 404 when unknown, another key's, or its file is gone."""
    row = get_prior(priors, owner, prior_id)
    path = artifacts.absolute(row.path)
    if not path.is_file():
        raise ProblemError(404, "prior_not_found", f"the file of prior {prior_id!r} is gone")
    return row, path


def list_priors(priors: PriorStore, owner: str, *, page_size: int, page_token: str | None) -> dict:
    before = decode_token(page_token) if page_token else None
    rows = priors.list(owner, limit=page_size + 1, before=before)
    more = len(rows) > page_size
    rows = rows[:page_size]
    return {"items": [prior_public(r) for r in rows], "next_page_token": encode_token(rows[-1]) if more else None}


def delete_prior(priors: PriorStore, artifacts: ArtifactStore, owner: str, prior_id: str) -> None:
    """Remove the prior; jobs that named it keep their own copy (see the module docstring)."""
    get_prior(priors, owner, prior_id)
    priors.delete(prior_id)
    artifacts.remove_prior(prior_id)


# ---- priors in jobs ----------------------------------------------------------------------------


def refuse_prior_path(overrides: dict, loc: list) -> None:
    """422 when a spec's overrides name a prior file: a client must never name files on the server."""
    prior = overrides.get("prior")
    if isinstance(prior, dict) and prior.get("path") is not None:
        raise ProblemError(422, "invalid_options", "overrides.prior.path names a file on the server and is not "
                           "accepted through the API; upload the prior (POST /v1/priors) and name it with "
                           "overrides.prior.id",
                           errors=[{"loc": [*loc, "overrides", "prior", "path"],
                                    "msg": "not accepted through the API; use overrides.prior.id"}])


def job_prior_source(priors: PriorStore, artifacts: ArtifactStore, owner: str, config, loc: list,
                     fallback: tuple[str, Path] | None = None) -> Path | None:
    """The file of the prior a resolved config names by id (None without a prior); 422 naming
    `overrides.prior.id` when the key has no such prior.

    Args:
        fallback: (prior id, a retried job's own copy of it), used when that prior was deleted since.
    """
    if config.prior is None or config.prior.id is None:
        return None
    row = priors.get(config.prior.id, owner)
    path = artifacts.absolute(row.path) if row is not None else None
    if path is not None and path.is_file():
        return path
    if fallback is not None and fallback[0] == config.prior.id and fallback[1].is_file():
        return fallback[1]
    raise ProblemError(422, "prior_not_found", f"no prior with id {config.prior.id!r} (upload one with POST /v1/priors)",
                       errors=[{"loc": [*loc, "overrides", "prior", "id"], "msg": "unknown prior"}])


def resolve_job_prior(config, artifacts: ArtifactStore, job_id: str):
    """The worker's side: `config` with its prior id replaced by the job's own copy of the file.

    Returns (config for nfcore, prior id or None). A missing copy is an InputError (the job fails
    `invalid_input` with this message), never a crash.
    """
    if config.prior is None or config.prior.id is None:
        return config, None
    from nfcore.config import PriorConfig
    from nfcore.errors import InputError

    path = artifacts.job_prior(job_id)
    if not path.is_file():
        raise InputError(f"the copy of prior {config.prior.id!r} this job was given at submission is missing")
    prior = PriorConfig(path=str(path), inner_steps=config.prior.inner_steps)
    return config.model_copy(update={"prior": prior}), config.prior.id


def with_prior_id(config: dict, metrics: dict, prior_id: str | None, out_dir: Path | None = None) -> tuple[dict, dict]:
    """Config and metrics as the job shows them: the prior named by its id, never by the server's path.

    Rewrites `out_dir/config.json` to match (the artifact equals the job's recorded config).
    """
    if prior_id is None:
        return config, metrics
    config = {**config, "prior": {"id": prior_id, "path": None, "inner_steps": (config.get("prior") or {}).get("inner_steps")}}
    if isinstance(metrics.get("prior"), dict):
        metrics = {**metrics, "prior": {**{k: v for k, v in metrics["prior"].items() if k != "path"}, "id": prior_id}}
    if out_dir is not None:
        for name, data in (("config.json", config), ("metrics.json", metrics)):
            if (out_dir / name).is_file():
                tmp = out_dir / f".{name}.tmp"
                tmp.write_text(json.dumps(data, indent=2))
                os.replace(tmp, out_dir / name)
    return config, metrics


__all__ = ["SCOPE", "add_prior", "check_idempotency_key", "delete_prior", "get_prior", "job_prior_source",
           "list_priors", "new_prior_id", "prior_file", "prior_fingerprint", "prior_public", "read_prior_header",
           "refuse_prior_path", "replay_existing", "replay_prior", "resolve_job_prior", "with_prior_id"]
