"""Streamed raw uploads (one file per request, retryable on its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import OwnerDep, ServicesDep
from api.schemas import UploadPublic, problems
from api.services import uploads

router = APIRouter(tags=["uploads"])

_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes as the raw body (not multipart).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/uploads", status_code=201, response_model=UploadPublic, openapi_extra=_RAW_BODY,
    responses={200: {"model": UploadPublic, "description": "replayed (same Idempotency-Key and file)"},
               **problems(401, 413, 415, 422, 507)},
    summary="Upload one input file (raw body), validated on arrival",
)
async def create_upload(
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    filename: Annotated[str | None, Query(description="File name; its extension gives the format.",
                                         examples=["bunny.ply"])] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict:
    """Streams the body to disk (413 as soon as it passes the limit), hashes it (sha256) and reports what
    the file holds: kind, point count, whether normals are present, bounding box."""
    name = filename or uploads.filename_from_disposition(request.headers.get("content-disposition"))
    length = request.headers.get("content-length")
    up, replayed = await uploads.receive_upload(
        services, owner, request.stream(), filename=name, content_type=request.headers.get("content-type"),
        content_length=int(length) if length and length.isdigit() else None, idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/v1/uploads/{up.id}"
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return uploads.upload_public(up)


@router.get("/uploads/{upload_id}", response_model=UploadPublic, responses=problems(401, 404), summary="An upload")
def get_upload(upload_id: str, services: ServicesDep, owner: OwnerDep) -> dict:
    return uploads.upload_public(uploads.get_upload(services, owner, upload_id))


@router.delete("/uploads/{upload_id}", status_code=204, responses=problems(401, 404),
               summary="Discard an upload (jobs made from it keep their own copy)")
def delete_upload(upload_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    uploads.delete_upload(services, owner, upload_id)
    return Response(status_code=204)
