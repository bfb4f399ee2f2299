"""The FastAPI app factory: routes under /v1, problem+json errors, body limits, the reaper and webhook loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from api.errors import CatchAllMiddleware, ProblemError, document_problems, install_error_handlers, problem_response
from api.openapi_meta import document_meta_train_config
from api.routes import artifacts, jobs, methods, priors, system, uploads, webhooks
from api.schemas import JobPublic, WebhookEvent
from api.services.validation import close_inspectors
from service import jobs as job_service
from service.context import Services
from service.queue import JobQueue
from service.reaper import Reaper
from service.settings import Settings, get_settings
from service.webhooks import WebhookDispatcher, load_secret
from store import ArtifactStore, JobStore, WebhookStore, make_engine

logger = logging.getLogger("nfrecon.api")

TAGS = [
    {"name": "system", "description": "Liveness, readiness, limits and queue length."},
    {"name": "methods", "description": "What can be fitted, and the JSON Schema of each method's options."},
    {"name": "uploads", "description": "Input files, streamed and validated on arrival (a zip of shapes for meta-training)."},
    {"name": "priors", "description": "Meta-learned priors (MetaSDF): upload, list, download, delete; name one in a "
     "job's `spec.overrides.prior.id`, or make one with a meta-train job."},
    {"name": "jobs", "description": "Reconstruction jobs: create, watch, cancel, retry, delete."},
    {"name": "artifacts", "description": "Meshes, metrics, config and logs of finished jobs."},
    {"name": "webhooks", "description": "Signed POSTs when a job starts or ends (Standard Webhooks)."},
]


class BodyLimitMiddleware:
    """Reject bodies over the route's limit: at once from Content-Length, else while they stream; and
    bodies that stall or trickle (408): no piece for `body_timeout_s`, or an average rate under
    `min_body_rate_bytes_s` after `body_rate_grace_s`. Uvicorn has no body read timeout of its own,
    so without this a client holds a connection and a worker thread as long as it likes.

    Starlette parses a whole multipart body before the handler runs, so a check inside the handler
    would come after the bytes were spooled to disk (service.md §5.1). Answers given before the
    body was read say `Connection: close`: the rest of the body is never read, so the connection
    cannot carry another request.
    """

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings

    def _limit(self, scope) -> int | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"].rstrip("/")
        if path.endswith("/v1/uploads"):
            return self.settings.max_upload_bytes
        if path.endswith("/v1/jobs/form"):
            return self.settings.max_form_bytes
        if path.endswith("/v1/priors"):
            return self.settings.max_prior_bytes + (64 << 10)  # the file and its multipart framing
        return 1 << 20 if path.startswith("/v1/") else None  # JSON bodies are small

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            resp = problem_response(None, 400, "bad_content_length", "Content-Length must be a non-negative integer",
                                    headers={"Connection": "close"})
            return await resp(scope, receive, send)
        if limit is not None and length is not None and int(length) > limit:
            resp = problem_response(None, 413, "too_large", f"request body of {int(length)} bytes exceeds the limit "
                                    f"of {limit} bytes", headers={"Connection": "close"})
            return await resp(scope, receive, send)
        s = self.settings
        seen, done, start = 0, False, time.monotonic()

        async def limited():
            nonlocal seen, done
            if done:
                # After the body: a streaming response waits here for the disconnect, unlimited.
                return await receive()
            try:
                with anyio.fail_after(s.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise ProblemError(408, "body_timeout", f"no request body data arrived for {s.body_timeout_s:g} s "
                                   f"({seen} bytes received); send the body without pauses",
                                   headers={"Connection": "close"}) from None
            if message["type"] != "http.request":
                done = True
                return message
            seen += len(message.get("body", b""))
            done = not message.get("more_body", False)
            if limit is not None and seen > limit:
                raise ProblemError(413, "too_large", f"request body exceeds the limit of {limit} bytes",
                                   headers={"Connection": "close"})
            elapsed = time.monotonic() - start
            if (not done and s.min_body_rate_bytes_s and elapsed > s.body_rate_grace_s
                    and seen < s.min_body_rate_bytes_s * elapsed):
                raise ProblemError(408, "body_too_slow", f"request body arrives at {seen / elapsed:.0f} bytes/s, "
                                   f"under the minimum of {s.min_body_rate_bytes_s} bytes/s",
                                   headers={"Connection": "close"})
            return message

        return await self.app(scope, limited, send)


async def _periodic(fn, interval: float, name: str) -> None:
    """Run the blocking `fn` in a thread every `interval` seconds; a failing pass is logged, not fatal."""
    while True:
        try:
            await anyio.to_thread.run_sync(fn)
        except Exception:
            logger.exception("%s pass failed", name)
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None, *, queue: JobQueue | None = None) -> FastAPI:
    """A new app for `settings` (default: from NFRECON_* variables). Each app owns its stores; no globals."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(make_engine(settings.resolved_database_url))
        arts = ArtifactStore(settings.data_dir)
        q = queue or JobQueue(settings, store)
        q.store = store
        hooks = WebhookStore(store.engine)
        secret = load_secret(settings.webhook_secret, settings.data_dir)
        services = Services(settings=settings, store=store, artifacts=arts, queue=q, webhooks=hooks,
                            webhook_secret=secret)
        app.state.services = services
        reaper = Reaper(store, arts, settings, q)
        app.state.reaper = reaper

        def render_job(job) -> dict:
            return JobPublic.model_validate(job_service.job_public(services, job)).model_dump(mode="json")

        dispatcher = WebhookDispatcher(settings, store, hooks, secret, render_job)
        app.state.webhook_dispatcher = dispatcher
        tasks = []
        if settings.republish_on_startup:
            n = await anyio.to_thread.run_sync(lambda: reaper.republish_queued(unpublished_only=False))
            if n:
                logger.info("re-published %d queued jobs", n)
        if settings.reaper_enabled:
            tasks.append(asyncio.create_task(_periodic(reaper.run_once, settings.reaper_interval_s, "reaper")))
        if settings.webhooks_enabled:
            tasks.append(asyncio.create_task(_periodic(dispatcher.run_once, settings.webhook_interval_s, "webhook")))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            dispatcher.close()
            close_inspectors()  # the upload validators' fork servers
            if queue is None:
                q.close()
            store.engine.dispose()

    from nfcore import __version__

    app = FastAPI(
        title="nfrecon",
        version=__version__,
        summary="Surface reconstruction with neural fields, as jobs.",
        description="Upload a point cloud, mesh or image, create a job with a method and its options, follow its "
        "progress, download the mesh and its metrics. Errors are application/problem+json with a stable `code`.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
        docs_url=None,  # /docs and /redoc: served offline by install_offline_docs
        redoc_url=None,
    )
    install_error_handlers(app)
    document_problems(app)
    document_meta_train_config(app)
    from api.docs_assets import install_offline_docs

    install_offline_docs(app)
    from api.web import mount_web_page

    mount_web_page(app)  # the web page at /ui (and / redirects there): static files calling /v1
    for r in (system, methods, uploads, priors, jobs, artifacts, webhooks):
        app.include_router(r.router, prefix="/v1")

    @app.webhooks.post("job-event")
    def job_event(body: WebhookEvent) -> None:
        """POSTed to a job's `webhook` for each event in its `webhook_events_filter`: `job.started` when a worker
        picks it up, `job.completed` when it succeeded, failed or was canceled. Headers `webhook-id` (the same on
        retries: deduplicate on it), `webhook-timestamp` and `webhook-signature` (Standard Webhooks, secret from
        GET /v1/webhooks/secret). Answer 2xx within `webhook_timeout_s` (5 s); other answers are retried with
        backoff up to 5 attempts, 410 Gone stops. Webhooks are hints: GET /v1/jobs/{id} is the source of truth."""

    app.add_middleware(BodyLimitMiddleware, settings=settings)
    # Outermost (added last): an unexpected exception becomes a 500 problem here, inside Starlette's
    # ServerErrorMiddleware, which would answer and then re-raise, making uvicorn drop the connection.
    app.add_middleware(CatchAllMiddleware)
    return app
