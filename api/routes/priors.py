"""Priors: upload (multipart), list, read, download and delete meta-learned priors, scoped by API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse

from api.deps import OwnerDep, ServicesDep
from api.routes.artifacts import serve_file
from api.schemas import PriorList, PriorPublic, problems
from api.services import priors as receiving
from service import priors as svc

router = APIRouter(tags=["priors"])

_FILE = {200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
               "description": "the prior file (safetensors); ETag is its sha256"},
         304: {"description": "not modified: `If-None-Match` matches the ETag"}}


@router.post("/priors", status_code=201, response_model=PriorPublic,
             responses={201: {"description": "stored; Location names the prior"},
                        200: {"model": PriorPublic, "description": "replayed (same Idempotency-Key, file and name)",
                              "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}},
                        **problems(401, 409, 413, 422, 507)},
             summary="Upload a prior file (multipart `file`), validated before it is stored")
async def create_prior(
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description="A prior written by `nfrecon meta-train` (safetensors, version 1).")],
    name: Annotated[str | None, Form(max_length=255, description="Display name; default: the file's name.")] = None,
    idempotency_key: Annotated[str | None, Header(description="Retry-safe upload: same key + same file and name = "
                                                  "the same prior (200, `Idempotent-Replayed: true`).")] = None,
) -> dict:
    """Refused with 422 (`invalid_prior`, the reason in `detail`) when the file is not a prior of this version:
    a pickle or other non-safetensors file, another version, tensors that do not fit the field its header
    describes, non-float or non-finite tensors, or a file edited after it was written (digest mismatch).

    With `Idempotency-Key`, as for uploads and jobs: the same key with the same file and name answers 200 with
    the prior stored the first time; with another file or name 422 `idempotency_key_reused`; once that prior
    was deleted 409 `idempotency_key_stale`."""
    row, replayed = await receiving.receive_prior(services, owner, file, name=name, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/priors/{row.id}"
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return svc.prior_public(row)


@router.get("/priors", response_model=PriorList, responses=problems(401, 422), summary="List your priors, newest first")
def list_priors(
    services: ServicesDep,
    owner: OwnerDep,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(description="next_page_token of the previous page.")] = None,
) -> dict:
    return svc.list_priors(services.priors, owner, page_size=page_size, page_token=page_token)


@router.get("/priors/{prior_id}", response_model=PriorPublic, responses=problems(401, 404),
            summary="A prior: its field, inner steps, algorithm, how it was made")
def get_prior(prior_id: str, services: ServicesDep, owner: OwnerDep) -> dict:
    return svc.prior_public(svc.get_prior(services.priors, owner, prior_id))


@router.get("/priors/{prior_id}/file", response_class=FileResponse, responses={**_FILE, **problems(400, 401, 404, 416)},
            summary="Download a prior file (Range requests, If-None-Match with its ETag)")
def download_prior(request: Request, prior_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    row, path = svc.prior_file(services.priors, services.artifacts, owner, prior_id)
    return serve_file(request, path, "application/octet-stream", f"{row.id}.safetensors", f'"{row.sha256}"')


@router.delete("/priors/{prior_id}", status_code=204, responses=problems(401, 404),
               summary="Delete a prior (jobs already submitted with it keep their own copy)")
def delete_prior(prior_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    svc.delete_prior(services.priors, services.artifacts, owner, prior_id)
    return Response(status_code=204)
