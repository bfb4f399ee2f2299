"""JobQueue: publish jobs to Celery and revoke them (used by the API and the reaper)."""

from __future__ import annotations

import logging

from celery import Celery

from service.broker import TASK_RECONSTRUCT, make_celery
from service.settings import Settings
from store import Job, JobStore

logger = logging.getLogger("nfrecon.queue")

# kombu's Redis transport keeps one list per priority step (0, 3, 6, 9) and a worker pops from step
# 0 first. New jobs go to step 3, re-published ones to step 0, ahead of anything submitted after them.
PRIORITY_RECOVERED, PRIORITY_NEW = 0, 3


class JobQueue:
    """The broker side of jobs: only the job id travels; the DB row is written (and committed) first."""

    def __init__(self, settings: Settings, store: JobStore, celery: Celery | None = None):
        self.settings = settings
        self.store = store
        self.celery = celery or make_celery(settings)

    def queue_for(self, kind: str) -> str:
        """The queue name for "cpu" or "gpu" jobs (CPU workers may also serve the gpu queue)."""
        return self.settings.cpu_queue if kind == "cpu" else self.settings.gpu_queue

    def publish(self, job: Job, *, recovered: bool = False) -> bool:
        """Send the job's message; False (and the job stays unpublished for the reaper) if the broker is down.

        `recovered`: the job was submitted earlier than what the broker may hold now (a requeued job,
        or one whose message the broker lost), so its message goes to kombu's higher-priority list,
        which workers read first: jobs keep their submission order across a broker restart.
        """
        try:
            self.celery.send_task(
                TASK_RECONSTRUCT,
                args=[job.id],
                task_id=job.id,
                queue=job.queue,
                priority=PRIORITY_RECOVERED if recovered else PRIORITY_NEW,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
            )
        except Exception:
            logger.exception("could not publish job %s; the reaper will retry", job.id)
            return False
        self.store.mark_published(job.id)
        return True

    def revoke(self, job_id: str, *, terminate: bool = False) -> None:
        """Drop a queued message, or (terminate) kill the child running it: SIGKILL, as a last resort."""
        try:
            if terminate:
                self.celery.control.revoke(job_id, terminate=True, signal="SIGKILL")
            else:
                self.celery.control.revoke(job_id)
        except Exception:
            logger.exception("revoke of %s failed", job_id)

    def ping(self, timeout: float = 2.0) -> None:
        """Raise if the broker cannot be reached."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    def broker_job_ids(self) -> set[str]:
        """The job ids of every message the broker holds: waiting in our queues, or delivered and unacked.

        Reads kombu's Redis layout: a list per queue (plus one per priority step) of JSON messages,
        and the `unacked` hash of messages a worker has taken but not acknowledged (the running job,
        a retry waiting for its countdown). Raises redis.RedisError when the broker cannot be read.
        """
        import json

        import redis

        def job_id(raw) -> str | None:
            try:
                msg = json.loads(raw)
                if isinstance(msg, list):  # unacked entries are [message, exchange, routing_key]
                    msg = msg[0]
                return (msg.get("headers") or {}).get("id") or (msg.get("properties") or {}).get("correlation_id")
            except (ValueError, AttributeError, IndexError, TypeError):
                return None

        client = redis.Redis.from_url(self.settings.broker_url, socket_timeout=5, socket_connect_timeout=2)
        try:
            ids: set[str] = set()
            sep = "\x06\x16"  # kombu's separator between a queue name and its priority step
            for q in (self.settings.gpu_queue, self.settings.cpu_queue):
                for key in (q, *(f"{q}{sep}{step}" for step in (3, 6, 9))):
                    ids.update(filter(None, map(job_id, client.lrange(key, 0, -1))))
            ids.update(filter(None, map(job_id, client.hvals("unacked"))))
            return ids
        finally:
            client.close()

    def workers(self) -> list[dict]:
        """The live workers (their presence keys in the broker), or [] when the broker cannot be read."""
        import redis

        from service.presence import list_workers

        try:
            client = redis.Redis.from_url(self.settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                return list_workers(client, self.settings.queue_prefix)
            finally:
                client.close()
        except redis.RedisError:
            logger.warning("could not list workers", exc_info=True)
            return []

    def close(self) -> None:
        self.celery.close()
