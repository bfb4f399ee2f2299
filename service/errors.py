"""`ProblemError`: a failure the service reports to its caller as an RFC 9457 problem.

Service functions raise it with an HTTP status and a stable machine-readable `code`; the API turns
it into `application/problem+json` (api/errors.py), and nothing below the API needs FastAPI for it.
"""

from __future__ import annotations

from http import HTTPStatus


class ProblemError(Exception):
    """A problem with a status, a stable `code`, a human `detail` and, for bad fields, `errors`."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 errors: list[dict] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = headers or {}


def not_found(what: str, ident: str) -> ProblemError:
    return ProblemError(404, f"{what}_not_found", f"no {what} with id {ident!r}")


__all__ = ["ProblemError", "not_found"]
