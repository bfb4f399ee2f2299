"""Job store (SQLAlchemy), webhook outbox and artifact directory, shared by the API, the worker and the reaper."""

from store.artifacts import ArtifactStore, file_sha256, media_type, write_atomic
from store.db import SchemaMismatch, create_schema, make_engine, sqlite_url
from store.jobs import IdempotencyConflict, JobStore
from store.models import Base, IdempotencyKey, Job, JobWebhook, Upload, WebhookDelivery, utcnow
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
    "JobWebhook",
    "Upload",
    "WEBHOOK_EVENTS",
    "WebhookDelivery",
    "WebhookStore",
    "create_schema",
    "SchemaMismatch",
    "file_sha256",
    "job_error",
    "make_engine",
    "media_type",
    "sqlite_url",
    "utcnow",
    "write_atomic",
]
