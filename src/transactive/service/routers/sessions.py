"""Market sessions, their results and dispatch.

Sessions and their aggregate results are public to every holder of ``market:read``; awards
are filtered by tenancy (a participant its own, an aggregator its portfolio, the DSO its
area, auditor/admin all, the TSO none); bus prices go to everyone but the TSO, which gets
the substation aggregate (price and import) only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import func, select

from transactive.errors import TransactiveError
from transactive.service import tenancy
from transactive.service.clearing import ClearingError, clear_session
from transactive.service.deps import DB, Svc, require
from transactive.service.models import Award, Bid, BusPrice, MarketSession
from transactive.service.problems import ERRORS, ApiError
from transactive.service.security import Principal

router = APIRouter(tags=["sessions"])
Reader = Annotated[Principal, Depends(require("market:read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
SessionId = Annotated[str, Field(min_length=1, max_length=120)]
Offset = Annotated[int, Query(ge=0, le=10**12)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Stage = Literal["day-ahead", "real-time", "flexibility"]
Status = Literal["open", "closed", "cleared", "failed"]


class SessionOut(BaseModel):
    """A market session; the result fields are null until it is cleared."""

    id: str
    area: str
    stage: str
    interval_start: datetime
    duration_s: int = Field(description="Interval length, s.")
    gate_closure: datetime
    status: str = Field(description="open, closed, cleared or failed.")
    clearing: str = Field(description="auction or network.")
    floor: float = Field(description="Price floor, currency/kWh.")
    cap: float = Field(description="Price cap, currency/kWh.")
    price: float | None = Field(
        description="Clearing price (auction) or substation price (network), currency/kWh."
    )
    quantity_kw: float | None = Field(description="Traded (auction) or bought (network), kW.")
    result_status: str | None
    n_bids: int
    result_hash: str | None = Field(description="SHA-256 of the journal's session record.")
    cleared_at: datetime | None
    substation_price: float | None = Field(description="currency/kWh.")
    substation_import_kw: float | None = Field(description="Import at the substation, kW.")
    merchandising_surplus: float | None = Field(
        description="Kept by the DSO (congestion and loss rent), currency."
    )


class AwardOut(BaseModel):
    """A cleared bid: kW (+ bought, − sold), price (currency/kWh), amount (currency, + pays)."""

    bid_id: str = Field(description="Public bid id.")
    party_id: str
    award_kw: float
    price: float
    amount: float


class BusPriceOut(BaseModel):
    bus: str
    price: float = Field(description="currency/kWh (the DLMP under network clearing).")
    net_kw: float = Field(description="Awarded net load at the bus, kW (+ consumption).")


class PricesOut(BaseModel):
    """A session's prices; ``buses`` is null for the TSO (substation aggregate only)."""

    session_id: str
    price: float | None
    substation_price: float | None
    substation_import_kw: float | None
    buses: list[BusPriceOut] | None


class DispatchOut(BaseModel):
    """A party's awarded kW in one cleared session (+ consume, − produce)."""

    session_id: str
    stage: str
    interval_start: datetime
    duration_s: int
    award_kw: float


def session_out(m: MarketSession) -> SessionOut:
    return SessionOut(
        id=m.id,
        area=m.area,
        stage=m.stage,
        interval_start=m.interval_start,
        duration_s=m.duration_s,
        gate_closure=m.gate_closure,
        status=m.status,
        clearing=m.clearing,
        floor=m.floor,
        cap=m.cap,
        price=m.price,
        quantity_kw=m.quantity_kw,
        result_status=m.result_status,
        n_bids=m.n_bids,
        result_hash=m.result_hash,
        cleared_at=m.cleared_at,
        substation_price=m.substation_price,
        substation_import_kw=m.substation_import_kw,
        merchandising_surplus=m.merchandising_surplus,
    )


def _session(db: DB, session_id: str) -> MarketSession:
    m = db.get(MarketSession, session_id)
    if m is None:
        raise ApiError(404, f"session {session_id!r} not found")
    return m


