"""Request and response models of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfcore.analysis import CloudAnalysis
from nfcore.spec import MethodSpec
from nfcore.vocab import DeviceKind, InputKind, MethodName, PresetName, TaskName
from service.metatrain import MetaTrainSpec

JobStatusName = Literal["queued", "running", "canceling", "succeeded", "failed", "canceled"]
WebhookEventName = Literal["start", "completed"]

_WEBHOOK = Field(None, max_length=2048, description="http(s) URL that receives a signed POST for each event in "
                 "`webhook_events_filter` (see the webhooks section and GET /v1/webhooks/secret).",
                 examples=["https://example.com/hooks/nfrecon"])
_WEBHOOK_EVENTS = Field(None, min_length=1, description='Events to send: "start" (a worker picked the job up) '
                        'and/or "completed" (succeeded, failed or canceled). Default: ["completed"].')


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Path of the offending field, e.g. ['options', 'train', 'steps'].")
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable and machine-readable."""

    type: str = Field(examples=["https://nfrecon.dev/problems/job-not-found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no job with id 'job_123'"])
    code: str = Field(examples=["job_not_found"])
    instance: str | None = Field(None, examples=["/v1/jobs/job_123"])
    errors: list[ValidationIssue] | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {s: {"model": Problem, "content": {"application/problem+json": {}}} for s in statuses}


# ---------------------------------------------------------------------------------------------
# system


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    database: str
    broker: str
    workers: int = Field(0, description="Live workers. 0 does not make the API unready (jobs wait queued), "
                         "but nothing will run until one starts.")


class Limits(BaseModel):
    max_upload_bytes: int
    max_form_bytes: int
    max_queue: int
    max_queue_per_key: int
    max_runtime_s: int
    max_attempts: int
    max_prior_bytes: int = Field(description="Largest prior file (POST /v1/priors) or prior a meta-train job may make.")
    meta_max_steps: int = Field(description="Most outer steps of a meta-train job.")
    meta_max_shapes: int = Field(description="Most shape files in a meta-training zip.")


class QueueInfo(BaseModel):
    queued: int
    running: int


class Retention(BaseModel):
    jobs_ttl_s: int
    uploads_ttl_s: int
    idempotency_ttl_s: int


class WorkerInfo(BaseModel):
    hostname: str
    queues: list[str]
    pid: int | None = None
    started_at: datetime | None = None
    last_seen: datetime | None = None


class Info(BaseModel):
    name: str = "nfrecon"
    version: str
    limits: Limits
    queue: QueueInfo
    retention: Retention
    auth: bool = Field(description="Whether bearer API keys are required.")
    workers: list[WorkerInfo] = Field(default_factory=list,
                                      description="Workers seen in the last few seconds and the queues they serve.")


# ---------------------------------------------------------------------------------------------
# methods


class MethodSummary(BaseModel):
    name: TaskName = Field(description="The task a spec names (`method.task` of a job).")
    title: str
    description: str
    input_kinds: list[InputKind]
    input_formats: list[str] = Field(description="File extensions accepted for this task.")
    requires_normals: bool
    output_formats: list[str]
    presets: list[PresetName]
    methods: list[MethodName] = Field(description="How this task can be fitted (a spec's `method`): `neural` trains a "
                                      "neural field, `kernel` is the training-free kernel solve (sdf only).")
    available: bool
    links: dict[str, str]


class MethodDetail(MethodSummary):
    spec_schema: dict[str, Any] = Field(description="JSON Schema of a job's `spec` (a MethodSpec: task, preset, "
                                        "overrides); `overrides` is a partial MethodConfig.")
    preset_options: dict[DeviceKind, dict[PresetName, dict[str, Any]]] = Field(
        description="What each preset sets, per device: a worker resolves the spec for the device it runs on.")
    method_preset_options: dict[MethodName, dict[DeviceKind, dict[PresetName, dict[str, Any]]]] = Field(
        description="`preset_options` for each of the task's methods (`neural` equals `preset_options`).")


class MethodList(BaseModel):
    items: list[MethodSummary]


# ---------------------------------------------------------------------------------------------
# uploads


class InputReport(BaseModel):
    """What the service found in an input file."""

    model_config = ConfigDict(extra="allow")
    kind: str
    format: str
    n_points: int | None = None
    has_normals: bool | None = None
    bbox_min: list[float] | None = None
    bbox_max: list[float] | None = None
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    ignored: list[str] = Field(default_factory=list, description="Clouds: what the file holds that is not used "
                               "(`vertex.<property>`, `element <name> (<count> rows)`, `obj_info <text>`, "
                               "`comment lines (<count>)`).")
    analysis: CloudAnalysis | None = Field(None, description="Clouds: point spacing, noise, outlier fraction, "
                                           "closed or open, and how far given normals can be trusted (input units).")


