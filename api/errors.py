"""RFC 9457 problem details: every error is `application/problem+json` with a stable `code`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ProblemError, not_found

__all__ = ["ProblemError", "not_found", "problem_response", "install_error_handlers"]

logger = logging.getLogger("nfrecon.api")

PROBLEM_JSON = "application/problem+json"

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_format", 416: "range_not_satisfiable",
          422: "invalid_request", 429: "queue_full", 500: "internal", 503: "unavailable"}


def problem_response(request: Request | None, status: int, code: str, detail: str, *, title: str | None = None,
                     errors: list[dict] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "type": f"https://nfrecon.dev/problems/{code.replace('_', '-')}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _clean_loc(loc) -> list:
    return [p for p in loc if not (isinstance(p, str) and (p.startswith("function-") or p in ("tagged-union",)))]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError):
        return problem_response(request, exc.status, exc.code, exc.detail, title=exc.title, errors=exc.errors,
                                headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        # A size limit hit while FastAPI parsed a form reaches us wrapped in a 400.
        if isinstance(exc.__cause__, ProblemError):
            return await _problem(request, exc.__cause__)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(request, exc.status_code, _CODES.get(exc.status_code, "error"), detail,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [{"loc": _clean_loc(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response(request, 422, "invalid_request", f"invalid request: {fields}", errors=errors)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal", f"internal error: {type(exc).__name__}")
