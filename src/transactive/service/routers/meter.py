"""Meter readings: post a batch (signed or unsigned), read back what tenancy allows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime

from transactive.service.deps import DB, Svc, require
from transactive.service.metering import (
    BatchOut,
    ReadingBatch,
    ReadingOut,
    list_readings,
    post_readings,
)
from transactive.service.problems import ERRORS
from transactive.service.security import Principal

router = APIRouter(tags=["metering"])
Writer = Annotated[Principal, Depends(require("meter:write"))]
Reader = Annotated[Principal, Depends(require("market:read"))]
WRITE_ERRORS = {**ERRORS, 409: ERRORS[422] | {"description": "Conflict"}}


@router.post(
    "/v1/meter-readings",
    status_code=201,
    response_model=BatchOut,
    responses={**WRITE_ERRORS, 200: {"model": BatchOut, "description": "Nothing new (replay)"}},
    summary="Post interval meter readings (all or nothing)",
)
def post_meter_readings(
    body: ReadingBatch, response: Response, db: DB, svc: Svc, p: Writer
) -> BatchOut:
    status, result = post_readings(db, p, body.readings, svc.market.interval_s, svc.now())
    response.status_code = status
    return result


@router.get(
    "/v1/meter-readings",
    response_model=list[ReadingOut],
    responses=ERRORS,
    summary="Meter readings the caller may read",
)
def get_meter_readings(
    db: DB,
    p: Reader,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[ReadingOut]:
    return list_readings(
        db, p, resource_id=resource_id, start=start, end=end, offset=offset, limit=limit
    )
