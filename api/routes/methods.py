"""The method catalogue and each method's options schema."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OwnerDep, ServicesDep
from api.schemas import MethodDetail, MethodList, problems
from api.services import methods

router = APIRouter(tags=["methods"])


@router.get("/methods", response_model=MethodList, summary="List the methods")
def list_methods(_owner: OwnerDep) -> dict:
    return {"items": [methods.summary(n) for n in methods.METHODS]}


@router.get("/methods/{name}", response_model=MethodDetail, responses=problems(404),
            summary="A method with the JSON Schema of its options and its presets")
def get_method(name: str, services: ServicesDep, _owner: OwnerDep) -> dict:
    return methods.detail(name, services.settings.job_device)
