"""The Celery app: settings for long GPU jobs (service.md §6.7), built from `Settings`.

`celery -A worker.celery_app worker -Q gpu,cpu -c 1 --max-tasks-per-child=1` runs a worker (the
pool is `worker_pool` below: prefork with a prompt child replacement, worker/pool.py); the API builds its own instance with `make_celery(settings)` only to publish and revoke.
Nothing here imports torch: CUDA must never be initialised in the prefork parent, only in the
child that runs a job (pytorch#40403).
"""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from api.settings import Settings, get_settings

TASK_RECONSTRUCT = "nfrecon.reconstruct"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings` (broker URL, queue names, time limits)."""
    app = Celery("nfrecon", broker=settings.broker_url, include=["worker.tasks"])
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
        # Prefork, replacing each job's child within 0.25 s (Celery's CLI takes no module:Class for -P).
        worker_pool="worker.pool:PromptPreforkPool",
        # Requeue when the child dies; safe only because the task counts attempts in the DB.
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
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


def worker_argv(settings: Settings, *, hostname: str | None = None, loglevel: str = "INFO",
                queues: str = "gpu,cpu") -> list[str]:
    """The production worker command line: one prefork child, a fresh one per job (frees GPU memory)."""
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "-Q", worker_queues(settings, queues), "-c", "1", "--max-tasks-per-child=1",
        "--prefetch-multiplier=1", "--without-gossip", "--without-mingle", "-l", loglevel,
    ]
    if hostname:
        argv += ["-n", hostname]
    return argv


@worker_process_init.connect
def _check_no_cuda_in_parent(**_):
    # The child inherits the parent's state: if the parent had initialised CUDA, the child's
    # first CUDA call would fail ("Cannot re-initialize CUDA in forked subprocess").
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised in the Celery parent process; import torch only inside tasks")


@worker_ready.connect
def _announce(sender=None, **_):
    """Start this worker's presence key (in its parent process) once it consumes its queues.

    The Presence is kept on the WorkController, which is the consumer's `controller` here and the
    sender of worker_shutdown below.
    """
    from worker.presence import Presence

    settings = get_settings()
    queues = [q.name for q in sender.task_consumer.queues] if sender.task_consumer else []
    presence = Presence(settings.broker_url, settings.queue_prefix, sender.hostname or "unknown", queues,
                        interval_s=settings.worker_presence_interval_s)
    sender.controller.nfrecon_presence = presence.start()


@worker_shutdown.connect
def _retire(sender=None, **_):
    presence = getattr(sender, "nfrecon_presence", None)
    if presence is not None:
        presence.stop()
        sender.nfrecon_presence = None


app = make_celery(get_settings())
