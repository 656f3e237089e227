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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring as _quote
from typing import Any

from sqlalchemy import Dialect, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transactive.service import idempotency, journal, tenancy
from transactive.service.bid_schemas import BidIn, BidOut, Problem, bid_problems, public_id
from transactive.service.deps import Services
from transactive.service.models import Base, Bid, Idempotency, MarketSession, Resource
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


def problems(
    s: Session,
    svc: Services,
    session: MarketSession,
    bids: Sequence[BidIn],
    parties: Sequence[str],
    *,
    repeats: bool = True,
) -> tuple[list[str | None], list[Problem]]:
    """The resolved bus of each bid and every rule or resource violation
    ``(index, field, msg, type)``: one resource SELECT per 2,000 resource ids and one
    vectorised :func:`~transactive.service.bid_schemas.bid_problems` for all ``bids``."""
    found: list[Problem] = []
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
            found.append((i, "resource_id", msg, "not_found"))
        elif r.area != session.area:
            msg = f"resource {r.id!r} is in area {r.area!r}, not {session.area!r}"
            found.append((i, "resource_id", msg, "value_error"))
        elif b.bus is None:
            buses[i] = r.bus
        elif b.bus != r.bus:
            msg = f"resource {r.id!r} is at bus {r.bus!r}, not {b.bus!r}"
            found.append((i, "bus", msg, "value_error"))
    area = svc.market.areas.get(session.area)
    found += bid_problems(
        bids,
        parties,
        session.floor,
        session.cap,
        area.buses if area is not None else frozenset(),
        max_id_len=_MAX_ID,
        session_id=session.id,
        repeats=repeats,
    )
    return buses, found


def invalid(errors: list[FieldError]) -> ApiError:
    """The 422 listing ``errors`` (sorted by location)."""
    errors.sort(key=lambda e: [str(x) for x in e.loc])
    n = len(errors)
    return ApiError(422, f"{n} invalid field{'s' if n != 1 else ''}", errors=errors)


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
    listing every invalid field (rules, buses, resources). A bid_id already taken is found
    by :func:`commit_items` (409)."""
    parties = [b.party_id or p.party_id for b in bids]
    foreign = sorted(x for x in set(parties) if not tenancy.may_act_for(s, p, x))
    if foreign:
        raise ApiError(403, f"you may not bid for {', '.join(repr(x) for x in foreign[:5])}")
    buses, found = problems(s, svc, session, bids, parties)
    if found:
        raise invalid(
            [
                FieldError(loc=[*prefix, *([i] if indexed else []), fld], msg=msg, type=kind)
                for i, fld, msg, kind in found
            ]
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


class Taken(Exception):
    """Some bids of a write already exist in the session: their ``(party_id, bid_id)``."""

    def __init__(self, taken: set[tuple[str, str]]) -> None:
        super().__init__(f"{len(taken)} bid id(s) already taken")
        self.taken = taken


def taken_error(
    session_id: str,
    keys: Sequence[tuple[str, str]],
    taken: set[tuple[str, str]],
    *,
    prefix: Sequence[str | int] = ("body", "bids"),
    indexed: bool = True,
) -> ApiError:
    """The 409 naming every bid of ``keys`` in ``taken``."""
    dup = [i for i, k in enumerate(keys) if k in taken]
    return ApiError(
        409,
        f"{len(dup)} bid id(s) already taken in session {session_id!r}",
        errors=[
            FieldError(loc=[*prefix, *([i] if indexed else []), "bid_id"], msg="already bid",
                       type="duplicate")
            for i in dup[:1000]
        ],
    )  # fmt: skip


_BID_COLS = (
    *("seq", "id", "session_id", "party_id", "bid_id", "resource_id", "bus", "side"),
    *("price", "quantity_kw", "curve", "price_taking", "created_at", "journal_index"),
)
_IDEM_COLS = ("client_id", "key", "request_hash", "status_code", "body", "created_at")
_MAX_ID = int(Bid.id.type.length)


def _bind(dialect: Dialect, table: str, column: str) -> Callable[[Any], Any]:
    """The driver value of a column's Python value (its SQLAlchemy bind processing)."""
    typ = Base.metadata.tables[table].c[column].type
    proc = typ.dialect_impl(dialect).bind_processor(dialect)
    return proc if proc is not None else (lambda v: v)