class UploadPublic(BaseModel):
    id: str = Field(examples=["upl_3f9c2d1e8a7b4c6d9e0f1a2b"])
    filename: str = Field(examples=["bunny.ply"])
    size: int
    sha256: str
    media_type: str
    kind: str
    format: str
    validation: InputReport
    created_at: datetime
    expires_at: datetime | None
    links: dict[str, str]


# ---------------------------------------------------------------------------------------------
# jobs


class JobRequest(BaseModel):
    """A job without its input: the method spec, a name, client metadata and a webhook (the `job` part of /jobs/form)."""

    model_config = ConfigDict(extra="forbid")

    spec: MethodSpec | None = Field(None, description="The method: task, preset and overrides (a partial MethodConfig merged "
                                      "onto the preset); stored as submitted. Default: an SDF with the server's "
                                      "default preset. See GET /v1/methods/{task}.")
    name: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque client data, returned as is.")
    webhook: str | None = _WEBHOOK
    webhook_events_filter: list[WebhookEventName] | None = _WEBHOOK_EVENTS


class JobCreate(JobRequest):
    """A job: which upload to fit (or, for an sdf, which scans of one object to merge), and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": ["upl_3f9c2d1e8a7b4c6d9e0f1a2b"], "name": "bunny",
                 "spec": {"task": "sdf", "preset": "fast",
                            "overrides": {"train": {"steps": 1000}, "precondition": {"initial_scale": 0.02},
                                          "extraction": {"formats": ["ply", "obj"]}}}},
                {"inputs": ["upl_0a1b2c3d4e5f60718293a4b5", "upl_1b2c3d4e5f60718293a4b5c6", "upl_2c3d4e5f60718293a4b5c6d7"],
                 "name": "statue, three scans",
                 "spec": {"task": "sdf", "method": "kernel", "overrides": {"input": {"registration": "auto"}}}},
            ]
        },
    )

    # The 64 is checked by the service (service.jobs.find_fit_inputs), so that a list past it is a 422
    # naming the first entry too many, ["body", "inputs", 64], like every other bad entry.
    inputs: list[str] = Field(
        min_length=1, json_schema_extra={"maxItems": 64},
        description="Upload ids: one input; or, for task `sdf`, 2 to 64 point-cloud uploads that are overlapping "
                    "scans (views) of one object in one frame, registered (`overrides.input.registration`) and "
                    "merged into one surface by the worker. Every other task takes exactly one.")


class MetaTrainJobCreate(BaseModel):
    """A meta-train job: which shapes (a zip upload, or a list of mesh and cloud uploads) to learn a prior from, and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"inputs": ["upl_3f9c2d1e8a7b4c6d9e0f1a2b"], "name": "chairs",
             "spec": {"task": "meta-train", "config": {"steps": 300, "inner_steps": 5}}},
            {"inputs": ["upl_0a1b2c3d4e5f60718293a4b5", "upl_1b2c3d4e5f60718293a4b5c6", "upl_2c3d4e5f60718293a4b5c6d7"],
             "name": "shoes", "spec": {"config": {"steps": 300}, "device": "cpu"}},
        ]},
    )

    inputs: list[str] = Field(min_length=1, max_length=10_000, description=(
        "Either one upload of kind `shapes`: a zip of meshes (.obj .off .stl .ply .glb) or oriented clouds of one "
        "kind, at least 2; or 2 to the server's `meta_max_inputs` uploads of your own, each a `mesh` or a "
        "`pointcloud` with normals (one shape each). The job keeps its own copy of every file."))
    spec: MetaTrainSpec = Field(default_factory=MetaTrainSpec)
    name: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque client data, returned as is.")
    webhook: str | None = _WEBHOOK
    webhook_events_filter: list[WebhookEventName] | None = _WEBHOOK_EVENTS


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preset: PresetName | None = Field(None, description="Another preset; default: the original job's.")
    overrides: dict[str, Any] | None = Field(None, description="Replace the original overrides (default: keep them).")


class CurvePoint(BaseModel):
    step: int
    loss: dict[str, float | None] = Field(default_factory=dict)
    noise_scale: float | None = None


class JobProgress(BaseModel):
    phase: str | None = Field(None, examples=["train"])
    fraction: float = Field(0.0, ge=0, le=1, examples=[0.42])
    step: int | None = None
    total_steps: int | None = None
    loss: dict[str, float | None] = Field(default_factory=dict)
    noise_scale: float | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float | None = None
    message: str | None = None
    curve: list[CurvePoint] = Field(default_factory=list, description="The training's loss terms and noise scale "
                                    "so far, thinned to at most 200 points: what the job page plots.")


