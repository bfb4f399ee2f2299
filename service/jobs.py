"""The job lifecycle: create (validate the method spec or meta-train spec and the input, queue cap, idempotency),
read, cancel, retry, delete, logs and artifacts. The API's routes call these; every state change is the job store's."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from nfcore.spec import MethodSpec, resolve
from nfcore.vocab import TASK_INPUT_KINDS
from service import metatrain, priors
from service.context import Services
from service.errors import ProblemError, not_found
from service.inputs import retry_inputs, upload_files
from service.metatrain import META_TRAIN, MetaTrainSpec
from service.pages import decode_token, encode_token
from service.webhooks import check_url
from store import TERMINAL, IdempotencyConflict, IdempotencyKey, Job, JobStatus, JobView, JobWebhook, Upload, utcnow

SCOPE = "POST /v1/jobs"
STATUSES = [s.value for s in JobStatus]


def links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "cancel": f"{base}/cancel", "retry": f"{base}/retry", "logs": f"{base}/logs",
            "events": f"{base}/events", "artifacts": f"{base}/artifacts", "zip": f"{base}/artifacts/all.zip"}


def job_public(services: Services, job: Job, *, full: bool = True, queue_position: int | None = None) -> dict:
    """The job as the API shows it (a dict for `api.schemas.JobPublic`)."""
    if queue_position is None and job.status == JobStatus.queued.value:
        queue_position = services.store.queue_position(job)
    hook = services.webhooks.subscription(job.id) if full else None
    return _public(job, full=full, queue_position=queue_position, webhook_url=hook.url if hook else None,
                   webhook_events=hook.events if hook else None)


def view_public(view: JobView) -> dict:
    """`job_public` of a job read with `get_job_view` (no further queries)."""
    return _public(view.job, full=True, queue_position=view.queue_position, webhook_url=view.webhook_url,
                   webhook_events=view.webhook_events)


def _public(job: Job, *, full: bool, queue_position: int | None, webhook_url: str | None,
            webhook_events: list[str] | None) -> dict:
    return {
        "id": job.id, "name": job.name, "spec": job.spec, "status": job.status,
        "stage": job.stage, "progress": job.progress, "queue_position": queue_position, "attempt": job.attempt,
        "max_attempts": job.max_attempts, "inputs": job.inputs, "device": job.device,
        "config": job.config if full else None, "error": job.error, "metrics": job.metrics, "retry_of": job.retry_of,
        "metadata": job.metadata_ or {}, "created_at": job.created_at, "updated_at": job.updated_at,
        "started_at": job.started_at, "finished_at": job.finished_at, "expires_at": job.expires_at,
        "artifacts_expired": job.artifacts_expired, "links": links(job.id),
        "webhook": webhook_url, "webhook_events_filter": webhook_events,
    }


def etag(job: Job, queue_position: int | None) -> str:
    return f'W/"{job.version}-{queue_position or 0}"'


def get_job_view(services: Services, owner: str, job_id: str) -> JobView:
    """The job, its queue position and webhook in one query (the poll path); 404 when unknown or not the owner's."""
    view = services.store.get_job_view(job_id, owner)
    if view is None:
        raise not_found("job", job_id)
    return view


def poll_headers(services: Services, view: JobView) -> dict[str, str]:
    """ETag (changes with every write to the job and with its queue position), no-cache, and Retry-After
    while the job is active: how often a poller should come back."""
    job = view.job
    headers = {"ETag": etag(job, view.queue_position), "Cache-Control": "no-cache"}
    if job.status not in TERMINAL:
        headers["Retry-After"] = "1" if job.status != "queued" else str(min(services.settings.retry_after_s, 5))
    return headers


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _validation_errors(exc: ValidationError, prefix: list) -> list[dict]:
    return [{"loc": prefix + [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))],
             "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def with_default_preset(services: Services, spec: MethodSpec | MetaTrainSpec | None) -> MethodSpec | MetaTrainSpec:
    """The spec with the server's default preset when the request named none (stored that way)."""
    spec = spec or MethodSpec()
    if isinstance(spec, MetaTrainSpec):
        return spec
    if "preset" in spec.model_fields_set:
        return spec
    return spec.model_copy(update={"preset": services.settings.default_preset})


