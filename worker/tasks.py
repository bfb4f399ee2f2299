"""Thin Celery tasks: receive a job id, hand it to the Celery-agnostic runner."""

from __future__ import annotations

import os
import socket

from celery.exceptions import SoftTimeLimitExceeded

from service.broker import TASK_RECONSTRUCT
from service.settings import get_settings
from worker.celery_app import app
from worker.runner import RunContext, run_job

BUSY_RECHECKS = 3


@app.task(name=TASK_RECONSTRUCT, bind=True, acks_late=True, max_retries=BUSY_RECHECKS)
def reconstruct(self, job_id: str) -> str:
    """Run one reconstruction job; the job row says what to do and records what happened."""
    settings = get_settings()
    ctx = RunContext.from_settings(
        settings,
        worker=f"{self.request.hostname or socket.gethostname()}:{os.getpid()}",
        timeout_errors=(SoftTimeLimitExceeded,),
    )
    try:
        status = run_job(job_id, ctx)
    finally:
        ctx.store.engine.dispose()
    if status == "busy" and self.request.retries < BUSY_RECHECKS:
        # When our child was killed, Celery requeues the message at once (reject_on_worker_lost),
        # while the dead run's heartbeat still looks alive. Look again once it can be stale, so the
        # job is taken over without waiting for the reaper; a genuine duplicate gives up after a few looks.
        raise self.retry(countdown=settings.stale_after + 1)
    return status
