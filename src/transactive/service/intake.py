"""Bid intake: validation against the session and the caller, one-transaction writes of
bids and their journal leaves, and the group-committing :class:`IntakeWriter`.

Every write path takes the journal's append lock first (:func:`transactive.service.
journal.lock`) and the session row ``FOR UPDATE``, then checks duplicates, so checks and
inserts cannot interleave with another writer or with gate closure: an accepted bid was
committed while its session was open and before its gate closed.

Single bids go through the :class:`IntakeWriter`: a request puts its bid on an asyncio
queue and waits; the writer takes up to ``max_group`` (500) queued bids, writes all of the
valid ones in *one* transaction (one fsync on SQLite with ``synchronous=FULL``), commits,
and only then answers each request, so a 201 always means "durable". One bad bid of a
group (a duplicate, a closed gate, a foreign party) gets its own error; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from transactive.service import idempotency, journal, tenancy
from transactive.service.bid_schemas import BidIn, BidOut, check_bids, public_id
from transactive.service.deps import Services
from transactive.service.models import Base, Bid, MarketSession, Resource
from transactive.service.problems import ApiError, FieldError
from transactive.service.security import Principal

MAX_GROUP = 500
_CHUNK = 2000
Reply = tuple[int, bytes] | ApiError
"""A single-bid answer: (status, JSON body bytes), or the error to raise."""


def open_session(s: Session, session_id: str, now: datetime) -> MarketSession:
    """The session, locked for this transaction; 404 if unknown, 409 unless it is open and
    ``now`` is before its gate closure."""
    row = s.scalars(
        select(MarketSession)
        .where(MarketSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise ApiError(404, f"session {session_id!r} not found")
    if row.status != "open":
        raise ApiError(409, f"session {session_id!r} is {row.status}: it takes no more bids")
    if now >= row.gate_closure:
        gate = row.gate_closure.isoformat().replace("+00:00", "Z")
        raise ApiError(409, f"session {session_id!r}: the gate closed at {gate}")
    return row


@dataclass(frozen=True)
class Prepared:
    """Bids that passed every check: their parties and buses (resolved)."""

    session: MarketSession
    bids: list[BidIn]
    parties: list[str]
    buses: list[str | None]


def prepare(
    s: Session,
    svc: Services,
    p: Principal,
    session: MarketSession,
    bids: Sequence[BidIn],
    *,
    prefix: Sequence[str | int] = ("body", "bids"),
    indexed: bool = True,
) -> Prepared:
    """Check ``bids`` for ``session`` by ``p``: 403 if ``p`` may not act for a party, 422
    listing every invalid field (rules, buses, resources), 409 if a bid_id exists."""
    parties = [b.party_id or p.party_id for b in bids]
    foreign = sorted(x for x in set(parties) if not tenancy.may_act_for(s, p, x))
    if foreign:
        raise ApiError(403, f"you may not bid for {', '.join(repr(x) for x in foreign[:5])}")

    def where(i: int, fld: str) -> list[str | int]:
        return [*prefix, *([i] if indexed else []), fld]

    errors: list[FieldError] = []
    buses: list[str | None] = [b.bus for b in bids]
    wanted = sorted({b.resource_id for b in bids if b.resource_id is not None})
    res: dict[str, Resource] = {}
    for lo in range(0, len(wanted), _CHUNK):
        q = select(Resource).where(Resource.id.in_(wanted[lo : lo + _CHUNK]))
        res.update((r.id, r) for r in s.scalars(q))
    for i, b in enumerate(bids):
        if b.resource_id is None:
            continue
        r = res.get(b.resource_id)
        if r is None or r.party_id != parties[i]:
            msg = f"no resource {b.resource_id!r} of party {parties[i]!r}"
            errors.append(FieldError(loc=where(i, "resource_id"), msg=msg, type="not_found"))
        elif r.area != session.area:
            msg = f"resource {r.id!r} is in area {r.area!r}, not {session.area!r}"
            errors.append(FieldError(loc=where(i, "resource_id"), msg=msg, type="value_error"))
        elif b.bus is None:
            buses[i] = r.bus
        elif b.bus != r.bus:
            msg = f"resource {r.id!r} is at bus {r.bus!r}, not {b.bus!r}"
            errors.append(FieldError(loc=where(i, "bus"), msg=msg, type="value_error"))
    area = svc.market.areas.get(session.area)
    errors += check_bids(
        bids,
        parties,
        session.floor,
        session.cap,
        area.buses if area is not None else frozenset(),
        prefix=prefix,
        indexed=indexed,
        max_id_len=Bid.id.type.length,
        session_id=session.id,
    )
    if errors:
        errors.sort(key=lambda e: [str(x) for x in e.loc])
        n = len(errors)
        raise ApiError(422, f"{n} invalid field{'s' if n != 1 else ''}", errors=errors)
    keys = list(zip(parties, (b.bid_id for b in bids), strict=True))
    taken = existing(s, session.id, keys)
    if taken:
        dup = [i for i, k in enumerate(keys) if k in taken]
        raise ApiError(
            409,
            f"{len(dup)} bid id(s) already taken in session {session.id!r}",
            errors=[
                FieldError(loc=where(i, "bid_id"), msg="already bid", type="duplicate")
                for i in dup[:1000]
            ],
        )
    return Prepared(session, list(bids), parties, buses)


def existing(s: Session, session_id: str, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(party_id, bid_id)`` of ``keys`` already have a bid in the session."""
    found: set[tuple[str, str]] = set()
    for lo in range(0, len(keys), _CHUNK):
        part = list(keys[lo : lo + _CHUNK])
        q = select(Bid.party_id, Bid.bid_id).where(
            Bid.session_id == session_id, tuple_(Bid.party_id, Bid.bid_id).in_(part)
        )
        found.update((a, b) for a, b in s.execute(q))
    return found


