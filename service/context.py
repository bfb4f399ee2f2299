"""`Services`: everything a service function may use, built once per process (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from service.queue import JobQueue
from service.settings import Settings
from store import ArtifactStore, JobStore, WebhookStore


@dataclass
class Services:
    """The settings, the job and webhook stores, the artifact directory and the broker side of the queue."""

    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    queue: JobQueue
    webhooks: WebhookStore
    webhook_secret: str


__all__ = ["Services"]
