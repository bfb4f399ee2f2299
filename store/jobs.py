"""The job store: every state transition is one conditional UPDATE, so duplicates and races lose cleanly.

A redelivered Celery message, a reaper running in two API replicas, or a cancel racing the
worker's last write all reduce to "UPDATE ... WHERE status IN (...) AND attempt = ?": whoever
matches zero rows knows it lost and does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import aliased

from store.db import create_schema, session_factory
from store.models import IdempotencyKey, Job, JobWebhook, Upload, utcnow
from store.states import TERMINAL, JobStatus, job_error


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used; `existing` is the stored key row."""

    def __init__(self, existing: IdempotencyKey):
        super().__init__(existing.key)
        self.existing = existing


def _view_statement(by_owner: bool):
    """SELECT job, queue position (a correlated count, only for queued jobs), webhook url and events.

    Built once: building the alias and the subquery costs more than running the query.
    """
    ahead = aliased(Job)
    position = (
        select(func.count())
        .select_from(ahead)
        .where(ahead.status == JobStatus.queued.value, ahead.queue == Job.queue)
        .where(or_(ahead.created_at < Job.created_at, (ahead.created_at == Job.created_at) & (ahead.id < Job.id)))
        .correlate(Job)
        .scalar_subquery()
    )
    q = (
        select(Job, case((Job.status == JobStatus.queued.value, position + 1), else_=None),
               JobWebhook.url, JobWebhook.events)
        .outerjoin(JobWebhook, JobWebhook.job_id == Job.id)
        .where(Job.id == bindparam("job_id"))
    )
    return q.where(Job.owner == bindparam("owner")) if by_owner else q


_VIEW = _view_statement(by_owner=False)
_VIEW_BY_OWNER = _view_statement(by_owner=True)


@dataclass(frozen=True)
class JobView:
    """What `GET /v1/jobs/{id}` shows, read in one statement: the job, its queue position (None unless
    queued) and its webhook subscription (url and events, None without one)."""

    job: Job
    queue_position: int | None
    webhook_url: str | None
    webhook_events: list[str] | None


def get_owned(session_factory, model, row_id: str, owner: str | None):
    """The row of `model` with this id, or None when unknown or owned by someone else (owner None = any)."""
    with session_factory() as s:
        row = s.get(model, row_id)
        return None if row is None or (owner is not None and row.owner != owner) else row


def insert_with_key(session_factory, row, idempotency: IdempotencyKey | None, extra: Iterable = (), lookup=None):
    """Insert `row`, its idempotency key and `extra` rows in one transaction; a taken key is IdempotencyConflict.

    Shared by every store whose rows are created under an Idempotency-Key (jobs, uploads, priors).
    `lookup(owner, scope, key)` finds the key that was taken (default: the row as stored).
    """
    with session_factory() as s:
        s.add(row)
        s.add_all(list(extra))
        if idempotency is not None:
            s.add(idempotency)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            find = lookup or (lambda owner, scope, key: s.get(IdempotencyKey, (owner, scope, key)))
            existing = idempotency and find(idempotency.owner, idempotency.scope, idempotency.key)
            if not existing:
                raise
            raise IdempotencyConflict(existing) from None
        return row