@router.get(
    "/v1/sessions", response_model=list[SessionOut], responses=ERRORS, summary="Market sessions"
)
def list_sessions(
    db: DB,
    _: Reader,
    area: Annotated[str | None, Query(max_length=64)] = None,
    stage: Stage | None = None,
    status: Status | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> list[SessionOut]:
    q = select(MarketSession)
    if area is not None:
        q = q.where(MarketSession.area == area)
    if stage is not None:
        q = q.where(MarketSession.stage == stage)
    if status is not None:
        q = q.where(MarketSession.status == status)
    q = q.order_by(MarketSession.interval_start, MarketSession.stage, MarketSession.area)
    return [session_out(m) for m in db.scalars(q.offset(offset).limit(limit))]


@router.get(
    "/v1/sessions/{session_id}",
    response_model=SessionOut,
    responses=ERRORS,
    summary="One market session",
)
def get_session(session_id: SessionId, db: DB, _: Reader) -> SessionOut:
    return session_out(_session(db, session_id))


@router.get(
    "/v1/sessions/{session_id}/awards",
    response_model=list[AwardOut],
    responses=ERRORS,
    summary="Awards of a session you may read",
)
def list_awards(
    session_id: SessionId, db: DB, p: Reader, offset: Offset = 0, limit: Limit = 100
) -> list[AwardOut]:
    _session(db, session_id)
    q = (
        select(Bid.id, Bid.party_id, Award.award_kw, Award.price, Award.amount)
        .join(Bid, Bid.seq == Award.bid_seq)
        .where(Bid.session_id == session_id, tenancy.readable(p, Bid.party_id))
        .order_by(Award.bid_seq)
        .offset(offset)
        .limit(limit)
    )
    return [
        AwardOut(bid_id=b, party_id=party, award_kw=kw, price=pr, amount=m)
        for b, party, kw, pr, m in db.execute(q)
    ]


@router.get(
    "/v1/sessions/{session_id}/prices",
    response_model=PricesOut,
    responses=ERRORS,
    summary="Bus prices of a session (TSO: the substation aggregate)",
)
def get_prices(
    session_id: SessionId, db: DB, p: Reader, offset: Offset = 0, limit: Limit = 100
) -> PricesOut:
    m = _session(db, session_id)
    buses: list[BusPriceOut] | None = None
    if p.role != "tso":
        q = (
            select(BusPrice.bus, BusPrice.price, BusPrice.net_kw)
            .where(BusPrice.session_id == session_id)
            .order_by(BusPrice.bus)
            .offset(offset)
            .limit(limit)
        )
        buses = [BusPriceOut(bus=b, price=pr, net_kw=kw) for b, pr, kw in db.execute(q)]
    return PricesOut(
        session_id=m.id,
        price=m.price,
        substation_price=m.substation_price,
        substation_import_kw=m.substation_import_kw,
        buses=buses,
    )


@router.get(
    "/v1/dispatch",
    response_model=list[DispatchOut],
    responses=ERRORS,
    summary="A party's awarded kW per interval",
)
def get_dispatch(
    db: DB,
    p: Reader,
    party_id: Annotated[str | None, Query(max_length=64)] = None,
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> list[DispatchOut]:
    who = party_id or p.party_id
    if not tenancy.may_read(db, p, who):
        raise ApiError(404, f"party {who!r} not found")
    kw = func.sum(Award.award_kw)
    q = (
        select(
            MarketSession.id,
            MarketSession.stage,
            MarketSession.interval_start,
            MarketSession.duration_s,
            kw,
        )
        .join(Bid, Bid.seq == Award.bid_seq)
        .join(MarketSession, MarketSession.id == Bid.session_id)
        .where(Bid.party_id == who)
    )
    if start is not None:
        q = q.where(MarketSession.interval_start >= start)
    if end is not None:
        q = q.where(MarketSession.interval_start < end)
    q = (
        q.group_by(
            MarketSession.id,
            MarketSession.stage,
            MarketSession.interval_start,
            MarketSession.duration_s,
        )
        .order_by(MarketSession.interval_start, MarketSession.id)
        .offset(offset)
        .limit(limit)
    )
    return [
        DispatchOut(session_id=sid, stage=st, interval_start=t0, duration_s=dur, award_kw=total)
        for sid, st, t0, dur, total in db.execute(q)
    ]


@router.post(
    "/v1/sessions/{session_id}/clear",
    response_model=SessionOut,
    responses={**ERRORS, 409: ERRORS[422]},
    summary="Clear a session now (admin; idempotent)",
)
async def post_clear(session_id: SessionId, svc: Svc, _: Admin) -> SessionOut:
    def run() -> MarketSession:
        with svc.db.sessions() as s:
            if s.get(MarketSession, session_id) is None:
                raise ApiError(404, f"session {session_id!r} not found")
            try:
                return clear_session(s, svc, session_id)
            except (ClearingError, TransactiveError) as exc:
                s.rollback()
                raise ApiError(409, str(exc)) from None

    return session_out(await run_in_threadpool(run))
