"""The reaper: recovers lost jobs, finishes stuck cancels, publishes what never reached the broker or what
the broker lost (a Redis restarted without persistence), expires data.

The API runs it as an asyncio loop (and once at startup); several API replicas may run it at
once because every change it makes is a conditional update.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.queue import JobQueue
from service.settings import Settings
from store import ArtifactStore, Job, JobStatus, JobStore, utcnow

logger = logging.getLogger("nfrecon.reaper")

PUBLISH_GRACE_S = 2.0
"""A queued job's message is looked for in the broker only this long after it was published (the
publish and its `published_at` are two steps)."""


@dataclass
class Reaper:
    store: JobStore
    artifacts: ArtifactStore
    settings: Settings
    queue: JobQueue

    def republish_queued(self, *, unpublished_only: bool) -> int:
        """Publish queued jobs again (all of them at startup: an embedded broker forgot its queue).

        Duplicate messages are harmless: the first claim wins, later ones are skipped.
        """
        n = 0
        for job in self.store.queued_jobs(unpublished_only=unpublished_only):
            n += self.queue.publish(job, recovered=True)
        return n

    def lost_messages(self, now: datetime | None = None) -> list[Job]:
        """Queued jobs, published more than PUBLISH_GRACE_S ago, whose message the broker no longer holds.

        A Redis restarted without persistence (or a flushed one) forgets its lists while the job
        table still says `queued`: nothing would ever run them. A message counts as held while it
        waits in its queue or sits unacknowledged with a worker. Oldest first. Raises when the
        broker cannot be read (then nothing can be concluded).
        """
        now = now or utcnow()
        published_before = now - timedelta(seconds=PUBLISH_GRACE_S)
        candidates = [j for j in self.store.queued_jobs()
                      if j.published_at is not None and j.published_at < published_before]
        if not candidates:
            return []
        held = self.queue.broker_job_ids()
        missing = [j for j in candidates if j.id not in held]
        if missing:
            # A worker pops a message before it records it as unacked (and before it claims the job):
            # look once more, so that a message in that instant is not taken for lost.
            time.sleep(0.2)
            held = self.queue.broker_job_ids()
            missing = [j for j in missing if j.id not in held]
        return missing

    def republish_lost(self, now: datetime | None = None) -> int:
        """Re-publish, in submission order, queued jobs whose message the broker lost; returns how many."""
        try:
            lost = self.lost_messages(now)
        except Exception as exc:  # the broker is down: the next pass looks again
            logger.warning("reaper: cannot read the broker's queues: %s", exc)
            return 0
        n = 0
        for job in lost:
            fresh = self.store.get_job(job.id)
            if fresh is None or fresh.status != JobStatus.queued.value:
                continue  # claimed meanwhile
            if self.queue.publish(fresh, recovered=True):
                self._log(job.id, "the broker lost this job's message; re-published")
                n += 1
        if n:
            logger.warning("reaper: the broker lost %d queued job message(s); re-published them", n)
        return n

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass; returns what it did (for logs and tests)."""
        now = now or utcnow()
        s = self.settings
        done = {"requeued": 0, "failed": 0, "cancel_forced": 0, "published": 0, "republished_lost": 0,
                "expired_jobs": 0, "expired_uploads": 0}
        expires = now + timedelta(seconds=s.job_ttl_s)

        stale_before = now - timedelta(seconds=s.stale_after)
        for job in self.store.stale_jobs(stale_before):
            if job.status == JobStatus.running.value and job.attempt < job.max_attempts:
                if self.store.requeue(job.id, job.attempt, stale_before):
                    self._log(job.id, f"heartbeat lost (worker {job.worker}); requeued for attempt {job.attempt + 1}")
                    done["requeued"] += 1
                    fresh = self.store.get_job(job.id)
                    if fresh is not None:
                        self.queue.publish(fresh, recovered=True)
            else:
                detail = f"heartbeat lost (worker {job.worker}) on attempt {job.attempt} of {job.max_attempts}"
                if self.store.fail_lost(job.id, job.attempt, detail, stale_before=stale_before, expires_at=expires,
                                        log_tail=self._tail(job.id)):
                    self._log(job.id, detail + "; no attempts left")
                    done["failed"] += 1

        for job in self.store.canceling_since(now - timedelta(seconds=s.cancel_grace_s)):
            # The cooperative stop did not happen in time: kill the child, then record the cancel.
            self.queue.revoke(job.id, terminate=True)
            if self.store.force_cancel(job.id, expires_at=expires):
                self._log(job.id, f"not stopped within {s.cancel_grace_s:g} s; terminated")
                done["cancel_forced"] += 1

        done["published"] = self.republish_queued(unpublished_only=True)
        done["republished_lost"] = self.republish_lost(now)

        for job in self.store.expired_jobs(now):
            self.artifacts.remove_artifacts(job.id)
            self.store.mark_artifacts_expired(job.id)
            done["expired_jobs"] += 1
        for up in self.store.expired_uploads(now):
            self.artifacts.remove_upload(up.id)
            self.store.delete_upload(up.id)
            done["expired_uploads"] += 1
        self.store.purge_idempotency(now)
        if any(done.values()):
            logger.info("reaper: %s", done)
        return done

    def _log(self, job_id: str, message: str) -> None:
        path = self.artifacts.log_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{utcnow().strftime('%Y-%m-%dT%H:%M:%S.%f')[:-4]}Z [reaper] {message}\n")

    def _tail(self, job_id: str) -> list[str]:
        path = self.artifacts.log_path(job_id)
        if not path.is_file():
            return []
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