def queue_device(services: Services, spec: MethodSpec | MetaTrainSpec) -> str:
    """"cpu" when the job goes to the cpu queue, else "gpu" (GPU workers, or CPU workers serving that queue)."""
    requested = spec.requested_device
    cpu_only = requested == "cpu" or (requested == "auto" and services.settings.job_device == "cpu")
    return "cpu" if cpu_only else "gpu"


def validate_spec(services: Services, spec: MethodSpec, loc: list) -> dict[str, object]:
    """Resolve `spec` for every device that may run it (422 naming each bad field); {device: MethodConfig}.

    A gpu-queue job may run on a GPU worker or on a CPU worker serving that queue, and the presets
    differ per device, so a bad override must fail here for both rather than later on one of them.
    """
    # PriorConfig.path is a path on the worker's disk: a client names a stored prior by its id instead.
    priors.refuse_prior_path(spec.overrides, loc)
    devices = ("cpu",) if queue_device(services, spec) == "cpu" else spec.devices()
    configs = {}
    for device in devices:
        try:
            configs[device] = resolve(spec, device)
        except ValidationError as exc:
            errors = _validation_errors(exc, [*loc, "overrides"])
            fields = ", ".join(".".join(str(p) for p in e["loc"][len(loc):]) for e in errors[:5])
            raise ProblemError(422, "invalid_options", f"invalid method overrides: {fields}", errors=errors) from exc
        except ValueError as exc:
            raise ProblemError(422, "invalid_options", str(exc), errors=[{"loc": loc, "msg": str(exc)}]) from exc
    return configs


def check_input(spec: MethodSpec, config, upload: Upload, index: int = 0) -> None:
    """Reject at submit time what would fail on the worker (service.md §5.1); `index`: its place in `inputs`."""
    kinds = TASK_INPUT_KINDS[spec.task]
    if upload.kind not in kinds:
        raise ProblemError(422, "invalid_input",
                           f"task {spec.task!r} takes {' or '.join(kinds)} input; upload {upload.id} "
                           f"({upload.filename}) is a {upload.kind}",
                           errors=[{"loc": ["body", "inputs", index],
                                    "msg": f"a {upload.kind} is not usable by {spec.task}"}])
    if spec.task == "sdf" and upload.kind == "pointcloud" and not (upload.report or {}).get("has_normals") \
            and not config.input.estimate_normals:
        raise ProblemError(422, "invalid_input",
                           f"upload {upload.id} ({upload.filename}) has no normals and overrides.input.estimate_normals "
                           "is false", errors=[{"loc": ["body", "inputs", index], "msg": "point cloud without normals"}])


# ---- several scans of one object (an sdf job listing several point-cloud uploads) ------------------

MAX_SCAN_INPUTS = 64
"""Uploads an sdf job may list: overlapping scans (views) of one object, registered and merged by the
worker (nfcore.scans). Every other task takes exactly one."""
SCAN_TASK = "sdf"


def _inputs_problem(i: int, detail: str, msg: str, code: str = "invalid_input") -> ProblemError:
    return ProblemError(422, code, detail, errors=[{"loc": ["body", "inputs", i], "msg": msg}])


