"""RFC 9457 problem details: every error is `application/problem+json` with a stable `code`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ProblemError, not_found
from store import disk_full_error

__all__ = ["ProblemError", "not_found", "problem_response", "install_error_handlers", "CatchAllMiddleware",
           "document_problems"]

logger = logging.getLogger("nfrecon.api")

PROBLEM_JSON = "application/problem+json"

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_format", 416: "range_not_satisfiable",
          422: "invalid_request", 429: "queue_full", 500: "internal", 503: "unavailable",
          507: "insufficient_storage"}


def problem_response(request: Request | None, status: int, code: str, detail: str, *, title: str | None = None,
                     errors: list[dict] | None = None, headers: dict[str, str] | None = None,
                     instance: str | None = None) -> JSONResponse:
    body = {
        "type": f"https://nfrecon.dev/problems/{code.replace('_', '-')}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None or instance is not None:
        body["instance"] = request.url.path if request is not None else instance
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
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names only the first route that matched the path; a path served by
            # several routes (GET and DELETE /uploads/{id}) allows all of theirs (RFC 9110 §15.5.6).
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        return problem_response(request, exc.status_code, _CODES.get(exc.status_code, "error"), detail,
                                headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [{"loc": _clean_loc(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response(request, 422, "invalid_request", f"invalid request: {fields}", errors=errors)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path (what clients read).

    As in OpenAPI, a literal template (`/jobs/form`) owns a path over a templated one
    (`/jobs/{job_id}`). Empty when no template matches (then Starlette's own Allow stays).
    """
    import re

    table = getattr(request.app.state, "openapi_methods", None)
    if table is None:
        table = []
        for template, item in request.app.openapi().get("paths", {}).items():
            pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                              for part in re.split(r"(\{[^}]+\})", template))
            methods = {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")}
            table.append((re.compile(pattern + "$"), template.count("{"), methods))
        request.app.state.openapi_methods = table
    matches = [(params, methods) for rx, params, methods in table if rx.match(request.url.path)]
    if not matches:
        return []
    fewest = min(params for params, _ in matches)
    allowed = set().union(*(methods for params, methods in matches if params == fewest))
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


# Answers every operation can give besides its own (problem+json, components/schemas/Problem).
_BODY_PROBLEMS = {
    "400": "malformed request: a body that is not valid JSON (or UTF-8), a bad Content-Length",
    "408": "the request body stalled (no data for body_timeout_s) or arrived slower than min_body_rate_bytes_s",
    "413": "the request body is larger than the limit",
}


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the service sends: FastAPI documents its 422 as
    application/json with its own error model, while we answer problem+json; and the body limits and
    timeouts (400, 408, 413) apply to every operation that takes a body, whatever its route declares."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in schema.get("paths", {}).values():
            for method, op in item.items():
                if method not in ("get", "put", "post", "delete", "patch", "head", "options"):
                    continue
                responses = op.setdefault("responses", {})
                r422 = responses.get("422")
                if r422 is not None and "application/problem+json" not in r422.get("content", {}):
                    responses["422"] = {"description": "invalid request: the `errors` name each field",
                                        "content": problem}
                if "requestBody" in op:
                    for status, text in _BODY_PROBLEMS.items():
                        responses.setdefault(status, {"description": text, "content": problem})
        components = schema.get("components", {}).get("schemas", {})
        if "#/components/schemas/HTTPValidationError" not in str(schema.get("paths")):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


class CatchAllMiddleware:
    """An unexpected exception becomes a 500 problem+json, and the connection stays usable.

    Starlette's ServerErrorMiddleware (where an `Exception` handler would run) sends the handler's
    answer and then re-raises, so uvicorn closes the keep-alive connection and the client's next
    request on it fails too. This middleware sits inside it and does not re-raise once it answered.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            full = disk_full_error(exc)
            if full is not None:
                logger.warning("%s %s: the data directory is full (%s)", scope.get("method"), scope.get("path"), full)
            else:
                logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer was sent: only closing the connection can tell the client
            if full is not None:
                # The server's condition (a download's all.zip, a job's input link), not the client's fault.
                answer = problem_response(None, 507, "insufficient_storage", "the server has no space left on its "
                                          "data directory; try again later", instance=scope.get("path", ""))
            else:
                answer = problem_response(None, 500, "internal", f"internal error: {type(exc).__name__}",
                                          instance=scope.get("path", ""))
            await answer(scope, receive, send)
