"""The worker's Celery app: the shared configuration (service/broker.py), its pool, its signals, its command line.

`celery -A worker.celery_app worker -Q gpu,cpu -c 1 --max-tasks-per-child=1` runs a worker (the
pool is `worker_pool` below: prefork with a prompt child replacement, worker/pool.py).
Nothing here imports torch: CUDA must never be initialised in the prefork parent, only in the
child that runs a job (pytorch#40403).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from service.broker import make_celery, worker_queues
from service.settings import Settings, get_settings


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


JOB_NICENESS = 10
"""How much lower the CPU priority of a job's child is than the worker's: a fit that holds every core
must not starve the API on the same machine (issue 9: job polls took 1 s at p99 during a fit)."""


@worker_process_init.connect
def _lower_priority(**_):
    try:
        os.nice(JOB_NICENESS)
    except OSError:  # not permitted here: run at the normal priority
        pass


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
    from service.presence import Presence

    settings = get_settings()
    queues = [q.name for q in sender.task_consumer.queues] if sender.task_consumer else []
    presence = Presence(settings.broker_url, settings.queue_prefix, sender.hostname or "unknown", queues,
                        interval_s=settings.worker_presence_interval_s)
    sender.controller.nfrecon_presence = presence.start()


DRAIN_GRACE_S = 45.0
"""On SIGTERM a worker lets its running job finish for this long (Celery's warm shutdown), then sends
SIGTERM to the job's child, which hands the job back to the queue (worker/runner.py): under
docker compose's 60 s stop_grace_period, so the job is requeued rather than SIGKILLed mid-write."""


@worker_shutting_down.connect
def _drain(sig=None, how=None, **_):
    if how != "Warm":
        return
    parent = os.getpid()
    timer = threading.Timer(DRAIN_GRACE_S, _terminate_children, args=(parent,))
    timer.daemon = True  # the worker exiting earlier (the job finished) simply drops it
    timer.start()


def _terminate_children(parent: int) -> None:
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid.split()[1]) == parent:
            try:
                os.kill(int(status.parent.name), signal.SIGTERM)
            except ProcessLookupError:
                pass


@worker_shutdown.connect
def _retire(sender=None, **_):
    presence = getattr(sender, "nfrecon_presence", None)
    if presence is not None:
        presence.stop()
        sender.nfrecon_presence = None


def make_worker_app(settings: Settings) -> Celery:
    """The worker's app: the shared configuration, its task module, and its pool."""
    app = make_celery(settings, include=("worker.tasks",))
    # Prefork, replacing each job's child within 0.25 s (Celery's CLI takes no module:Class for -P).
    app.conf.worker_pool = "worker.pool:PromptPreforkPool"
    return app


app = make_worker_app(get_settings())