class JobError(BaseModel):
    type: str
    title: str
    code: Literal["invalid_input", "method_diverged", "out_of_memory", "timeout", "worker_lost", "disk_full",
                  "internal"] = Field(description="`disk_full`: the server's data directory filled up while the job "
                                      "wrote its outputs (nothing of it is served; retry once there is room).")
    detail: str
    retryable: bool
    log_tail: list[str] = Field(default_factory=list)


class JobInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    upload_id: str
    filename: str
    kind: str
    format: str
    n_points: int | None = None
    has_normals: bool | None = None


class JobPublic(BaseModel):
    id: str = Field(examples=["job_9b1d0c6e2f3a4b5c8d7e6f01"])
    name: str | None = None
    spec: MethodSpec | MetaTrainSpec = Field(description="The method spec exactly as submitted (a MetaTrainSpec, "
                                             "`task: meta-train`, for a meta-train job).")
    status: JobStatusName
    stage: str | None = Field(None, description="load, train, extract, evaluate, write, done; meta-train jobs: "
                              "load, meta-train, write, done")
    progress: JobProgress | None = None
    queue_position: int | None = Field(None, description="1 = next to run; null when not queued.")
    attempt: int
    max_attempts: int
    inputs: list[JobInput]
    device: DeviceKind | None = Field(None, description="The device the worker resolved the spec for and ran it on.")
    config: dict[str, Any] | None = Field(None, description="The MethodConfig the worker resolved the spec to, for its "
                                          "device (once a worker started the job; view=full or GET by id).")
    error: JobError | None = None
    metrics: dict[str, Any] | None = Field(None, description="Quality and time figures; a succeeded meta-train job's "
                                           "`prior_id` names the prior it registered (GET /v1/priors/{id}).")
    retry_of: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(None, description="When the artifacts are deleted (the record stays).")
    artifacts_expired: bool = False
    webhook: str | None = Field(None, description="The job's webhook URL (single-job views and view=full).")
    webhook_events_filter: list[WebhookEventName] | None = None
    links: dict[str, str]


class JobList(BaseModel):
    items: list[JobPublic]
    next_page_token: str | None = None


class LogLines(BaseModel):
    lines: list[str]
    next_offset: int = Field(description="Pass as `offset` to get the lines after these.")
    complete: bool = Field(description="The job is finished: no more lines will come.")


class Artifact(BaseModel):
    name: str = Field(examples=["mesh.ply"])
    media_type: str
    size: int
    sha256: str
    url: str


class ArtifactList(BaseModel):
    items: list[Artifact]
    zip_url: str


class WebhookDeliveryPublic(BaseModel):
    """One event of a job and how sending it went."""

    id: str = Field(description="The `webhook-id` header of every attempt (deduplicate on it).")
    event: WebhookEventName
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    next_attempt_at: datetime | None = Field(None, description="When the next attempt is due (pending only).")
    delivered_at: datetime | None = None


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryPublic]


class WebhookSecret(BaseModel):
    key: str = Field(description="Standard Webhooks secret `whsec_<base64>`: verify `webhook-signature` with it.")


class WebhookEvent(BaseModel):
    """The body POSTed to a job's webhook."""

    type: Literal["job.started", "job.completed"]
    timestamp: datetime
    data: JobPublic = Field(description="The job as GET /v1/jobs/{id} returns it when the event is sent.")


# ---------------------------------------------------------------------------------------------
# priors


class PriorField(BaseModel):
    """The neural field a prior's weights belong to (it replaces a job's configured field)."""

    encoding: dict[str, Any] = Field(examples=[{"type": "identity"}])
    network: dict[str, Any] = Field(examples=[{"type": "mlp", "hidden_features": 128, "hidden_layers": 3}])


class PriorPublic(BaseModel):
    """A stored meta-learned prior (MetaSDF): name it in a job as `spec.overrides.prior.id`."""

    id: str = Field(examples=["pri_5a0c9e2b7d1f4e3a8b6c0d9e"])
    name: str = Field(examples=["chairs.safetensors"], description="The uploaded file's name, or the meta-train job's.")
    size: int
    sha256: str
    created_at: datetime
    source_job: str | None = Field(None, description="The meta-train job that made it (null: uploaded).")
    field: PriorField
    inner_steps: int = Field(description="SGD steps with the learned learning rates it was meta-trained for "
                             "(a job's default; `overrides.prior.inner_steps` changes it).")
    batch_size: int
    algorithm: str | None = Field(None, examples=["maml"])
    info: dict[str, Any] = Field(default_factory=dict, description="How it was made (algorithm, meta steps, shapes, ...).")
    links: dict[str, str]


class PriorList(BaseModel):
    items: list[PriorPublic]
    next_page_token: str | None = None