def commit_items(s: Session, prep: Prepared, now: datetime) -> list[BidOut]:
    """Insert the prepared bids and their journal leaves (``bid:{public id}``) in the
    caller's transaction, in bulk; returns them as accepted. The caller commits."""
    sid = prep.session.id
    journal.lock(s)
    first = journal.tree_size(s)
    rows: list[dict[str, Any]] = []
    for j, (b, party, bus) in enumerate(zip(prep.bids, prep.parties, prep.buses, strict=True)):
        rows.append(
            {
                "id": public_id(sid, party, b.bid_id),
                "session_id": sid,
                "party_id": party,
                "bid_id": b.bid_id,
                "resource_id": b.resource_id,
                "bus": bus,
                "side": b.side,
                "price": b.price,
                "quantity_kw": b.quantity_kw,
                "curve": None if b.curve is None else {"points": [list(x) for x in b.curve.points]},
                "price_taking": b.curve is None and b.price is None,
                "created_at": now,
                "journal_index": first + j,
            }
        )
    # Core executemany: batched (the ORM with RETURNING runs one INSERT per row on SQLite)
    s.execute(insert(Base.metadata.tables["bids"]), rows)
    ids = [r["id"] for r in rows]
    seq_of: dict[str, int] = {}
    for lo in range(0, len(ids), _CHUNK):
        q = select(Bid.id, Bid.seq).where(Bid.id.in_(ids[lo : lo + _CHUNK]))
        seq_of.update((i, int(q_)) for i, q_ in s.execute(q))
    seqs = [seq_of[i] for i in ids]
    stamp = now.isoformat().replace("+00:00", "Z")
    entries: list[tuple[str, str, str | None, bytes]] = []
    outs: list[BidOut] = []
    for r, seq in zip(rows, seqs, strict=True):
        r["seq"] = int(seq)
        doc = {k: r[k] for k in _BODY}
        doc["created_at"] = stamp
        doc["kind"] = "bid"
        entries.append((f"bid:{r['id']}", "bid", r["party_id"], journal.canonical(doc)))
        outs.append(BidOut(**{k: r[k] for k in _OUT}))
    got = journal.append(s, entries)
    assert got[0] == first, "the journal lock is held: indices are the ones reserved"
    return outs


_OUT = tuple(BidOut.model_fields)
_BODY = tuple(k for k in _OUT if k != "journal_index")


def bid_json(out: BidOut) -> bytes:
    """The JSON body of a 201 for one bid."""
    return out.model_dump_json().encode()


# --- the group-committing writer ----------------------------------------------------------


@dataclass
class Pending:
    """One single-bid request waiting for the writer."""

    principal: Principal
    session_id: str
    bid: BidIn
    key: str | None
    request_hash: str
    future: asyncio.Future[Reply] | None = field(default=None, repr=False)


