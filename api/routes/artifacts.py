"""Artifacts of a succeeded job: list, download (Range, ETag, If-None-Match) and all of them as one zip."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from api.conditional import etag_matches
from api.deps import OwnerDep, ServicesDep
from api.errors import ProblemError
from api.schemas import ArtifactList, problems
from service import jobs as svc
from store.artifacts import _MEDIA_TYPES  # the media types artifacts are served with, for the OpenAPI document

router = APIRouter(tags=["artifacts"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ARTIFACT_TYPES = sorted({*_MEDIA_TYPES.values(), "application/octet-stream"})
_CONDITIONAL = {
    206: {"description": "the requested byte range (`Content-Range`); several ranges as multipart/byteranges",
          "content": {**{t: _BINARY for t in _ARTIFACT_TYPES}, "multipart/byteranges": _BINARY}},
    304: {"description": "not modified: `If-None-Match` matches the ETag (the file's sha256)"},
}
_FILE = {200: {"content": {t: _BINARY for t in _ARTIFACT_TYPES},
               "description": "the file; its media type by extension (mesh.ply: application/x-ply, ...)"},
         **_CONDITIONAL}
_ZIP = {200: {"content": {"application/zip": _BINARY}, "description": "every artifact, the manifest and the log"},
        **{**_CONDITIONAL, 206: {**_CONDITIONAL[206], "content": {"application/zip": _BINARY,
                                                                   "multipart/byteranges": _BINARY}}}}
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class _WholeFile(FileResponse):
    """A FileResponse that ignores the request's Range (Starlette answers other units with a 400)."""

    async def __call__(self, scope, receive, send):
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]}
        await super().__call__(scope, receive, send)


def _check_range(request: Request, etag: str, size: int) -> bool:
    """Whether to serve the Range; refuses those FileResponse would answer in text/plain: 400 malformed,
    416 unsatisfiable.

    A range in another unit must be ignored (RFC 9110 §14.2): False. An If-Range that does not match
    (§13.1.5) also means the whole file, which FileResponse decides itself.
    """
    value = request.headers.get("range")
    if value is None or request.method not in ("GET", "HEAD"):
        return True
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return True
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes":
        return False
    satisfiable = False
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m or (not m.group(1) and not m.group(2)):
            raise ProblemError(400, "invalid_range", f"malformed Range {value!r}: expected bytes=first-last, "
                               "bytes=first- or bytes=-suffix")
        first, last = m.group(1), m.group(2)
        if first and last and int(first) > int(last):
            raise ProblemError(400, "invalid_range", f"malformed Range {value!r}: first byte {first} is after "
                               f"last byte {last}")
        if (first and int(first) < size) or (not first and int(last) > 0 and size > 0):
            satisfiable = True
    if not satisfiable:
        raise ProblemError(416, "range_not_satisfiable", f"Range {value!r} is outside the file's {size} bytes",
                           headers={"Content-Range": f"bytes */{size}"})
    return True


def serve_file(request: Request, path: Path, media_type: str, filename: str, etag: str) -> Response:
    """A file with ETag, If-None-Match (304) and Range (206) handling (artifacts and prior files)."""
    if request.method in ("GET", "HEAD") and etag_matches(
            request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    cls = FileResponse if _check_range(request, etag, path.stat().st_size) else _WholeFile
    return cls(path, media_type=media_type, filename=filename, headers={"ETag": etag})


@router.get("/jobs/{job_id}/artifacts", response_model=ArtifactList, responses=problems(401, 404, 409, 410),
            summary="The files a succeeded job produced, with sizes and sha256")
def list_artifacts(job_id: str, services: ServicesDep, owner: OwnerDep) -> dict:
    _job, entries = svc.artifacts_of(services, owner, job_id)
    base = f"/v1/jobs/{job_id}/artifacts"
    return {"items": [{**e, "url": f"{base}/{e['name']}"} for e in entries], "zip_url": f"{base}/all.zip"}


@router.get("/jobs/{job_id}/artifacts/all.zip", response_class=FileResponse,
            responses={**_ZIP, **problems(400, 401, 404, 409, 410, 416, 507)},
            summary="Every artifact and the log in one zip")
def download_zip(request: Request, job_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    svc.artifacts_of(services, owner, job_id)
    path = services.artifacts.zip_path(job_id)
    if path is None:
        raise ProblemError(410, "artifacts_expired", f"the artifacts of job {job_id} are gone")
    # The zip is built once and never rewritten, so its size and mtime identify its bytes.
    st = path.stat()
    return serve_file(request, path, "application/zip", f"{job_id}.zip", f'"zip-{st.st_size:x}-{st.st_mtime_ns:x}"')


@router.get("/jobs/{job_id}/artifacts/{name:path}", response_class=FileResponse,
            responses={**_FILE, **problems(400, 401, 404, 409, 410, 416)},
            summary="Download one artifact (Range requests, If-None-Match with its ETag)")
def download_artifact(request: Request, job_id: str, name: str, services: ServicesDep, owner: OwnerDep) -> Response:
    _job, entries = svc.artifacts_of(services, owner, job_id)
    entry = next((e for e in entries if e["name"] == name), None)
    path = services.artifacts.artifact_path(job_id, name) if entry else None
    if entry is None or path is None or not path.is_file():
        raise ProblemError(404, "artifact_not_found", f"job {job_id} has no artifact {name!r}; "
                           f"it has {', '.join(e['name'] for e in entries)}")
    # The content hash is a strong validator that survives copies between volumes (mtime would not).
    return serve_file(request, path, entry["media_type"], name.rsplit("/", 1)[-1], f'"{entry["sha256"]}"')
