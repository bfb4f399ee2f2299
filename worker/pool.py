"""Celery's prefork pool, checking its processes every 0.25 s instead of every 5 s.

With `--max-tasks-per-child=1` (a fresh child per job, so GPU memory is returned) the pool must
start a new child after every job. Celery starts it when it sees the old child's exit on the
event loop, but now and then it misses that and waits for its periodic pool check, every 5 s:
measured with 30 tiny queued jobs on our 2-core machine, 2-3 of them waited 1.9-4.5 s
for a worker child (median 0.25 s). With the check every 0.25 s the worst of 40 jobs waited 0.53 s. A check
is a loop over one process, so doing it more often costs nothing measurable.
"""

from __future__ import annotations

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

MAINTAIN_INTERVAL_S = 0.25


class _PromptAsynPool(AsynPool):
    @property
    def timers(self):
        return {self.maintain_pool: MAINTAIN_INTERVAL_S}


class PromptPreforkPool(TaskPool):
    """The prefork pool with a prompt child replacement (`worker_pool = "worker.pool:PromptPreforkPool"`)."""

    Pool = _PromptAsynPool
