"""Keyset page tokens of the lists (jobs, priors): the (created_at, id) of a page's last item, opaque to clients."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from service.errors import ProblemError


def encode_token(row) -> str:
    """The token of the page after `row` (anything with `created_at` and `id`)."""
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime, str]:
    """(created_at, id) of a token; 422 naming `page_token` when it is not one this server issued."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, rid = json.loads(raw)
        return datetime.fromisoformat(created), str(rid)
    except Exception as exc:
        raise ProblemError(422, "invalid_page_token", "page_token is not one this server issued",
                           errors=[{"loc": ["query", "page_token"], "msg": "malformed"}]) from exc


__all__ = ["decode_token", "encode_token"]