def find_fit_inputs(services: Services, owner: str, upload_ids: Sequence[str], task: str) -> list[Upload]:
    """The uploads a fit names, in order.

    One id: 404 when it is not the key's upload (as always). Several (task sdf only, at most
    `MAX_SCAN_INPUTS`): 422 naming `["body", "inputs", i]` for the first id past the limit, for an id
    listed twice or unknown, and for the second id of a task that takes one input.
    """
    ids = list(upload_ids)
    if len(ids) == 1:
        up = services.store.get_upload(ids[0], owner)
        if up is None:
            raise ProblemError(404, "upload_not_found", f"no upload with id {ids[0]!r}",
                               errors=[{"loc": ["body", "inputs", 0], "msg": "unknown upload"}])
        return [up]
    if task != SCAN_TASK:
        raise _inputs_problem(1, f"task {task!r} takes one input ({len(ids)} listed); several inputs are scans of one "
                              f"object, which task {SCAN_TASK!r} merges", "one input only", "too_many_inputs")
    if len(ids) > MAX_SCAN_INPUTS:
        raise _inputs_problem(MAX_SCAN_INPUTS, f"{len(ids)} uploads listed; an {SCAN_TASK} job merges at most "
                              f"{MAX_SCAN_INPUTS} scans", f"at most {MAX_SCAN_INPUTS} inputs", "too_many_inputs")
    uploads, seen = [], {}
    for i, uid in enumerate(ids):
        if uid in seen:
            raise _inputs_problem(i, f"upload {uid} is listed twice (inputs[{seen[uid]}] and inputs[{i}])",
                                  "listed twice")
        seen[uid] = i
        up = services.store.get_upload(uid, owner)
        if up is None:
            raise _inputs_problem(i, f"inputs[{i}]: no upload with id {uid!r}", "unknown upload", "upload_not_found")
        uploads.append(up)
    return uploads


def check_inputs(spec: MethodSpec, config, uploads: Sequence[Upload]) -> None:
    """`check_input` for each upload; several must be point clouds (scans) of an sdf job."""
    if len(uploads) > 1 and spec.task != SCAN_TASK:
        raise _inputs_problem(1, f"task {spec.task!r} takes one input ({len(uploads)} listed)", "one input only",
                              "too_many_inputs")
    if len(uploads) > MAX_SCAN_INPUTS:
        raise _inputs_problem(MAX_SCAN_INPUTS, f"an {SCAN_TASK} job merges at most {MAX_SCAN_INPUTS} scans",
                              f"at most {MAX_SCAN_INPUTS} inputs", "too_many_inputs")
    for i, up in enumerate(uploads):
        check_input(spec, config, up, i)
        if len(uploads) > 1 and up.kind != "pointcloud":
            raise _inputs_problem(i, f"inputs[{i}]: upload {up.id} ({up.filename}) is a {up.kind}; several inputs are "
                                  "scans of one object and must be point clouds", f"a {up.kind} is not a scan")


def job_input_files(artifacts, job: Job) -> list[Path]:
    """What a fit job reads: its one input, or its scans in order (empty when they are gone)."""
    if len(job.inputs or []) > 1:
        files = artifacts.job_listed_inputs(job.id, "scans")
        return files if len(files) == len(job.inputs) else []
    one = artifacts.find_job_input(job.id)
    return [one] if one is not None else []


def _check_queue(services: Services, owner: str) -> None:
    s = services.settings
    queued = services.store.count_jobs([JobStatus.queued.value])
    # Without API keys everyone is one anonymous owner: only the global cap applies.
    mine = services.store.count_jobs([JobStatus.queued.value], owner=owner) if owner else 0
    if queued >= s.max_queue or mine >= s.max_queue_per_key:
        limit = s.max_queue if queued >= s.max_queue else s.max_queue_per_key
        raise ProblemError(429, "queue_full", f"{limit} jobs are already queued; try again later",
                           headers={"Retry-After": str(s.retry_after_s)})


