"""Receiving a prior file: stream the multipart part to disk with a byte limit, then store it (service.priors)."""

from __future__ import annotations

import anyio

from api.services.uploads import clean_filename, stream_to_file
from service import priors
from service.context import Services
from service.errors import ProblemError
from store import IdempotencyConflict, Prior


async def receive_prior(services: Services, owner: str, file, *, name: str | None,
                        idempotency_key: str | None = None) -> tuple[Prior, bool]:
    """Stream `file` (an UploadFile) into the data directory, validate it as a prior and record it.
    Returns (prior, replayed).

    413 past `max_prior_bytes`, 422 when it is not a valid prior (the reason named), 507 on a full disk.
    With `idempotency_key`: the same key, file and name replay the first prior (service.priors).
    """
    display = clean_filename(name or file.filename) or "prior.safetensors"
    if idempotency_key:
        priors.check_idempotency_key(idempotency_key)
    part = services.artifacts.prior_incoming_path()

    async def chunks():
        while block := await file.read(1 << 20):
            yield block

    try:
        size, sha = await stream_to_file(chunks(), part, services.settings.max_prior_bytes)
        if size == 0:
            raise ProblemError(422, "empty_file", f"{display} is empty", errors=[{"loc": ["body", "file"], "msg": "empty"}])
        key = None
        if idempotency_key:
            fingerprint = priors.prior_fingerprint(display, sha)
            replay = await anyio.to_thread.run_sync(
                lambda: priors.replay_prior(services.store, services.priors, owner, idempotency_key, fingerprint))
            if replay is not None:
                return replay, True
            key = (idempotency_key, fingerprint, services.settings.idempotency_ttl_s)
        try:
            row = await anyio.to_thread.run_sync(
                lambda: priors.add_prior(services.priors, services.artifacts, owner, part, name=display, idempotency=key))
        except IdempotencyConflict as exc:  # a concurrent request with the same key stored its prior first
            return priors.replay_existing(services.priors, owner, exc.existing, key[1]), True
        return row, False
    finally:
        part.unlink(missing_ok=True)  # moved into place on success; a refused file is removed


__all__ = ["receive_prior"]
