"""Jobs: create (JSON, one-shot multipart, or meta-train), list, get, cancel, retry, delete, logs, server-sent events."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Body, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.conditional import etag_matches
from api.deps import OwnerDep, ServicesDep
from api.errors import ProblemError
from api.schemas import (
    JobCreate,
    JobList,
    JobPublic,
    JobRequest,
    LogLines,
    MetaTrainJobCreate,
    RetryRequest,
    WebhookDeliveryList,
    problems,
)
from api.services import uploads
from nfcore.vocab import TaskName
from service import jobs as svc
from service import metatrain
from service.inputs import upload_files
from service.webhooks import delivery_public
from store import TERMINAL

router = APIRouter(tags=["jobs"])

_CREATED = {201: {"description": "created; Location names the job"},
            200: {"model": JobPublic, "description": "replayed (same Idempotency-Key and body)"}}


def _created(response: Response, job, replayed: bool) -> None:
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"


@router.post("/jobs", status_code=201, response_model=JobPublic,
             responses={**_CREATED, **problems(401, 404, 409, 422, 429, 507)},
             summary="Create a job from an upload (sdf: or from several scans of one object)")
def create_job(
    body: Annotated[JobCreate, Body()],
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(description="Retry-safe creation: same key + same body = same job.")] = None,
) -> dict:
    """Validates the method spec (resolved for every device that may run it) and the input against the task,
    queues the job, and answers 201 with the job (`status: queued`). 429 with Retry-After when the queue is full.

    `inputs` is one upload, or for task `sdf` up to 64 point-cloud uploads that are overlapping scans (views)
    of one object in one frame: the worker registers them (`overrides.input.registration`: auto, on, off) and
    merges them into one surface; the job keeps its own copy of each and its metrics gain `scans`. A list
    entry that is unknown, another key's, listed twice or not a point cloud, a second input for another task,
    or one past the 64th, is a 422 naming `["body", "inputs", i]`; a single unknown id is a 404."""
    task = body.spec.task if body.spec is not None else "sdf"
    first, *more = svc.find_fit_inputs(services, owner, body.inputs, task)
    job, replayed = svc.create_job(
        services, owner, spec=body.spec, upload=first, name=body.name, metadata=body.metadata,
        idempotency_key=idempotency_key, webhook=body.webhook, webhook_events=body.webhook_events_filter,
        more_inputs=more,
    )
    _created(response, job, replayed)
    return svc.job_public(services, job)


@router.post("/jobs/meta-train", status_code=201, response_model=JobPublic,
             responses={**_CREATED, **problems(401, 404, 409, 422, 429, 507)},
             summary="Create a meta-train job: learn a prior from a zip of shapes or a list of mesh/cloud uploads")
def create_meta_train_job(
    body: Annotated[MetaTrainJobCreate, Body()],
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(description="Retry-safe creation: same key + same body = same job.")] = None,
) -> dict:
    """`inputs` is one upload of kind `shapes` (a zip), or 2 to `NFRECON_META_MAX_INPUTS` uploads of your own, each a
    mesh or a point cloud with normals; the job keeps its own copy of each, so deleting an upload after submitting
    changes nothing for it (nor for a retry). A list entry that is unknown, another key's, listed twice, a zip, an
    image or a cloud without normals is a 422 naming `["body", "inputs", i]`; a single unknown zip id is a 404.

    Runs on the gpu queue (the cpu queue with `spec.device: cpu` or a CPU-only server), like a fit: progress
    (stage `load`, then `meta-train`), cancel, retry and delete as for other jobs. On success the prior is
    registered as one of your priors (listed by `GET /v1/priors`): its id is the job's `metrics.prior_id`, and
    `prior.safetensors` an artifact."""
    uploads = metatrain.find_inputs(services.store, owner, body.inputs, services.settings)
    files = upload_files(services.artifacts, uploads) if len(uploads) > 1 else None
    job, replayed = svc.create_job(
        services, owner, spec=body.spec, upload=uploads[0], more_inputs=uploads[1:], input_paths=files,
        name=body.name, metadata=body.metadata, idempotency_key=idempotency_key, webhook=body.webhook,
        webhook_events=body.webhook_events_filter,
    )
    _created(response, job, replayed)
    return svc.job_public(services, job)


@router.post("/jobs/form", status_code=201, response_model=JobPublic,
             responses={**_CREATED, **problems(401, 413, 415, 422, 429, 507)},
             summary="Create a job in one request: multipart `job` (JSON) + `file`")
async def create_job_form(
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description="The input file (small inputs; use /v1/uploads for large ones).")],
    job: Annotated[str, Form(description="JSON: a job request without `inputs` (spec, name, metadata, webhook).",
                             examples=['{"spec": {"task": "sdf", "preset": "fast"}}'])] = "{}",
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict:
    try:
        parsed = JobRequest.model_validate_json(job or "{}")
    except ValidationError as exc:
        errors = [{"loc": ["body", "job", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ProblemError(422, "invalid_request", "invalid job: " + "; ".join(e["msg"] for e in errors[:3]),
                           errors=errors) from exc
    upload = await uploads.upload_from_form_file(services, owner, file, content_type=file.content_type)
    try:
        created, replayed = await anyio.to_thread.run_sync(lambda: svc.create_job(
            services, owner, spec=parsed.spec, upload=upload, name=parsed.name, metadata=parsed.metadata,
            idempotency_key=idempotency_key, fingerprint_extra={"inputs": [upload.sha256]}, webhook=parsed.webhook,
            webhook_events=parsed.webhook_events_filter, spec_loc=("body", "job", "spec")))
    except BaseException:
        uploads.delete_upload(services, owner, upload.id)
        raise
    if replayed:
        uploads.delete_upload(services, owner, upload.id)
    _created(response, created, replayed)
    return svc.job_public(services, created)


@router.get("/jobs", response_model=JobList, responses=problems(401, 422), summary="List your jobs, newest first")
def list_jobs(
    services: ServicesDep,
    owner: OwnerDep,
    status: Annotated[str | None, Query(description="Comma-separated statuses.", examples=["queued,running"])] = None,
    task: Annotated[TaskName | Literal["meta-train"] | None, Query(description="Only jobs of this task.")] = None,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(description="next_page_token of the previous page.")] = None,
    view: Annotated[str, Query(pattern="^(basic|full)$", description="`full` adds the resolved config.")] = "basic",
) -> dict:
    return svc.list_jobs(services, owner, status=status, task=task, page_size=page_size, page_token=page_token,
                         full=view == "full")


@router.get("/jobs/{job_id}", response_model=JobPublic,
            responses={304: {"description": "unchanged since the ETag in If-None-Match"}, **problems(401, 404)},
            summary="A job: status, stage, progress, ETA, queue position, metrics, error")
def get_job(job_id: str, services: ServicesDep, owner: OwnerDep,
            if_none_match: Annotated[str | None, Header()] = None):
    """The poll path: one query (job, queue position, webhook). Send the ETag back in If-None-Match to get
    304 with no body while nothing changed; Retry-After says when to look again."""
    view = svc.get_job_view(services, owner, job_id)
    headers = svc.poll_headers(services, view)
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    body = JobPublic.model_validate(svc.view_public(view))
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic,
             responses={202: {"model": JobPublic, "description": "running: now `canceling`"}, **problems(401, 404, 409)},
             summary="Cancel a job (idempotent)")
def cancel_job(job_id: str, response: Response, services: ServicesDep, owner: OwnerDep) -> dict:
    """Queued: canceled at once. Running: `canceling`; the worker stops at its next progress report (the reaper
    kills it after `cancel_grace_s`). 409 once succeeded or failed."""
    job, status = svc.cancel_job(services, owner, job_id)
    response.status_code = status
    return svc.job_public(services, job)


@router.post("/jobs/{job_id}/retry", status_code=201, response_model=JobPublic,
             responses=problems(401, 404, 409, 410, 422, 429, 507),
             summary="Run a finished job again as a new job (`retry_of` names the original)")
def retry_job(job_id: str, response: Response, services: ServicesDep, owner: OwnerDep,
              body: Annotated[RetryRequest | None, Body()] = None) -> dict:
    """The new job takes the original's inputs from the original's own copies (all of them for a job of several
    scans or shapes, in their order), so it works after the uploads were deleted; 410 once they expired."""
    body = body or RetryRequest()
    job = svc.retry_job(services, owner, job_id, preset=body.preset, overrides=body.overrides)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return svc.job_public(services, job)


@router.delete("/jobs/{job_id}", status_code=204, responses=problems(401, 404),
               summary="Delete a job: cancel it if active, remove its files and record")
def delete_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    svc.delete_job(services, owner, job_id)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/logs", response_model=LogLines, responses=problems(401, 404), summary="Log lines from an offset")
def job_logs(job_id: str, services: ServicesDep, owner: OwnerDep,
             offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict:
    return svc.read_logs(services, owner, job_id, offset, limit)


@router.get("/jobs/{job_id}/events", responses={200: {"content": {"text/event-stream": {}},
                                                     "description": "events: status, log, completed"},
                                               **problems(401, 404)},
            summary="Server-sent events: status/progress changes and log lines until the job ends")
async def job_events(job_id: str, request: Request, services: ServicesDep, owner: OwnerDep) -> StreamingResponse:
    await anyio.to_thread.run_sync(svc.get_job, services, owner, job_id)  # 404 before the stream starts

    async def stream():
        version, offset, idle = None, 0, 0.0
        while True:
            job = await anyio.to_thread.run_sync(services.store.get_job, job_id, owner)
            if job is None:
                yield "event: deleted\ndata: {}\n\n"
                return
            if job.version != version:
                version = job.version
                body = JobPublic.model_validate(svc.job_public(services, job, full=False))
                yield f"event: status\nid: {job.version}\ndata: {body.model_dump_json()}\n\n"
                idle = 0.0
            logs = await anyio.to_thread.run_sync(svc.read_logs, services, owner, job_id, offset, 1000)
            for line in logs["lines"]:
                yield f"event: log\ndata: {json.dumps(line)}\n\n"
            offset = logs["next_offset"]
            if job.status in TERMINAL:
                yield f"event: completed\ndata: {json.dumps({'id': job.id, 'status': job.status})}\n\n"
                return
            if await request.is_disconnected():
                return
            await anyio.sleep(services.settings.sse_poll_s)
            idle += services.settings.sse_poll_s
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/jobs/{job_id}/webhooks", response_model=WebhookDeliveryList, responses=problems(401, 404),
            summary="The job's webhook deliveries: event, attempts, last answer")
def job_webhooks(job_id: str, services: ServicesDep, owner: OwnerDep) -> dict:
    svc.get_job(services, owner, job_id)
    return {"items": [delivery_public(d) for d in services.webhooks.deliveries(job_id)]}
