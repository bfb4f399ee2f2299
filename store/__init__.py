"""Job store (SQLAlchemy) and artifact directory, shared by the API, the worker and the reaper."""

from store.artifacts import ArtifactStore, file_sha256, media_type, write_atomic
from store.db import create_schema, make_engine, sqlite_url
from store.jobs import IdempotencyConflict, JobStore
from store.models import Base, IdempotencyKey, Job, Upload, utcnow
from store.states import ACTIVE, RETRYABLE, TERMINAL, ErrorCode, JobStatus, job_error

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
    "Upload",
    "create_schema",
    "file_sha256",
    "job_error",
    "make_engine",
    "media_type",
    "sqlite_url",
    "utcnow",
    "write_atomic",
]
