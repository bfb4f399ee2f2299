"""Celery worker: the worker's app and pool, the thin task, and the Celery-agnostic runner.

`worker.celery_app` builds its app from the environment at import; import it only where a worker
is wanted. Nothing in this package imports torch at module level, and nothing imports `api`.
"""

from worker.runner import JobLog, RunContext, run_job

__all__ = ["JobLog", "RunContext", "run_job"]