def create_job(services: Services, owner: str, *, spec: MethodSpec | MetaTrainSpec | None, upload: Upload,
               name: str | None, metadata: dict, idempotency_key: str | None, fingerprint_extra: dict | None = None,
               retry_of: str | None = None, input_path=None, webhook: str | None = None,
               webhook_events: list[str] | None = None, spec_loc: tuple = ("body", "spec"),
               prior_fallback=None, more_inputs: Sequence[Upload] = (),
               input_paths: Sequence[Path] | None = None) -> tuple[Job, bool]:
    """Validate, insert, publish. Returns (job, replayed).

    Args:
        spec: the method as the client stated it (None = the defaults); stored as submitted, with
            the server's default preset filled in when it named none. A MetaTrainSpec makes a
            meta-train job (service/metatrain.py).
        spec_loc: where the spec sits in the request, for the `loc` of validation errors.
        prior_fallback: (prior id, a retried job's own copy of it), used when that stored prior was deleted since.
        more_inputs, input_paths: a meta-train job from a list of uploads (service/metatrain.py), or an
            sdf job of several scans of one object (`find_fit_inputs`; `input_paths` None = the uploads'
            own files): the uploads after `upload`, and the file of every input in order (the uploads'
            own, or a retried job's copies), of which the job gets its own copies.
    """
    s = services.settings
    spec = with_default_preset(services, spec)
    if webhook is not None:
        check_url(webhook, allow_private=s.webhook_allow_private)
        webhook_events = sorted(set(webhook_events or ["completed"]))
    elif webhook_events:
        raise ProblemError(422, "invalid_webhook", "webhook_events_filter needs a webhook URL",
                           errors=[{"loc": ["body", "webhook"], "msg": "missing"}])
    uploads = [upload, *more_inputs]
    payload = {"spec": spec.model_dump(mode="json"), "inputs": [u.id for u in uploads], "name": name, "metadata": metadata,
               **({"webhook": webhook, "webhook_events_filter": webhook_events} if webhook else {}),
               **(fingerprint_extra or {})}
    fingerprint = _fingerprint(payload)
    if idempotency_key:
        if len(idempotency_key) > 255:
            raise ProblemError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")
        existing = services.store.get_idempotency(owner, SCOPE, idempotency_key)
        if existing is not None:
            return _replay(services, owner, existing, fingerprint), True
    prior_src = None
    if isinstance(spec, MetaTrainSpec):
        metatrain.parse_config(spec, list(spec_loc), s)
        metatrain.check_inputs(uploads)
    else:
        configs = validate_spec(services, spec, list(spec_loc))
        config = next(iter(configs.values()))
        check_inputs(spec, config, uploads)
        # The prior must exist and be this key's now; the job then gets its own copy (service/priors.py).
        prior_src = priors.job_prior_source(services.priors, services.artifacts, owner, config, list(spec_loc),
                                            fallback=prior_fallback)
    _check_queue(services, owner)

    job_id = f"job_{uuid.uuid4().hex[:24]}"
    if more_inputs:
        src = None
        if input_paths is None and not isinstance(spec, MetaTrainSpec):  # a new job of several scans
            input_paths = upload_files(services.artifacts, uploads)
    else:
        src = input_path or services.artifacts.absolute(upload.path)
        if not src.is_file():
            raise ProblemError(409, "input_missing", f"the file of upload {upload.id} is gone (expired or deleted)")
    try:
        if src is None and not isinstance(spec, MetaTrainSpec):  # several scans of one object (sdf)
            services.artifacts.link_listed_inputs(input_paths or (), job_id, "scans")
        elif src is None:
            services.artifacts.link_listed_inputs(input_paths or (), job_id, "shapes")
        else:
            services.artifacts.link_input(src, job_id)
        if prior_src is not None:
            services.artifacts.link_prior(prior_src, job_id)
    except BaseException:
        services.artifacts.remove_job(job_id)
        raise
    now = utcnow()
    job = Job(
        id=job_id, owner=owner, name=name, task=spec.task, spec=spec.model_dump(mode="json"), config=None, device=None,
        queue=services.queue.queue_for(queue_device(services, spec)),
        inputs=[{"upload_id": u.id, "filename": u.filename, "kind": u.kind, "format": u.format,
                 "n_points": (u.report or {}).get("n_points"), "has_normals": (u.report or {}).get("has_normals"),
                 "sha256": u.sha256} for u in uploads],
        status=JobStatus.queued.value, attempt=0, max_attempts=s.max_attempts, retry_of=retry_of,
        metadata_=metadata or {}, created_at=now, updated_at=now, version=1,
    )
    key = None
    if idempotency_key:
        key = IdempotencyKey(owner=owner, scope=SCOPE, key=idempotency_key, fingerprint=fingerprint,
                             resource_id=job_id, created_at=now, expires_at=now + timedelta(seconds=s.idempotency_ttl_s))
    hook = [JobWebhook(job_id=job_id, url=webhook, events=webhook_events, done=False, created_at=now)] if webhook else []
    try:
        services.store.add_job(job, key, hook)
    except IdempotencyConflict as exc:
        services.artifacts.remove_job(job_id)
        return _replay(services, owner, exc.existing, fingerprint), True
    except BaseException:
        services.artifacts.remove_job(job_id)
        raise
    # Publish after commit: a worker that receives the id always finds the row.
    services.queue.publish(job)
    return services.store.get_job(job_id) or job, False


