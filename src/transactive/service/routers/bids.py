"""Bids: one at a time (group-committed by the intake writer) or a batch in one
transaction; read back what tenancy allows."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transactive.service import idempotency, tenancy
from transactive.service.bid_schemas import BatchOut, BidBatch, BidIn, BidOut
from transactive.service.deps import DB, Services, Svc, require
from transactive.service.intake import (
    IntakeWriter,
    Pending,
    Reply,
    Taken,
    commit_items,
    open_session,
    prepare,
    taken_error,
)
from transactive.service.journal import lock
from transactive.service.models import Bid, MarketSession
from transactive.service.problems import ERRORS, ApiError, FieldError, problem_response
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
    reply = await submit_bid(svc, p, session_id, body, idempotency.check_key(key), request.url.path)
    if isinstance(reply, ApiError):
        raise reply
    return Response(content=reply[1], status_code=reply[0], media_type=JSON)


async def submit_bid(
    svc: Services, p: Principal, session_id: str, body: BidIn, key: str | None, path: str
) -> Reply:
    """Write one bid through the intake writer (alone without a running writer): the
    (status, body) to answer or the error to raise."""
    req_hash = idempotency.request_hash("POST", path, body.model_dump(mode="json"))
    writer = svc.extras.get("intake")
    if isinstance(writer, IntakeWriter):
        return await writer.submit(p, session_id, body, key, req_hash)
    pend = Pending(p, session_id, body, key, req_hash)  # an app without its lifespan
    return (await asyncio.to_thread(IntakeWriter(svc).write_group, [pend]))[0]


_SINGLE = re.compile(r"^/v1/sessions/([^/]+)/bids$")
_CONTENT_TYPE = (b"content-type", JSON.encode())


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v).decode("latin-1")
    return None


class SingleBidFastPath:
    """ASGI middleware: the common case of ``POST /v1/sessions/{id}/bids`` without
    FastAPI's per-request machinery (routing over every route, dependency solving), which
    cost ~70 % of the event loop's CPU at load.

    Only a request FastAPI would accept takes this path: a JSON body that is a valid
    :class:`BidIn`, a bearer token already verified (in the token cache), unexpired, with
    the ``market:bid`` scope, and a valid ``Idempotency-Key`` if any. Everything else
    (a new token, any invalid input) is handed to the app unchanged, with its body replayed,
    so every error answer is the app's own. The bid then goes through the same
    :func:`submit_bid` and the writer's answer is rendered as :func:`post_bid` renders it.
    """

    def __init__(self, app: ASGIApp, services: Services, token_cache: Any) -> None:
        self.app = app
        self.svc = services
        self.cache = token_cache  # deps._TokenCache
        self.taken = 0  # requests answered here (for tests and metrics)
        services.extras["single_bid_fast_path"] = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        m = _SINGLE.match(scope["path"])
        if m is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect: let the app see it
                await self.app(scope, _replay(chunks, message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        got = self._accept(scope, raw)
        if got is None:
            await self.app(scope, _replay([raw], None, receive), send)
            return
        p, bid, key = got
        self.taken += 1
        scope.setdefault("state", {})["client_id"] = p.client_id
        path = scope["path"]
        if not path.isascii() or any(c in path for c in "?#\\%"):
            path = URL(scope=scope).path  # as request.url.path escapes it
        reply = await submit_bid(self.svc, p, m.group(1), bid, key, path)
        if isinstance(reply, ApiError):
            r = problem_response(
                reply.status, reply.detail, title=reply.title, errors=reply.errors,
                headers=reply.headers,
            )  # fmt: skip
            await r(scope, receive, send)
            return
        status, content = reply  # the headers Response(content, media_type=JSON) sends
        headers = [(b"content-length", str(len(content)).encode()), _CONTENT_TYPE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _accept(self, scope: Scope, raw: bytes) -> tuple[Principal, BidIn, str | None] | None:
        """(caller, bid, key) if the app would accept the request as far as writing it;
        None to hand it to the app."""
        if _header(scope, b"content-type") != JSON:
            return None
        auth = _header(scope, b"authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        p = self.cache.get(token.strip())
        if not isinstance(p, Principal) or "market:bid" not in p.scopes:
            return None
        if p.expires <= datetime.now(UTC):
            return None
        key = _header(scope, b"idempotency-key")
        if key is not None and not 1 <= len(key) <= idempotency.MAX_KEY:
            return None
        try:
            bid = BidIn.model_validate(json.loads(raw))
        except (ValueError, ValidationError):  # JSONDecodeError, UnicodeDecodeError
            return None
        return p, bid, key


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then ``last`` (if any),
    then the connection's own messages."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks),
                               "more_body": last is not None}]  # fmt: skip
    if last is not None:
        pending.append(last)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again


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
        done = commit_items(db, prep, now)
    except Taken as exc:
        keys = list(zip(prep.parties, (b.bid_id for b in prep.bids), strict=True))
        raise taken_error(session.id, keys, exc.taken) from None
    content = json.dumps(
        {
            "accepted": len(done.ids),
            "ids": done.ids,
            "journal_first": done.first,
            "journal_last": done.first + len(done.ids) - 1,
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
