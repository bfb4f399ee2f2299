"""The prior store: rows of stored priors, scoped by owner, listed newest first by keyset."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, or_, select

from store.db import session_factory
from store.jobs import get_owned, insert_with_key
from store.models import IdempotencyKey, Prior


class PriorStore:
    """Priors on the job store's engine (the table is created with the job tables)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.Session = session_factory(engine)

    def add(self, prior: Prior, idempotency: IdempotencyKey | None = None) -> Prior:
        """Insert a prior and its idempotency key in one transaction.

        Raises:
            IdempotencyConflict: the key exists already (the caller replays or rejects).
        """
        return insert_with_key(self.Session, prior, idempotency)

    def get(self, prior_id: str, owner: str | None = None) -> Prior | None:
        """The prior, or None when unknown or owned by someone else (owner None = any)."""
        return get_owned(self.Session, Prior, prior_id, owner)

    def list(self, owner: str | None, *, limit: int = 50, before: tuple[datetime, str] | None = None) -> list[Prior]:
        """Newest first; `before` = (created_at, id) of the last item of the previous page."""
        q = select(Prior)
        if owner is not None:
            q = q.where(Prior.owner == owner)
        if before is not None:
            created, pid = before
            q = q.where(or_(Prior.created_at < created, (Prior.created_at == created) & (Prior.id < pid)))
        q = q.order_by(Prior.created_at.desc(), Prior.id.desc()).limit(limit)
        with self.Session() as s:
            return list(s.scalars(q))

    def delete(self, prior_id: str) -> bool:
        with self.Session() as s:
            n = s.execute(delete(Prior).where(Prior.id == prior_id)).rowcount
            s.commit()
            return n == 1