def _replay(services: Services, owner: str, existing: IdempotencyKey, fingerprint: str) -> Job:
    if existing.fingerprint != fingerprint:
        raise ProblemError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different request body; use a new key")
    job = services.store.get_job(existing.resource_id, owner)
    if job is None:
        raise ProblemError(409, "idempotency_key_stale", "the job created with this Idempotency-Key was deleted")
    return job


def get_job(services: Services, owner: str, job_id: str) -> Job:
    job = services.store.get_job(job_id, owner)
    if job is None:
        raise not_found("job", job_id)
    return job


def list_jobs(services: Services, owner: str, *, status: str | None, task: str | None, page_size: int,
              page_token: str | None, full: bool) -> dict:
    statuses = None
    if status:
        statuses = [p.strip() for p in status.split(",") if p.strip()]
        bad = [p for p in statuses if p not in STATUSES]
        if bad:
            raise ProblemError(422, "invalid_request", f"unknown status {bad[0]!r}; choose from {', '.join(STATUSES)}",
                               errors=[{"loc": ["query", "status"], "msg": f"unknown status {bad[0]!r}"}])
    before = decode_token(page_token) if page_token else None
    rows = services.store.list_jobs(owner, statuses=statuses, task=task, limit=page_size + 1, before=before)
    more = len(rows) > page_size
    rows = rows[:page_size]
    items = [job_public(services, j, full=full) for j in rows]
    if not full:  # a short listing leaves out each job's loss curve (up to 200 points)
        for item in items:
            if item["progress"]:
                item["progress"] = {k: v for k, v in item["progress"].items() if k != "curve"}
    return {"items": items, "next_page_token": encode_token(rows[-1]) if more else None}


def cancel_job(services: Services, owner: str, job_id: str) -> tuple[Job, int]:
    """Returns (job, http status): 200 canceled, 202 canceling; 409 for succeeded/failed."""
    job = get_job(services, owner, job_id)
    if job.status in (JobStatus.succeeded.value, JobStatus.failed.value):
        raise ProblemError(409, "job_finished", f"job {job_id} already {job.status}; nothing to cancel")
    status = services.store.request_cancel(job_id)
    if status == JobStatus.canceled.value and job.status == JobStatus.queued.value:
        services.queue.revoke(job_id)  # drop the message; a worker would skip it anyway
    job = get_job(services, owner, job_id)
    if job.status in (JobStatus.succeeded.value, JobStatus.failed.value):
        raise ProblemError(409, "job_finished", f"job {job_id} finished ({job.status}) before the cancel arrived")
    return job, (200 if job.status == JobStatus.canceled.value else 202)


