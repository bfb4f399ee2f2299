"""Health, readiness and service info."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import OwnerDep, ServicesDep
from api.schemas import Health, Info, Ready
from service.reaper import Reaper
from store import JobStatus

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
def health() -> Health:
    return Health()


@router.get("/ready", response_model=Ready, summary="Readiness: database and broker reachable",
            responses={503: {"model": Ready, "description": "a dependency is down"}})
async def ready(services: ServicesDep):
    result = {"database": "ok", "broker": "ok"}
    try:
        await anyio.to_thread.run_sync(services.store.ping)
    except Exception as exc:
        result["database"] = f"error: {type(exc).__name__}"
    try:
        await anyio.to_thread.run_sync(services.queue.ping)
    except Exception as exc:
        result["broker"] = f"error: {type(exc).__name__}"
    if result["broker"] == "ok" and result["database"] == "ok":
        # A broker that restarted without persistence answers pings but has forgotten queued jobs:
        # not ready until the reaper has re-published them (issue 9).
        reaper = Reaper(services.store, services.artifacts, services.settings, services.queue)
        try:
            lost = await anyio.to_thread.run_sync(reaper.lost_messages)
        except Exception as exc:
            result["broker"] = f"error: {type(exc).__name__}"
        else:
            if lost:
                result["broker"] = (f"error: lost the messages of {len(lost)} queued job(s); "
                                    "the reaper re-publishes them")
    ok = result["database"] == "ok" and result["broker"] == "ok"
    workers = len(await anyio.to_thread.run_sync(services.queue.workers)) if result["broker"] == "ok" else 0
    return JSONResponse(Ready(ready=ok, workers=workers, **result).model_dump(), status_code=200 if ok else 503)


@router.get("/info", response_model=Info, summary="Service info: version, limits, queue length, retention")
def info(services: ServicesDep, _owner: OwnerDep) -> Info:
    from nfcore import __version__

    s = services.settings
    return Info(
        version=__version__,
        limits={"max_upload_bytes": s.max_upload_bytes, "max_form_bytes": s.max_form_bytes, "max_queue": s.max_queue,
                "max_queue_per_key": s.max_queue_per_key, "max_runtime_s": s.max_runtime_s,
                "max_attempts": s.max_attempts, "max_prior_bytes": s.max_prior_bytes,
                "meta_max_steps": s.meta_max_steps, "meta_max_shapes": s.meta_max_shapes},
        queue={"queued": services.store.count_jobs([JobStatus.queued.value]),
               "running": services.store.count_jobs([JobStatus.running.value, JobStatus.canceling.value])},
        retention={"jobs_ttl_s": s.job_ttl_s, "uploads_ttl_s": s.upload_ttl_s,
                   "idempotency_ttl_s": s.idempotency_ttl_s},
        auth=bool(s.api_keys),
        workers=services.queue.workers(),
    )
