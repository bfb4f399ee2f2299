"""Worker presence: each worker's parent process keeps a short-lived key in the broker's Redis.

Without it a job submitted while no worker runs just stays `queued`, and nobody can tell why.
Celery's own `inspect().ping()` broadcasts and waits for answers (seconds, and busy prefork workers
answer late); a key with a TTL, refreshed from a thread, is read at once and vanishes by itself
when a machine dies. The key lives in the broker (Redis or the embedded fakeredis), so no other
service is needed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone

import redis

logger = logging.getLogger("nfrecon.presence")


def key_prefix(queue_prefix: str) -> str:
    return f"{queue_prefix}nfrecon:worker:"


class Presence:
    """Refreshes `<prefix>nfrecon:worker:<hostname>` every `interval_s` (TTL 3 x interval) until stopped."""

    def __init__(self, broker_url: str, queue_prefix: str, hostname: str, queues: list[str], interval_s: float = 5.0):
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
        self.key = key_prefix(queue_prefix) + hostname
        self.interval_s = interval_s
        self.record = {"hostname": hostname, "queues": sorted(queues), "pid": os.getpid(),
                       "started_at": datetime.now(timezone.utc).isoformat()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfrecon-presence", daemon=True)

    def start(self) -> Presence:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        record = {**self.record, "last_seen": datetime.now(timezone.utc).isoformat()}
        try:
            self.redis.set(self.key, json.dumps(record), ex=max(1, round(3 * self.interval_s)))
        except redis.RedisError as exc:  # the broker is down: Celery reports that itself
            logger.warning("worker presence not refreshed: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        try:
            self.redis.delete(self.key)
        except redis.RedisError:
            pass
        self.redis.close()


def list_workers(client: redis.Redis, queue_prefix: str) -> list[dict]:
    """The live workers' records, sorted by hostname."""
    out = []
    for key in client.scan_iter(match=key_prefix(queue_prefix) + "*", count=100):
        raw = client.get(key)
        if raw:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return sorted(out, key=lambda r: r.get("hostname", ""))


def wait_until_gone(client: redis.Redis, queue_prefix: str, hostname: str, timeout: float) -> bool:
    """Whether `hostname`'s record disappears within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not client.exists(key_prefix(queue_prefix) + hostname):
            return True
        time.sleep(0.1)
    return False
