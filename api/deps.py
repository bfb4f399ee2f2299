"""Dependencies: the per-app service container and the caller's identity (bearer API keys)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.context import Services
from service.errors import ProblemError

# Both dependencies are `async def` although they never await: FastAPI runs a plain `def` dependency
# in the thread pool, and on a loaded machine each such hop (a thread switch, the GIL handed over)
# costs more than the work. Neither blocks: an attribute read, a header and a constant-time compare.


async def get_services(request: Request) -> Services:
    return request.app.state.services


def owner_of(key: str) -> str:
    """A stable owner id for an API key (the key itself is never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def get_owner(request: Request, services: Annotated[Services, Depends(get_services)]) -> str:
    """The caller's owner id: "" when keys are off; 401 when keys are on and none or a wrong one was sent."""
    keys = services.settings.api_keys
    if not keys:
        return ""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ProblemError(401, "unauthorized", "missing bearer token (Authorization: Bearer <key>)",
                           headers={"WWW-Authenticate": "Bearer"})
    for key in keys:
        if hmac.compare_digest(key.encode(), token.encode()):
            return owner_of(key)
    raise ProblemError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


ServicesDep = Annotated[Services, Depends(get_services)]
OwnerDep = Annotated[str, Depends(get_owner)]