def retry_job(services: Services, owner: str, job_id: str, *, preset: str | None = None,
              overrides: dict | None = None) -> Job:
    """A new job from a finished one's input and its stored spec (unchanged unless `preset`/`overrides` are given)."""
    old = get_job(services, owner, job_id)
    if old.status not in TERMINAL:
        raise ProblemError(409, "job_active", f"job {job_id} is {old.status}; retry a finished job")
    more, paths = [], None
    if old.task == META_TRAIN and len(old.inputs) > 1:
        # A meta-train job from a list of uploads: retried from its own copies (service/metatrain.py).
        (upload, *more), paths = retry_inputs(services.store, services.artifacts, owner, old, "shapes")
        src = None
    elif len(old.inputs) > 1:  # several scans of one object: retried from the job's own copies
        (upload, *more), paths = retry_inputs(services.store, services.artifacts, owner, old, "scans")
        src = None
    else:
        src = services.artifacts.find_job_input(job_id)
        if src is None:
            raise ProblemError(410, "input_expired", f"the input of job {job_id} has expired; upload it again")
        inp = old.inputs[0]
        upload = services.store.get_upload(inp["upload_id"]) or Upload(
            id=inp["upload_id"], owner=owner, filename=inp["filename"], path="", size=0, sha256=inp.get("sha256", ""),
            media_type="application/octet-stream", format=inp["format"], kind=inp["kind"],
            report={"kind": inp["kind"], "has_normals": inp.get("has_normals"), "n_points": inp.get("n_points")})
    hook = services.webhooks.subscription(old.id)
    changes = {k: v for k, v in (("preset", preset), ("overrides", overrides)) if v is not None}
    if old.task == META_TRAIN:
        if changes:
            raise ProblemError(422, "invalid_options", "a meta-train job has no preset or overrides; it is retried "
                               "with its own spec (submit a new one to change it)",
                               errors=[{"loc": ["body", next(iter(changes))], "msg": "not for a meta-train job"}])
        spec = MetaTrainSpec.model_validate(old.spec)
    else:
        spec = MethodSpec.model_validate(old.spec)
    if changes and old.task != META_TRAIN:
        try:
            spec = MethodSpec.model_validate({**spec.model_dump(), **changes})
        except ValidationError as exc:
            raise ProblemError(422, "invalid_options", "invalid retry: " + "; ".join(e["msg"] for e in exc.errors()),
                               errors=_validation_errors(exc, ["body"])) from exc
    job, _ = create_job(services, owner, spec=spec, upload=upload, name=old.name, metadata=old.metadata_ or {},
                        idempotency_key=None, retry_of=old.id, input_path=src, spec_loc=("body",),
                        webhook=hook.url if hook else None, webhook_events=hook.events if hook else None,
                        prior_fallback=(_prior_id(old.spec), services.artifacts.job_prior(job_id)),
                        more_inputs=more, input_paths=paths)
    return job


def _prior_id(spec: dict) -> str | None:
    """The prior id a stored method spec names, if any."""
    prior = (spec.get("overrides") or {}).get("prior")
    return prior.get("id") if isinstance(prior, dict) else None


def delete_job(services: Services, owner: str, job_id: str) -> None:
    job = get_job(services, owner, job_id)
    if job.status not in TERMINAL:
        services.store.request_cancel(job_id)
        services.queue.revoke(job_id, terminate=job.status != JobStatus.queued.value)
    services.store.delete_job(job_id)
    services.webhooks.delete_for_job(job_id)
    services.artifacts.remove_job(job_id)


def read_logs(services: Services, owner: str, job_id: str, offset: int, limit: int) -> dict:
    job = get_job(services, owner, job_id)
    path = services.artifacts.log_path(job_id)
    lines: list[str] = []
    if path.is_file():
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f):
                if i < offset:
                    continue
                if len(lines) >= limit:
                    break
                if not line.endswith("\n"):
                    break  # a line still being written
                lines.append(line.rstrip("\n"))
    return {"lines": lines, "next_offset": offset + len(lines), "complete": job.status in TERMINAL}


def artifacts_of(services: Services, owner: str, job_id: str) -> tuple[Job, list[dict]]:
    job = get_job(services, owner, job_id)
    if job.artifacts_expired:
        raise ProblemError(410, "artifacts_expired", f"the artifacts of job {job_id} expired at {job.expires_at}")
    if job.status != JobStatus.succeeded.value:
        raise ProblemError(409, "job_not_succeeded", f"job {job_id} is {job.status}; artifacts exist once it succeeded")
    entries = services.artifacts.manifest(job_id)
    if entries is None:
        raise ProblemError(410, "artifacts_expired", f"the artifacts of job {job_id} are gone")
    return job, entries
