"""The method catalogue: tasks, the JSON Schema of a method spec, and the presets."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OwnerDep
from api.schemas import MethodDetail, MethodList, problems
from api.services import methods

router = APIRouter(tags=["methods"])


@router.get("/methods", response_model=MethodList, summary="List the methods")
def list_methods(_owner: OwnerDep) -> dict:
    return {"items": methods.summaries()}


@router.get("/methods/{name}", response_model=MethodDetail, responses=problems(404),
            summary="A task with the JSON Schema of a method spec and what each preset sets per device")
def get_method(name: str, _owner: OwnerDep) -> dict:
    return methods.detail(name)
