"""`Services`: everything a service function may use, built once per process (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.queue import JobQueue
from service.settings import Settings
from store import ArtifactStore, JobStore, PriorStore, WebhookStore


@dataclass
class Services:
    """The settings, the job, webhook and prior stores, the artifact directory and the broker side of the queue."""

    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    queue: JobQueue
    webhooks: WebhookStore
    webhook_secret: str
    priors: PriorStore = field(default=None)  # type: ignore[assignment]
    """Default: on the job store's engine."""

    def __post_init__(self) -> None:
        if self.priors is None:
            self.priors = PriorStore(self.store.engine)


__all__ = ["Services"]
