"""Artifacts of a succeeded job: list, download (Range, ETag) and all of them as one zip."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import OwnerDep, ServicesDep
from api.errors import ProblemError
from api.schemas import ArtifactList, problems
from service import jobs as svc

router = APIRouter(tags=["artifacts"])

_FILE = {200: {"content": {"application/octet-stream": {}}, "description": "the file"},
         206: {"description": "the requested byte range"}}


@router.get("/jobs/{job_id}/artifacts", response_model=ArtifactList, responses=problems(401, 404, 409, 410),
            summary="The files a succeeded job produced, with sizes and sha256")
def list_artifacts(job_id: str, services: ServicesDep, owner: OwnerDep) -> dict:
    _job, entries = svc.artifacts_of(services, owner, job_id)
    base = f"/v1/jobs/{job_id}/artifacts"
    return {"items": [{**e, "url": f"{base}/{e['name']}"} for e in entries], "zip_url": f"{base}/all.zip"}


@router.get("/jobs/{job_id}/artifacts/all.zip", response_class=FileResponse,
            responses={**_FILE, **problems(401, 404, 409, 410)}, summary="Every artifact and the log in one zip")
def download_zip(job_id: str, services: ServicesDep, owner: OwnerDep) -> FileResponse:
    svc.artifacts_of(services, owner, job_id)
    path = services.artifacts.zip_path(job_id)
    if path is None:
        raise ProblemError(410, "artifacts_expired", f"the artifacts of job {job_id} are gone")
    return FileResponse(path, media_type="application/zip", filename=f"{job_id}.zip")


@router.get("/jobs/{job_id}/artifacts/{name:path}", response_class=FileResponse,
            responses={**_FILE, **problems(401, 404, 409, 410, 416)},
            summary="Download one artifact (supports Range requests)")
def download_artifact(job_id: str, name: str, services: ServicesDep, owner: OwnerDep) -> FileResponse:
    _job, entries = svc.artifacts_of(services, owner, job_id)
    entry = next((e for e in entries if e["name"] == name), None)
    path = services.artifacts.artifact_path(job_id, name) if entry else None
    if entry is None or path is None or not path.is_file():
        raise ProblemError(404, "artifact_not_found", f"job {job_id} has no artifact {name!r}; "
                           f"it has {', '.join(e['name'] for e in entries)}")
    # The content hash is a strong validator that survives copies between volumes (mtime would not).
    return FileResponse(path, media_type=entry["media_type"], filename=name.rsplit("/", 1)[-1],
                        headers={"ETag": f'"{entry["sha256"]}"'})
