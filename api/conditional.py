"""Conditional requests (RFC 9110 §13): the one If-None-Match comparison every route uses."""

from __future__ import annotations


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match per RFC 9110 §13.1.2: `*` or any listed tag, compared weakly (W/ ignored)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))
