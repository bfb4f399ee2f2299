"""SQLAlchemy tables: jobs, uploads, priors, idempotency keys, webhooks. The job table is the source of truth."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One reconstruction job; every state change is a conditional UPDATE on this row."""

    __tablename__ = "nfrecon_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(32))
    """The spec's task (a column of its own for filtering)."""
    spec: Mapped[dict] = mapped_column(JSON)
    """The MethodSpec exactly as submitted (task, preset, overrides); retry re-submits it."""
    config: Mapped[dict | None] = mapped_column(JSON)
    """The MethodConfig the worker resolved the spec to, for the device it ran on (None until then)."""
    device: Mapped[str | None] = mapped_column(String(16))
    """The device the worker resolved and ran the spec for ("cpu" or "cuda")."""
    inputs: Mapped[list] = mapped_column(JSON, default=list)
    queue: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[dict | None] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[dict | None] = mapped_column(JSON)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    retry_of: Mapped[str | None] = mapped_column(String(40))
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    artifacts_expired: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped on every write; the ETag of GET /v1/jobs/{id}."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_nfrecon_jobs_owner_created", "owner", "created_at", "id"),)


class Upload(Base):
    """An uploaded input file, validated on arrival; stored under an id, never under its filename."""

    __tablename__ = "nfrecon_uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    """Relative to the data directory."""
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Prior(Base):
    """A meta-learned prior (nfcore.meta) a key uploaded or a meta-train job produced; kept until deleted.

    A table of its own, so that an existing database gains it by `create_all` without a migration.
    """

    __tablename__ = "nfrecon_priors"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)
    name: Mapped[str] = mapped_column(String(255))
    """A display name (the uploaded file's name, or the job's); never used as a path."""
    path: Mapped[str] = mapped_column(Text)
    """Relative to the data directory."""
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    header: Mapped[dict] = mapped_column(JSON)
    """The prior's header as nfcore read it: encoding, network, inner_steps, batch_size, sdf, precondition, info."""
    source_job: Mapped[str | None] = mapped_column(String(40))
    """The meta-train job that made it (None: uploaded)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_nfrecon_priors_owner_created", "owner", "created_at", "id"),)


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the same key and body replay the first response."""

    __tablename__ = "nfrecon_idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobWebhook(Base):
    """A job's webhook subscription: where to POST which events.

    A table of its own (not columns of the job table) so that an existing job database gains it by
    `create_all` without a migration.
    """

    __tablename__ = "nfrecon_job_webhooks"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(JSON)
    """Subset of ("start", "completed")."""
    done: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    """Every event that will ever happen to the job has been queued for delivery."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event of one job to POST (a transactional outbox row), retried with backoff until a 2xx."""

    __tablename__ = "nfrecon_webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """Sent as the `webhook-id` header: the receiver's deduplication key (the same on every retry)."""
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending, delivered, failed (out of attempts, or the receiver answered 410 Gone)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """A dispatcher's lease on the row while it sends (several API processes may dispatch)."""
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("job_id", "event", name="uq_nfrecon_webhook_job_event"),)
