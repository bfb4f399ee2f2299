"""Job store (SQLAlchemy), prior store, webhook outbox and artifact directory, shared by the API, the worker and the reaper."""

from store.artifacts import ArtifactStore, disk_full_error, file_sha256, free_bytes, media_type, write_atomic
from store.db import SchemaMismatch, create_schema, make_engine, sqlite_url
from store.jobs import IdempotencyConflict, JobStore, JobView
from store.models import Base, IdempotencyKey, Job, JobWebhook, Prior, Upload, WebhookDelivery, utcnow
from store.priors import PriorStore
from store.states import ACTIVE, RETRYABLE, TERMINAL, ErrorCode, JobStatus, job_error
from store.webhooks import EVENTS as WEBHOOK_EVENTS
from store.webhooks import WebhookStore

__all__ = [
    "ACTIVE",
    "RETRYABLE",
    "TERMINAL",
    "ArtifactStore",
    "Base",
    "ErrorCode",
    "IdempotencyConflict",
    "IdempotencyKey",
    "Job",
    "JobStatus",
    "JobStore",
    "JobView",
    "JobWebhook",
    "Prior",
    "PriorStore",
    "Upload",
    "WEBHOOK_EVENTS",
    "WebhookDelivery",
    "WebhookStore",
    "create_schema",
    "disk_full_error",
    "SchemaMismatch",
    "file_sha256",
    "free_bytes",
    "job_error",
    "make_engine",
    "media_type",
    "sqlite_url",
    "utcnow",
    "write_atomic",
]
