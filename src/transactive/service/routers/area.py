"""Areas: the market's DSO areas, their feeder and buses, as the node tree
area → feeder → buses. The TSO sees each area's summary only (no buses)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from transactive.service.area import MarketArea
from transactive.service.deps import Svc, require
from transactive.service.problems import ERRORS, ApiError
from transactive.service.security import Principal

router = APIRouter(tags=["areas"])
Reader = Annotated[Principal, Depends(require("market:read"))]


class AreaSummary(BaseModel):
    """An area: its feeder and market rules."""

    name: str
    feeder: str
    n_buses: int
    currency: str
    interval_s: int = Field(description="Market interval, s.")
    floor: float = Field(description="Price floor, currency/kWh.")
    cap: float = Field(description="Price cap, currency/kWh.")


class BusOut(BaseModel):
    """A bus of the area's feeder."""

    name: str
    vn_kv: float = Field(description="Nominal voltage, kV.")


class Node(BaseModel):
    """A node of the area's tree: ``area``, ``feeder`` or ``bus``."""

    id: str
    kind: str
    children: list[Node] = []


class AreaOut(AreaSummary):
    """An area with one page of its buses (in feeder order) and its node tree over that
    page; ``buses``/``tree`` are null for the TSO."""

    offset: int
    limit: int
    buses: list[BusOut] | None
    tree: Node | None


def _summary(a: MarketArea, svc: Svc) -> AreaSummary:
    m = svc.market
    return AreaSummary(
        name=a.name,
        feeder=a.feeder.name,
        n_buses=a.feeder.n_bus,
        currency=m.currency,
        interval_s=m.interval_s,
        floor=m.floor,
        cap=m.cap,
    )


@router.get(
    "/v1/areas", response_model=list[AreaSummary], responses=ERRORS, summary="The market's areas"
)
def list_areas(
    svc: Svc,
    _: Reader,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AreaSummary]:
    names = sorted(svc.market.areas)[offset : offset + limit]
    return [_summary(svc.market.areas[n], svc) for n in names]


@router.get(
    "/v1/areas/{area}",
    response_model=AreaOut,
    responses=ERRORS,
    summary="An area: feeder, buses (paged) and the node tree",
)
def get_area(
    area: Annotated[str, Path(max_length=64)],
    svc: Svc,
    p: Reader,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> AreaOut:
    a = svc.market.areas.get(area)
    if a is None:
        raise ApiError(404, f"no area {area!r}")
    summary = _summary(a, svc)
    if p.role == "tso":
        return AreaOut(**summary.model_dump(), offset=offset, limit=limit, buses=None, tree=None)
    page = a.feeder.buses.iloc[offset : offset + limit]
    buses = [
        BusOut(name=str(n), vn_kv=float(v))
        for n, v in zip(page["name"], page["vn_kv"], strict=True)
    ]
    tree = Node(
        id=a.name,
        kind="area",
        children=[
            Node(
                id=a.feeder.name,
                kind="feeder",
                children=[Node(id=b.name, kind="bus") for b in buses],
            )
        ],
    )
    return AreaOut(**summary.model_dump(), offset=offset, limit=limit, buses=buses, tree=tree)
