"""Resources: register (participants, aggregators for their portfolio), list, get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from transactive.service.deps import DB, Svc, require
from transactive.service.problems import ERRORS
from transactive.service.resources import (
    ResourceIn,
    ResourceOut,
    get_resource,
    list_resources,
    register,
)
from transactive.service.security import Principal

router = APIRouter(tags=["resources"])
Writer = Annotated[Principal, Depends(require("resources:write"))]
Reader = Annotated[Principal, Depends(require("market:read"))]
WRITE_ERRORS = {**ERRORS, 409: ERRORS[422] | {"description": "Conflict"}}


@router.post(
    "/v1/resources",
    status_code=201,
    response_model=ResourceOut,
    responses=WRITE_ERRORS,
    summary="Register a resource at a bus of an area",
)
def post_resource(body: ResourceIn, db: DB, svc: Svc, p: Writer) -> ResourceOut:
    return register(db, svc.market, p, body, svc.now())


@router.get(
    "/v1/resources",
    response_model=list[ResourceOut],
    responses=ERRORS,
    summary="The resources the caller may read",
)
def get_resources(
    db: DB,
    p: Reader,
    party_id: Annotated[str | None, Query(max_length=64)] = None,
    area: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[ResourceOut]:
    return list_resources(db, p, party_id=party_id, area=area, offset=offset, limit=limit)


@router.get(
    "/v1/resources/{resource_id}",
    response_model=ResourceOut,
    responses=ERRORS,
    summary="One resource",
)
def get_one(resource_id: Annotated[str, Path(max_length=64)], db: DB, p: Reader) -> ResourceOut:
    return get_resource(db, p, resource_id)