class JobStore:
    """Jobs, uploads and idempotency keys on one SQLAlchemy engine (shared by API, worker, reaper)."""

    def __init__(self, engine: Engine, *, create: bool = True):
        self.engine = engine
        self.Session = session_factory(engine)
        if create:
            self._create_schema()

    def _create_schema(self) -> None:
        # The API and a worker may start together on a fresh SQLite file; the loser of the
        # CREATE TABLE race sees "already exists" and only needs to retry the check.
        for attempt in range(5):
            try:
                create_schema(self.engine)
                return
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # ------------------------------------------------------------------------------------------
    # jobs: create and read

    def add_job(self, job: Job, idempotency: IdempotencyKey | None = None, extra: Iterable = ()) -> Job:
        """Insert a job, its idempotency key and `extra` rows (its webhook) in one transaction.

        Raises:
            IdempotencyConflict: the key exists already (the caller replays or rejects).
        """
        return self._insert(job, idempotency, extra)

    def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when unknown or owned by someone else (owner None = any)."""
        return get_owned(self.Session, Job, job_id, owner)

    def get_job_view(self, job_id: str, owner: str | None = None) -> JobView | None:
        """The job with its queue position and webhook in one round trip (the poll path: `get_job`,
        `queue_position` and the webhook lookup would be three, each a pool checkout and a ping).

        None when unknown or owned by someone else (owner None = any).
        """
        q = _VIEW_BY_OWNER if owner is not None else _VIEW
        params = {"job_id": job_id, "owner": owner} if owner is not None else {"job_id": job_id}
        with self.Session() as s:
            row = s.execute(q, params).first()
        if row is None:
            return None
        job, pos, url, events = row
        return JobView(job=job, queue_position=None if pos is None else int(pos), webhook_url=url,
                       webhook_events=list(events) if events is not None else None)

    def list_jobs(
        self,
        owner: str | None,
        *,
        statuses: Iterable[str] | None = None,
        task: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        """Newest first; `before` = (created_at, id) of the last item of the previous page (keyset)."""
        q = select(Job)
        if owner is not None:
            q = q.where(Job.owner == owner)
        if statuses:
            q = q.where(Job.status.in_(list(statuses)))
        if task:
            q = q.where(Job.task == task)
        if before is not None:
            created, jid = before
            q = q.where(or_(Job.created_at < created, (Job.created_at == created) & (Job.id < jid)))
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        with self.Session() as s:
            return list(s.scalars(q))

    def count_jobs(self, statuses: Iterable[str], owner: str | None = None) -> int:
        q = select(func.count()).select_from(Job).where(Job.status.in_(list(statuses)))
        if owner is not None:
            q = q.where(Job.owner == owner)
        with self.Session() as s:
            return int(s.scalar(q) or 0)

    def queue_position(self, job: Job) -> int | None:
        """1-based position among queued jobs of the same queue (None when not queued)."""
        if job.status != JobStatus.queued.value:
            return None
        q = (
            select(func.count())
            .select_from(Job)
            .where(Job.status == JobStatus.queued.value, Job.queue == job.queue)
            .where(or_(Job.created_at < job.created_at, (Job.created_at == job.created_at) & (Job.id < job.id)))
        )
        with self.Session() as s:
            return int(s.scalar(q) or 0) + 1

    def queued_jobs(self, *, unpublished_only: bool = False) -> list[Job]:
        q = select(Job).where(Job.status == JobStatus.queued.value)
        if unpublished_only:
            q = q.where(Job.published_at.is_(None))
        with self.Session() as s:
            return list(s.scalars(q.order_by(Job.created_at)))

    # ------------------------------------------------------------------------------------------
    # jobs: transitions

    def _update(self, job_id: str, *conditions, **values) -> int:
        now = utcnow()
        values.setdefault("updated_at", now)
        stmt = (
            update(Job)
            .where(Job.id == job_id, *conditions)
            .values(version=Job.version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        with self.Session() as s:
            n = s.execute(stmt).rowcount
            s.commit()
            return n

    def mark_published(self, job_id: str) -> None:
        self._update(job_id, Job.status == JobStatus.queued.value, published_at=utcnow())

    def claim(self, job_id: str, worker: str, *, stale_before: datetime) -> Job | None:
        """queued -> running (attempt += 1), or take over a running job whose heartbeat stopped.

        Returns the claimed job (with its new attempt), or None when the job is unknown, finished,
        canceled, running elsewhere with a live heartbeat (a duplicate delivery), or has used all
        its attempts (`fail_exhausted` then ends it): the record never shows attempt > max_attempts.
        """
        now = utcnow()
        n = self._update(
            job_id,
            or_(
                Job.status == JobStatus.queued.value,
                (Job.status == JobStatus.running.value) & (Job.heartbeat_at < stale_before),
            ),
            Job.attempt < Job.max_attempts,
            status=JobStatus.running.value,
            attempt=Job.attempt + 1,
            worker=worker,
            stage="load",
            started_at=func.coalesce(Job.started_at, now),
            heartbeat_at=now,
        )
        if n != 1:
            return None
        return self.get_job(job_id)

    def heartbeat(self, job_id: str, attempt: int) -> str | None:
        """Touch the heartbeat; return the job's status, or None when this attempt no longer owns it."""
        n = self._update(
            job_id,
            Job.attempt == attempt,
            Job.status.in_([JobStatus.running.value, JobStatus.canceling.value]),
            heartbeat_at=utcnow(),
        )
        if n != 1:
            return None
        with self.Session() as s:
            return s.scalar(select(Job.status).where(Job.id == job_id))

    def record_config(self, job_id: str, attempt: int, config: dict, device: str) -> bool:
        """Store the config this attempt resolved the spec to, and its device; False if the attempt lost the job."""
        return (
            self._update(
                job_id,
                Job.attempt == attempt,
                Job.status.in_([JobStatus.running.value, JobStatus.canceling.value]),
                config=config,
                device=device,
            )
            == 1
        )

    def set_progress(self, job_id: str, attempt: int, stage: str, progress: dict) -> bool:
        return (
            self._update(
                job_id,
                Job.attempt == attempt,
                Job.status.in_([JobStatus.running.value, JobStatus.canceling.value]),
                stage=stage,
                progress=progress,
                heartbeat_at=utcnow(),
            )
            == 1
        )

    def finish(
        self,
        job_id: str,
        attempt: int,
        status: JobStatus,
        *,
        error: dict | None = None,
        metrics: dict | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """running/canceling -> terminal, only for the attempt that owns the job."""
        values = dict(status=status.value, finished_at=utcnow(), expires_at=expires_at)
        if error is not None:
            values["error"] = error
        if metrics is not None:
            values["metrics"] = metrics
        if status == JobStatus.succeeded:
            values["stage"] = "done"
        return (
            self._update(
                job_id,
                Job.attempt == attempt,
                Job.status.in_([JobStatus.running.value, JobStatus.canceling.value]),
                **values,
            )
            == 1
        )

    def request_cancel(self, job_id: str) -> str | None:
        """Cancel: queued -> canceled at once, running -> canceling. Returns the status now (None: unknown)."""
        now = utcnow()
        self._update(
            job_id,
            Job.status == JobStatus.queued.value,
            status=JobStatus.canceled.value,
            cancel_requested_at=now,
            finished_at=now,
        )
        self._update(
            job_id,
            Job.status == JobStatus.running.value,
            status=JobStatus.canceling.value,
            cancel_requested_at=now,
        )
        with self.Session() as s:
            return s.scalar(select(Job.status).where(Job.id == job_id))

    def force_cancel(self, job_id: str, expires_at: datetime | None = None) -> bool:
        """canceling -> canceled without the worker (after revoke-terminate)."""
        return (
            self._update(
                job_id,
                Job.status == JobStatus.canceling.value,
                status=JobStatus.canceled.value,
                finished_at=utcnow(),
                expires_at=expires_at,
            )
            == 1
        )

    def stale_jobs(self, stale_before: datetime) -> list[Job]:
        """Running or canceling jobs whose heartbeat is older than `stale_before`."""
        q = select(Job).where(
            Job.status.in_([JobStatus.running.value, JobStatus.canceling.value]),
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
        )
        with self.Session() as s:
            return list(s.scalars(q))

    def canceling_since(self, before: datetime) -> list[Job]:
        q = select(Job).where(Job.status == JobStatus.canceling.value, Job.cancel_requested_at < before)
        with self.Session() as s:
            return list(s.scalars(q))

    def requeue(self, job_id: str, attempt: int, stale_before: datetime) -> bool:
        """A lost running job goes back to queued (its attempt counter is kept)."""
        return (
            self._update(
                job_id,
                Job.attempt == attempt,
                Job.status == JobStatus.running.value,
                Job.heartbeat_at < stale_before,
                status=JobStatus.queued.value,
                stage=None,
                worker=None,
                published_at=None,
            )
            == 1
        )

    def release(self, job_id: str, attempt: int) -> str | None:
        """Give a running job back to the queue because its worker is going away (shutdown, broker loss).

        The attempt is returned too (attempt - 1): the job did not fail, its host stopped, so an
        orderly shutdown never uses up a job's attempts (a crash, SIGKILL or OOM-kill, still counts:
        that path goes through the heartbeat and `requeue`). A job being canceled ends `canceled`.
        Returns "queued", "canceled", or None when this attempt no longer owns the job.
        """
        if self._update(job_id, Job.attempt == attempt, Job.status == JobStatus.canceling.value,
                        status=JobStatus.canceled.value, finished_at=utcnow()) == 1:
            return JobStatus.canceled.value
        n = self._update(
            job_id,
            Job.attempt == attempt,
            Job.status == JobStatus.running.value,
            status=JobStatus.queued.value,
            attempt=Job.attempt - 1,
            stage=None,
            worker=None,
            progress=None,
            heartbeat_at=None,
            published_at=None,
        )
        return JobStatus.queued.value if n == 1 else None

    def fail_exhausted(self, job_id: str, detail: str, *, stale_before: datetime,
                       expires_at: datetime | None = None) -> bool:
        """A job that would need attempt max_attempts + 1 fails with `worker_lost` instead of being claimed.

        Matches a queued job, or a running one whose heartbeat stopped, that has used every attempt.
        """
        return (
            self._update(
                job_id,
                or_(
                    Job.status == JobStatus.queued.value,
                    (Job.status == JobStatus.running.value)
                    & or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
                ),
                Job.attempt >= Job.max_attempts,
                status=JobStatus.failed.value,
                finished_at=utcnow(),
                error=job_error("worker_lost", detail),
                expires_at=expires_at,
            )
            == 1
        )

    def fail_lost(self, job_id: str, attempt: int, detail: str, *, stale_before: datetime | None,
                  expires_at: datetime | None = None, log_tail: list[str] | None = None) -> bool:
        """A lost job with no attempts left fails with `worker_lost` (canceling ones end canceled)."""
        conds = [Job.attempt == attempt, Job.status.in_([JobStatus.running.value, JobStatus.canceling.value])]
        if stale_before is not None:
            conds.append(or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before))
        with self.Session() as s:
            status = s.scalar(select(Job.status).where(Job.id == job_id))
        if status == JobStatus.canceling.value:
            return self._update(job_id, *conds, status=JobStatus.canceled.value, finished_at=utcnow(),
                                expires_at=expires_at) == 1
        return (
            self._update(
                job_id,
                *conds,
                status=JobStatus.failed.value,
                finished_at=utcnow(),
                error=job_error("worker_lost", detail, log_tail),
                expires_at=expires_at,
            )
            == 1
        )

    def delete_job(self, job_id: str) -> bool:
        with self.Session() as s:
            n = s.execute(delete(Job).where(Job.id == job_id)).rowcount
            s.commit()
            return n == 1

    def expired_jobs(self, now: datetime) -> list[Job]:
        """Terminal jobs whose artifacts are past `expires_at` and not yet removed."""
        q = select(Job).where(
            Job.status.in_(list(TERMINAL)), Job.expires_at.is_not(None), Job.expires_at < now,
            Job.artifacts_expired.is_(False),
        )
        with self.Session() as s:
            return list(s.scalars(q))

    def mark_artifacts_expired(self, job_id: str) -> None:
        self._update(job_id, artifacts_expired=True)

    # ------------------------------------------------------------------------------------------
    # uploads

    def add_upload(self, upload: Upload, idempotency: IdempotencyKey | None = None) -> Upload:
        """Insert an upload (and its idempotency key); raises IdempotencyConflict like add_job."""
        return self._insert(upload, idempotency)

    def _insert(self, row, idempotency: IdempotencyKey | None, extra: Iterable = ()):
        """Insert `row`, its idempotency key and `extra` rows in one transaction; a taken key is IdempotencyConflict."""
        return insert_with_key(self.Session, row, idempotency, extra, lookup=self.get_idempotency)

    def get_upload(self, upload_id: str, owner: str | None = None) -> Upload | None:
        return get_owned(self.Session, Upload, upload_id, owner)

    def delete_upload(self, upload_id: str) -> bool:
        with self.Session() as s:
            n = s.execute(delete(Upload).where(Upload.id == upload_id)).rowcount
            s.commit()
            return n == 1

    def expired_uploads(self, now: datetime) -> list[Upload]:
        q = select(Upload).where(Upload.expires_at.is_not(None), Upload.expires_at < now)
        with self.Session() as s:
            return list(s.scalars(q))

    # ------------------------------------------------------------------------------------------
    # idempotency keys

    def get_idempotency(self, owner: str, scope: str, key: str) -> IdempotencyKey | None:
        """The live key, or None; an expired key is deleted so that it can be used again."""
        with self.Session() as s:
            row = s.get(IdempotencyKey, (owner, scope, key))
            if row is not None and row.expires_at < utcnow():
                s.delete(row)
                s.commit()
                return None
            return row

    def purge_idempotency(self, now: datetime) -> int:
        with self.Session() as s:
            n = s.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now)).rowcount
            s.commit()
            return n
