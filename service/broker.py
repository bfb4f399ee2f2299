"""The broker side of Celery: the app configuration for long GPU jobs (service.md §6.7) and the queue names.

The API and the reaper build a client with `make_celery(settings)` to publish and revoke; the worker
builds its app from the same function (worker/celery_app.py), so both agree on every setting.
Nothing here imports torch or the worker's task code.
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings

TASK_RECONSTRUCT = "nfrecon.reconstruct"


def make_celery(settings: Settings, *, include: tuple[str, ...] = ()) -> Celery:
    """A Celery app for `settings` (broker URL, queue names, time limits); `include`: task modules (worker only)."""
    app = Celery("nfrecon", broker=settings.broker_url, include=list(include))
    vt = settings.visibility_timeout_s
    app.conf.update(
        # The job table is the source of truth (service.md §3.8); Celery results would be a second,
        # weaker copy, so none are stored. This also makes `worker_deduplicate_successful_tasks`
        # moot: the conditional claim in the job store rejects a redelivered finished job.
        task_ignore_result=True,
        result_backend=None,
        broker_transport_options={"visibility_timeout": vt},
        visibility_timeout=vt,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # Requeue when the child dies; safe only because the task counts attempts in the DB.
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # A broker outage must not touch a running job: its state lives in the job table, not in
        # the message, and a redelivered copy is rejected by the conditional claim. Cancelling it
        # (SIGTERM to the child) only turned an outage into a failed or requeued run (issue 9).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Keep reconnecting for as long as the outage lasts; the default (100 retries) would end the
        # worker, and with it the job it is running, after a few minutes without Redis.
        broker_connection_max_retries=None,
        task_time_limit=settings.max_runtime_s,
        task_soft_time_limit=settings.max_runtime_s - settings.soft_time_margin_s,
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.cpu_queue,
        control_exchange=f"{settings.queue_prefix}celery",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def worker_queues(settings: Settings, kinds: str = "gpu,cpu") -> str:
    """Queue names for `kinds` ("gpu,cpu", "gpu" or "cpu") under the configured prefix."""
    names = {"gpu": settings.gpu_queue, "cpu": settings.cpu_queue}
    parts = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = [k for k in parts if k not in names]
    if unknown or not parts:
        raise ValueError(f"queues must be gpu and/or cpu, got {kinds!r}")
    return ",".join(names[k] for k in parts)


__all__ = ["TASK_RECONSTRUCT", "make_celery", "worker_queues"]
