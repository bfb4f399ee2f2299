"""Celery worker: app configuration, the thin task, the Celery-agnostic runner, the queue and the reaper.

`worker.celery_app` builds its app from the environment at import; import it only where a worker
or a publisher is wanted. Nothing in this package imports torch at module level.
"""

from worker.reaper import Reaper
from worker.runner import JobLog, RunContext, run_job

__all__ = ["JobLog", "Reaper", "RunContext", "run_job"]
