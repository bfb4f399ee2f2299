"""Webhook subscriptions and their delivery outbox.

Events are derived from the job rows, not pushed by whoever changed the job: a job with a
subscription that has started gets a "start" delivery, one that is terminal a "completed" one. The
worker, the reaper and the API therefore need no webhook code, and an event cannot be lost when a
process dies between changing a job and sending. Deliveries are unique per (job, event) and
claimed with a lease, so several dispatchers (API replicas) never send one twice at once; the
receiver deduplicates retries by the `webhook-id` header.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from store.db import session_factory
from store.models import Job, JobWebhook, WebhookDelivery, utcnow
from store.states import TERMINAL

EVENTS = ("start", "completed")


class WebhookStore:
    """Subscriptions (one per job) and deliveries on the job store's engine (its schema is created there)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.Session = session_factory(engine)

    def subscription(self, job_id: str) -> JobWebhook | None:
        with self.Session() as s:
            return s.get(JobWebhook, job_id)

    def deliveries(self, job_id: str) -> list[WebhookDelivery]:
        with self.Session() as s:
            return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                  .order_by(WebhookDelivery.created_at)))

    def delete_for_job(self, job_id: str) -> None:
        with self.Session() as s:
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
            s.execute(delete(JobWebhook).where(JobWebhook.job_id == job_id))
            s.commit()

    def enqueue_events(self, limit: int = 500) -> int:
        """Queue a delivery for each subscribed event that has happened; returns how many were queued."""
        queued = 0
        with self.Session() as s:
            rows = s.execute(
                select(JobWebhook, Job.status, Job.started_at)
                .outerjoin(Job, Job.id == JobWebhook.job_id)
                .where(JobWebhook.done.is_(False), or_(Job.id.is_(None), Job.started_at.is_not(None),
                                                       Job.status.in_(list(TERMINAL))))
                .limit(limit)
            ).all()
        for sub, status, started_at in rows:
            if status is None:  # the job was deleted
                self.delete_for_job(sub.job_id)
                continue
            happened = {"start"} if started_at is not None else set()
            if status in TERMINAL:
                happened.add("completed")
            with self.Session() as s:
                have = set(s.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == sub.job_id)))
                new = [e for e in EVENTS if e in sub.events and e in happened and e not in have]
                for event in new:
                    s.add(WebhookDelivery(id=f"msg_{uuid.uuid4().hex[:24]}", job_id=sub.job_id, event=event,
                                          url=sub.url, status="pending", attempts=0, next_attempt_at=utcnow()))
                if status in TERMINAL:
                    s.execute(update(JobWebhook).where(JobWebhook.job_id == sub.job_id).values(done=True))
                try:
                    s.commit()
                    queued += len(new)
                except IntegrityError:  # another dispatcher queued the same event first
                    s.rollback()
        return queued

    def claim_due(self, lease_s: float, limit: int = 50) -> list[WebhookDelivery]:
        """Pending deliveries whose time has come, each leased to this caller for `lease_s`."""
        now = utcnow()
        with self.Session() as s:
            ids = list(s.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                       or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now))
                .order_by(WebhookDelivery.next_attempt_at).limit(limit)
            ))
        claimed = []
        for delivery_id in ids:
            with self.Session() as s:
                n = s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                           or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now))
                    .values(locked_until=now + timedelta(seconds=lease_s))
                    .execution_options(synchronize_session=False)
                ).rowcount
                s.commit()
                if n == 1:
                    claimed.append(s.get(WebhookDelivery, delivery_id))
        return claimed

    def record_attempt(self, delivery_id: str, *, status: str, status_code: int | None, error: str | None,
                       next_attempt_at: datetime | None = None) -> None:
        """After one POST: delivered, failed for good, or pending again at `next_attempt_at`."""
        now = utcnow()
        values = dict(status=status, attempts=WebhookDelivery.attempts + 1, last_status_code=status_code,
                      last_error=error, locked_until=None)
        if status == "delivered":
            values["delivered_at"] = now
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self.Session() as s:
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
                      .execution_options(synchronize_session=False))
            s.commit()