class IntakeWriter:
    """Writes queued single bids in groups of up to ``max_group`` per transaction."""

    def __init__(self, svc: Services, max_group: int = MAX_GROUP) -> None:
        self.svc = svc
        self.max_group = max_group
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed (for tests and metrics)
        self.written = 0  # bids accepted

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="intake-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        while not self.queue.empty():  # never leave a request hanging
            pend = self.queue.get_nowait()
            if pend.future is not None and not pend.future.done():
                pend.future.set_result(ApiError(503, "the service is shutting down"))

    async def submit(
        self, p: Principal, session_id: str, bid: BidIn, key: str | None, req_hash: str
    ) -> Reply:
        """Queue one bid and wait until its transaction is committed (or it failed)."""
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        await self.queue.put(Pending(p, session_id, bid, key, req_hash, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            group = [await self.queue.get()]
            while len(group) < self.max_group and not self.queue.empty():
                group.append(self.queue.get_nowait())
            try:
                replies = await asyncio.to_thread(self.write_group, group)
            except Exception as exc:  # a fault of the database: every request learns it
                for pend in group:
                    if pend.future is not None and not pend.future.done():
                        pend.future.set_exception(exc)
                continue
            for pend, reply in zip(group, replies, strict=True):
                if pend.future is not None and not pend.future.done():
                    pend.future.set_result(reply)

    def write_group(self, group: Sequence[Pending]) -> list[Reply]:
        """Check and write ``group`` in one transaction; one reply per request."""
        svc = self.svc
        replies: list[Reply | None] = [None] * len(group)
        with svc.db.sessions() as s:
            journal.lock(s)
            now = svc.now()
            sessions: dict[str, MarketSession | ApiError] = {}
            seen: set[tuple[str, str, str]] = set()
            keys: dict[tuple[str, str], int] = {}
            later: dict[int, int] = {}  # same key again in the group -> the first one
            todo: dict[str, list[tuple[int, Prepared]]] = {}
            for i, pend in enumerate(group):
                try:
                    if pend.key is not None:
                        ck = (pend.principal.client_id, pend.key)
                        if ck in keys:
                            later[i] = keys[ck]
                            continue
                        stored = idempotency.lookup(s, ck[0], ck[1], pend.request_hash)
                        if stored is not None:
                            replies[i] = stored
                            continue
                        keys[ck] = i
                    got = sessions.get(pend.session_id)
                    if got is None:
                        try:
                            got = open_session(s, pend.session_id, now)
                        except ApiError as exc:
                            got = exc
                        sessions[pend.session_id] = got
                    if isinstance(got, ApiError):
                        raise got
                    prep = prepare(
                        s, svc, pend.principal, got, [pend.bid], prefix=("body",), indexed=False
                    )
                    k = (pend.session_id, prep.parties[0], pend.bid.bid_id)
                    if k in seen:
                        raise ApiError(409, f"bid {public_id(*k)!r} was just submitted")
                    seen.add(k)
                    todo.setdefault(pend.session_id, []).append((i, prep))
                except ApiError as exc:
                    replies[i] = exc
            for items in todo.values():
                preps = [prep for _, prep in items]
                merged = Prepared(
                    preps[0].session,
                    [b for x in preps for b in x.bids],
                    [q for x in preps for q in x.parties],
                    [u for x in preps for u in x.buses],
                )
                for (i, _), out in zip(items, commit_items(s, merged, now), strict=True):
                    body = bid_json(out)
                    replies[i] = (201, body)
                    pend = group[i]
                    if pend.key is not None:
                        idempotency.store(
                            s, pend.principal.client_id, pend.key, pend.request_hash, 201, body, now
                        )
            s.commit()
        self.groups += 1
        self.written += sum(len(v) for v in todo.values())
        for i, j in later.items():
            first = replies[j]
            if group[i].request_hash != group[j].request_hash:
                replies[i] = ApiError(
                    422, f"{idempotency.HEADER} {group[i].key!r} was used for a different request"
                )
            else:
                replies[i] = first
        return [r if r is not None else ApiError(503, "not written") for r in replies]


async def start_writer(svc: Services) -> IntakeWriter:
    """Start the intake writer (a component of :mod:`transactive.service.app`)."""
    writer = IntakeWriter(svc)
    writer.start()
    svc.extras["intake"] = writer
    return writer


start_writer.always = True  # type: ignore[attr-defined]


async def stop_writer(writer: IntakeWriter) -> None:
    """Stop the intake writer; queued requests get a 503."""
    writer.svc.extras.pop("intake", None)
    await writer.stop()