def _next_seqs(s: Session, m: int) -> list[int]:
    """``m`` new, increasing ``bids.seq`` values (the journal lock is held, so they follow
    commit order): SQLite ``MAX(seq) + 1 …``, PostgreSQL the column's sequence."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        q = "SELECT nextval(pg_get_serial_sequence('bids', 'seq')) FROM generate_series(1, %s)"
        return sorted(int(x) for (x,) in conn.exec_driver_sql(q, (m,)))
    top = conn.exec_driver_sql("SELECT MAX(seq) FROM bids").scalar()
    start = 1 if top is None else int(top) + 1
    return list(range(start, start + m))


def _bulk(s: Session, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """``INSERT`` driver values in bulk: PostgreSQL ``COPY … FROM STDIN`` (psycopg's
    executemany costs ~10 µs of Python per row), SQLite the driver's executemany
    (SQLAlchemy's per-row parameter processing costs more than the insert itself). A
    constraint violation raises :class:`sqlalchemy.exc.IntegrityError` on both."""
    conn = s.connection()
    cols = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        import psycopg  # the PostgreSQL driver: loaded only with a PostgreSQL database

        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(f"COPY {table}", None, exc) from None
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        f"INSERT INTO {table} ({cols}) VALUES ({', '.join([mark] * len(columns))})", rows
    )


def _num(v: float | None) -> str:
    """A number as :func:`journal.canonical` writes it (``repr``; NaN/inf refused)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if not math.isfinite(v):
        return journal.canonical(v).decode()  # raises InvalidInputError, as canonical does
    return float.__repr__(v)


def _str(v: str | None) -> str:
    return "null" if v is None else _quote(v)


def bid_body(row: dict[str, Any], stamp: str) -> bytes:
    """The journal body of a bid row: byte for byte ``journal.canonical`` of its public
    fields with ``created_at`` = ``stamp`` and ``kind`` = ``"bid"``, built from a template
    (a sorted-keys ``json.dumps`` per bid was a fifth of the batch path)."""
    head = _body_head(row["session_id"], stamp)
    r = row
    return _body(head, r["id"], r["party_id"], r["bid_id"], r["bus"], r["curve"], r["price"],
                 r["quantity_kw"], r["resource_id"], r["seq"], r["side"])  # fmt: skip


def _body_head(session_id: str, stamp: str) -> tuple[str, str]:
    """The constant parts of the bodies of one write: created_at and session_id."""
    return f'"created_at":{_quote(stamp)},', f',"session_id":{_quote(session_id)},"side":'


def _body(
    head: tuple[str, str],
    pid: str,
    party: str,
    bid_id: str,
    bus: str | None,
    curve: dict[str, Any] | None,
    price: float | None,
    qty: float | None,
    resource: str | None,
    seq: int,
    side: str | None,
) -> bytes:
    """One bid's journal body (the keys in sorted order; see :func:`bid_body`)."""
    return (
        f'{{"bid_id":{_quote(bid_id)},"bus":{_str(bus)},{head[0]}'
        f'"curve":{"null" if curve is None else journal.canonical(curve).decode()},'
        f'"id":{_quote(pid)},"kind":"bid","party_id":{_quote(party)},'
        f'"price":{_num(price)},"quantity_kw":{_num(qty)},'
        f'"resource_id":{_str(resource)},"seq":{_num(seq)}{head[1]}{_str(side)}}}'
    ).encode()


@dataclass(frozen=True)
class Written:
    """Bids inserted by :func:`commit_items`: their public ids, seqs and first leaf."""

    prep: Prepared
    ids: list[str]
    seqs: list[int]
    first: int
    now: datetime

    def outs(self) -> list[BidOut]:
        """The accepted bids as the API returns them."""
        sid = self.prep.session.id
        return [
            BidOut.model_construct(
                id=pid,
                session_id=sid,
                party_id=party,
                bid_id=b.bid_id,
                seq=seq,
                side=b.side,
                price=b.price,
                quantity_kw=b.quantity_kw,
                curve=None if b.curve is None else {"points": [list(x) for x in b.curve.points]},
                bus=bus,
                resource_id=b.resource_id,
                created_at=self.now,
                journal_index=self.first + j,
            )
            for j, (pid, seq, b, party, bus) in enumerate(
                zip(
                    self.ids,
                    self.seqs,
                    self.prep.bids,
                    self.prep.parties,
                    self.prep.buses,
                    strict=True,
                )
            )
        ]


def commit_items(s: Session, prep: Prepared, now: datetime) -> Written:
    """Insert the prepared bids and their journal leaves (``bid:{public id}``) in the
    caller's transaction, in bulk. The caller commits.

    The insert runs in a savepoint and relies on the unique (session, party, bid_id)
    constraint; if it fails, the savepoint is rolled back and :class:`Taken` names the bids
    that exist (one duplicate SELECT only on that path)."""
    sid = prep.session.id
    journal.lock(s)
    first = journal.tree_size(s)
    m = len(prep.bids)
    seqs = _next_seqs(s, m)
    dialect = s.get_bind().dialect
    created = _bind(dialect, "bids", "created_at")(now)
    to_json = _bind(dialect, "bids", "curve")
    no_curve = to_json(None)  # as SQLAlchemy stores None (JSON "null" on SQLite)
    head = _body_head(sid, now.isoformat().replace("+00:00", "Z"))
    ids: list[str] = []
    values: list[tuple[Any, ...]] = []
    entries: list[tuple[str, str, str | None, bytes]] = []
    for j, (b, party, bus, seq) in enumerate(
        zip(prep.bids, prep.parties, prep.buses, seqs, strict=True)
    ):
        curve = None if b.curve is None else {"points": [list(x) for x in b.curve.points]}
        pid = f"{sid}:{party}:{b.bid_id}"  # public_id
        ids.append(pid)
        values.append(
            (seq, pid, sid, party, b.bid_id, b.resource_id, bus, b.side, b.price,
             b.quantity_kw, no_curve if curve is None else to_json(curve),
             curve is None and b.price is None, created, first + j)
        )  # fmt: skip
        body = _body(head, pid, party, b.bid_id, bus, curve, b.price, b.quantity_kw,
                     b.resource_id, seq, b.side)  # fmt: skip
        entries.append(("bid:" + pid, "bid", party, body))
    nested = s.begin_nested()
    try:
        _bulk(s, "bids", _BID_COLS, values)
    except IntegrityError:
        nested.rollback()
        keys = list(zip(prep.parties, (b.bid_id for b in prep.bids), strict=True))
        taken = existing(s, sid, keys)
        if not taken:
            raise
        raise Taken(taken) from None
    nested.commit()
    got = journal.append(s, entries)
    assert got[0] == first, "the journal lock is held: indices are the ones reserved"
    return Written(prep, ids, seqs, first, now)


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
        """Check and write ``group`` in one transaction; one reply per request.

        The group is checked as a whole: one idempotency SELECT, one session lock per
        session, one tenancy check per (caller, party), one vectorised rule check and one
        insert per session; each request still gets its own answer (a bad bid its 4xx)."""
        svc = self.svc
        replies: list[Reply | None] = [None] * len(group)
        with svc.db.sessions() as s:
            journal.lock(s)
            now = svc.now()
            later = self._stored_replies(s, group, replies)
            sessions: dict[str, MarketSession | ApiError] = {}
            acting: dict[tuple[str, str, str], bool] = {}
            todo: dict[str, list[int]] = {}
            for i, pend in enumerate(group):
                if replies[i] is not None or i in later:
                    continue
                got = sessions.get(pend.session_id)
                if got is None:
                    try:
                        got = open_session(s, pend.session_id, now)
                    except ApiError as exc:
                        got = exc
                    sessions[pend.session_id] = got
                if isinstance(got, ApiError):
                    replies[i] = got
                    continue
                p = pend.principal
                party = pend.bid.party_id or p.party_id
                ok = acting.get((p.role, p.party_id, party))
                if ok is None:
                    ok = acting[(p.role, p.party_id, party)] = tenancy.may_act_for(s, p, party)
                if not ok:
                    replies[i] = ApiError(403, f"you may not bid for {party!r}")
                    continue
                todo.setdefault(pend.session_id, []).append(i)
            written = 0
            for sid, idx in todo.items():
                session = sessions[sid]
                assert isinstance(session, MarketSession)
                written += self._write_session(s, session, group, idx, replies, now)
            s.commit()
        self.groups += 1
        self.written += written
        for i, j in later.items():
            if group[i].request_hash != group[j].request_hash:
                replies[i] = ApiError(
                    422, f"{idempotency.HEADER} {group[i].key!r} was used for a different request"
                )
            else:
                replies[i] = replies[j]
        return [r if r is not None else ApiError(503, "not written") for r in replies]

    @staticmethod
    def _stored_replies(
        s: Session, group: Sequence[Pending], replies: list[Reply | None]
    ) -> dict[int, int]:
        """Fill in the stored answers of idempotency keys seen before (one SELECT); returns
        {index: first index} for a key repeated within the group."""
        first: dict[tuple[str, str], int] = {}
        later: dict[int, int] = {}
        for i, pend in enumerate(group):
            if pend.key is None:
                continue
            ck = (pend.principal.client_id, pend.key)
            if ck in first:
                later[i] = first[ck]
            else:
                first[ck] = i
        if not first:
            return later
        keys = list(first)
        stored: dict[tuple[str, str], tuple[str, int, bytes]] = {}
        for lo in range(0, len(keys), _CHUNK):
            q = select(
                Idempotency.client_id,
                Idempotency.key,
                Idempotency.request_hash,
                Idempotency.status_code,
                Idempotency.body,
            ).where(tuple_(Idempotency.client_id, Idempotency.key).in_(keys[lo : lo + _CHUNK]))
            stored.update(((c, k), (h, int(st), bytes(b))) for c, k, h, st, b in s.execute(q))
        for ck, (h, status, body) in stored.items():
            i = first[ck]
            if h != group[i].request_hash:
                replies[i] = ApiError(
                    422,
                    f"{idempotency.HEADER} {ck[1]!r} was used for a different request; use a "
                    "new key",
                    errors=[
                        FieldError(
                            loc=["header", idempotency.HEADER],
                            msg="reused key",
                            type="idempotency_conflict",
                        )
                    ],
                )
            else:
                replies[i] = (status, body)
        return later

    def _write_session(
        self,
        s: Session,
        session: MarketSession,
        group: Sequence[Pending],
        idx: list[int],
        replies: list[Reply | None],
        now: datetime,
    ) -> int:
        """Check and insert the bids ``group[idx]`` of one session; returns how many were
        written. Rule violations, repeats within the group and bids already in the
        database get their own error reply."""
        bids = [group[i].bid for i in idx]
        parties = [
            b.party_id or group[i].principal.party_id for b, i in zip(bids, idx, strict=True)
        ]
        buses, found = problems(s, self.svc, session, bids, parties, repeats=False)
        bad: dict[int, list[FieldError]] = {}
        for k, fld, msg, kind in found:
            bad.setdefault(k, []).append(FieldError(loc=["body", fld], msg=msg, type=kind))
        seen: set[tuple[str, str]] = set()
        keep: list[int] = []  # positions in idx
        for k, i in enumerate(idx):
            if k in bad:
                replies[i] = invalid(bad[k])
                continue
            key = (parties[k], bids[k].bid_id)
            if key in seen:
                pid = public_id(session.id, *key)
                replies[i] = ApiError(409, f"bid {pid!r} was just submitted")
                continue
            seen.add(key)
            keep.append(k)
        while keep:
            prep = Prepared(
                session,
                [bids[k] for k in keep],
                [parties[k] for k in keep],
                [buses[k] for k in keep],
            )
            try:
                outs = commit_items(s, prep, now).outs()
            except Taken as exc:
                rest = []
                for k in keep:
                    key = (parties[k], bids[k].bid_id)
                    if key in exc.taken:
                        replies[idx[k]] = taken_error(session.id, [key], exc.taken,
                                                      prefix=("body",), indexed=False)  # fmt: skip
                    else:
                        rest.append(k)
                keep = rest
                continue
            stored: list[tuple[Any, ...]] = []
            created = _bind(s.get_bind().dialect, "idempotency", "created_at")(now)
            for k, out in zip(keep, outs, strict=True):
                pend = group[idx[k]]
                body = bid_json(out)
                replies[idx[k]] = (201, body)
                if pend.key is not None:
                    c = pend.principal.client_id
                    stored.append((c, pend.key, pend.request_hash, 201, body, created))
            if stored:
                _bulk(s, "idempotency", _IDEM_COLS, stored)
            return len(outs)
        return 0


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
