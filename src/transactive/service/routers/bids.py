"""Bids: one at a time (group-committed by the intake writer) or a batch in one
transaction; read back what tenancy allows."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy import select

from transactive.service import idempotency, tenancy
from transactive.service.bid_schemas import BatchOut, BidBatch, BidIn, BidOut
from transactive.service.deps import DB, Svc, require
from transactive.service.intake import (
    IntakeWriter,
    Pending,
    Taken,
    commit_items,
    open_session,
    prepare,
    taken_error,
)
from transactive.service.journal import lock
from transactive.service.models import Bid, MarketSession
from transactive.service.problems import ERRORS, ApiError, FieldError
from transactive.service.security import Principal

router = APIRouter(tags=["bids"])
Bidder = Annotated[Principal, Depends(require("market:bid"))]
Reader = Annotated[Principal, Depends(require("market:read"))]
IdemKey = Annotated[
    str | None,
    Header(alias=idempotency.HEADER, description="Retry-safe key (≤ 200 characters)."),
]
WRITE_ERRORS = {**ERRORS, 409: ERRORS[422] | {"description": "Conflict"}}
JSON = "application/json"


def _out(b: Bid) -> BidOut:
    return BidOut(
        id=b.id,
        session_id=b.session_id,
        party_id=b.party_id,
        bid_id=b.bid_id,
        seq=b.seq,
        side=b.side,
        price=b.price,
        quantity_kw=b.quantity_kw,
        curve=b.curve,
        bus=b.bus,
        resource_id=b.resource_id,
        created_at=b.created_at,
        journal_index=b.journal_index,
    )


@router.post(
    "/v1/sessions/{session_id}/bids",
    response_model=BidOut,
    status_code=201,
    responses=WRITE_ERRORS,
    summary="Submit one bid (201 once it is durable)",
)
async def post_bid(
    session_id: str, body: BidIn, request: Request, svc: Svc, p: Bidder, key: IdemKey = None
) -> Response:
    key = idempotency.check_key(key)
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(mode="json"))
    writer = svc.extras.get("intake")
    if isinstance(writer, IntakeWriter):
        reply = await writer.submit(p, session_id, body, key, req_hash)
    else:  # no running writer (an app without its lifespan): write this bid alone
        pend = Pending(p, session_id, body, key, req_hash)
        reply = (await asyncio.to_thread(IntakeWriter(svc).write_group, [pend]))[0]
    if isinstance(reply, ApiError):
        raise reply
    return Response(content=reply[1], status_code=reply[0], media_type=JSON)


@router.post(
    "/v1/sessions/{session_id}/bids/batch",
    response_model=BatchOut,
    status_code=201,
    responses=WRITE_ERRORS,
    summary="Submit many bids at once: all are accepted or none",
)
def post_batch(
    session_id: str,
    body: BidBatch,
    request: Request,
    db: DB,
    svc: Svc,
    p: Bidder,
    key: IdemKey = None,
) -> Response:
    key = idempotency.check_key(key)
    most = svc.config.limits.max_batch_bids
    if len(body.bids) > most:
        raise ApiError(
            422,
            f"{len(body.bids)} bids: at most {most} per batch",
            errors=[FieldError(loc=["body", "bids"], msg=f"at most {most}", type="too_long")],
        )
    req_hash = idempotency.request_hash("POST", request.url.path, body.model_dump(mode="json"))
    lock(db)  # before the key and duplicate checks: concurrent writers queue here
    if key is not None:
        stored = idempotency.lookup(db, p.client_id, key, req_hash)
        if stored is not None:
            return Response(content=stored[1], status_code=stored[0], media_type=JSON)
    now = svc.now()
    session = open_session(db, session_id, now)
    prep = prepare(db, svc, p, session, body.bids)
    try:
        outs = commit_items(db, prep, now)
    except Taken as exc:
        keys = list(zip(prep.parties, (b.bid_id for b in prep.bids), strict=True))
        raise taken_error(session.id, keys, exc.taken) from None
    content = json.dumps(
        {
            "accepted": len(outs),
            "ids": [o.id for o in outs],
            "journal_first": outs[0].journal_index,
            "journal_last": outs[-1].journal_index,
        },
        separators=(",", ":"),
    ).encode()
    if key is not None:
        idempotency.store(db, p.client_id, key, req_hash, 201, content, now)
    db.commit()
    return Response(content=content, status_code=201, media_type=JSON)


@router.get(
    "/v1/sessions/{session_id}/bids",
    response_model=list[BidOut],
    responses=ERRORS,
    summary="The bids of a session you may read, in commit order",
)
def list_bids(
    session_id: str,
    db: DB,
    p: Reader,
    offset: int = Query(0, ge=0, le=10**12),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[BidOut]:
    if db.get(MarketSession, session_id) is None:
        raise ApiError(404, f"session {session_id!r} not found")
    q = (
        select(Bid)
        .where(Bid.session_id == session_id, tenancy.readable(p, Bid.party_id))
        .order_by(Bid.seq)
        .offset(offset)
        .limit(limit)
    )
    return [_out(b) for b in db.scalars(q)]


@router.get("/v1/bids/{bid_id}", response_model=BidOut, responses=ERRORS, summary="One bid")
def get_bid(bid_id: str, db: DB, p: Reader) -> BidOut:
    b = db.scalars(select(Bid).where(Bid.id == bid_id)).first()
    if b is None or not tenancy.may_read(db, p, b.party_id):
        raise ApiError(404, f"bid {bid_id!r} not found")
    return _out(b)
