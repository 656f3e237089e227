"""A session's bids as the engine's arrays, and the books read ahead of gate closure.

:func:`read_bids` reads a session's bids in ``seq`` order: one SELECT of the plain columns
(the driver's own tuples, no per-row type processing) and one of the curves (curve bids
only: their ``side`` is NULL), then builds numpy columns and the book's curves.

Reading 100,000 bids costs a few hundred ms, most of a gate closure's budget, so the
scheduler reads the bids of sessions about to close ahead of time (:meth:`BookCache.
prefetch`: only the rows with a ``seq`` above the last one read), and the clearing reads
only the tail (:meth:`BookCache.take`). Bids are never changed or deleted, and every bid
insert holds the journal's append lock until it commits, so they commit in ``seq`` order;
even so ``take`` checks the rows it has against the session's ``COUNT(*)`` and reads the
whole book again if they differ. The cache is memory only: after a restart the clearing
reads everything, with the same result.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from transactive.core.curves import Curves
from transactive.errors import InvalidInputError
from transactive.service.models import MarketSession

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BidArrays:
    """A session's bids in ``seq`` order: numpy columns and the book's curves."""

    seq: NDArray[np.int64]
    bid_id: list[str]  # the party's own ids (the public id is ``{session}:{party}:{bid_id}``)
    party: NDArray[np.str_]
    bus: list[str | None]
    price_taking: NDArray[np.bool_]
    is_block: NDArray[np.bool_]
    block_kw: FloatArray  # signed (+ buy, − sell); 0 for curves
    block_price: FloatArray  # effective price (cap / floor when price-taking); NaN for curves
    curves: Curves

    @property
    def n(self) -> int:
        return int(self.seq.size)


@dataclass(frozen=True)
class Rows:
    """Stored bid columns as read (``seq`` order); ``curves`` are the curve bids' cells."""

    seq: NDArray[np.int64]
    bid_id: list[str]
    party: list[str]
    sign: FloatArray  # +1 buy block, −1 sell block, 0 curve
    price: FloatArray  # NaN: none (price-taking)
    qty: FloatArray
    flagged: NDArray[np.bool_]
    bus: list[str | None]
    curves: list[Any]

    @property
    def n(self) -> int:
        return int(self.seq.size)

    @property
    def last_seq(self) -> int:
        return int(self.seq[-1]) if self.seq.size else -1

    def __add__(self, other: Rows) -> Rows:
        return Rows(
            np.concatenate([self.seq, other.seq]),
            self.bid_id + other.bid_id,
            self.party + other.party,
            np.concatenate([self.sign, other.sign]),
            np.concatenate([self.price, other.price]),
            np.concatenate([self.qty, other.qty]),
            np.concatenate([self.flagged, other.flagged]),
            self.bus + other.bus,
            self.curves + other.curves,
        )


def fetch(s: Session, session_id: str, *, after_seq: int = -1, with_bus: bool = True) -> Rows:
    """The session's stored bids with ``seq > after_seq`` (``with_bus=False``: bus None)."""
    conn = s.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cur: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    bus_col = "bus" if with_bus else "NULL"
    where = f"session_id = {mark} AND seq > {mark}"
    try:
        cur.execute(
            "SELECT seq, bid_id, party_id, CASE side WHEN 'buy' THEN 1 WHEN 'sell' THEN -1 "
            f"ELSE 0 END, price, quantity_kw, price_taking, {bus_col} "
            f"FROM bids WHERE {where} ORDER BY seq",
            (session_id, after_seq),
        )
        rows = cur.fetchall()
        cur.execute(
            f"SELECT curve FROM bids WHERE {where} AND side IS NULL ORDER BY seq",
            (session_id, after_seq),
        )
        curve_rows = cur.fetchall()
    finally:
        cur.close()
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    sign = np.fromiter(cols[3], dtype=np.float64, count=n)
    cells = [json.loads(c) if isinstance(c, str) else c for (c,) in curve_rows]  # SQLite: text
    if len(cells) != int((sign == 0.0).sum()):
        raise InvalidInputError(f"session {session_id}: bids changed while they were read")
    return Rows(
        seq=np.fromiter(cols[0], dtype=np.int64, count=n),
        bid_id=list(cols[1]),
        party=list(cols[2]),
        sign=sign,
        price=np.array(cols[4], dtype=np.float64).reshape(n),  # None -> NaN
        qty=np.array(cols[5], dtype=np.float64).reshape(n),
        flagged=np.array(cols[6], dtype=bool).reshape(n),
        bus=list(cols[7]),
        curves=cells,
    )


def count(s: Session, session_id: str) -> int:
    """Number of stored bids of the session (an index-only count)."""
    conn = s.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    got = conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM bids WHERE session_id = {mark}", (session_id,)
    ).scalar()
    return int(got or 0)


def to_arrays(session: MarketSession, rows: Rows) -> BidArrays:
    """The engine's view of ``rows``: effective block prices (price-taking blocks at the
    session's cap / floor), signed kW and one curve per bid."""
    is_block = rows.sign != 0.0
    price_taking = is_block & (rows.flagged | np.isnan(rows.price))
    eff = np.where(price_taking, np.where(rows.sign > 0, session.cap, session.floor), rows.price)
    eff = np.where(is_block, eff, np.nan)
    signed = np.where(is_block, rows.sign * np.nan_to_num(rows.qty), 0.0)
    return BidArrays(
        seq=rows.seq,
        bid_id=rows.bid_id,
        party=np.array(rows.party, dtype=str).reshape(rows.n),
        bus=rows.bus,
        price_taking=price_taking,
        is_block=is_block,
        block_kw=signed,
        block_price=eff,
        curves=_ragged(is_block, eff, signed, rows.curves),
    )


def read_bids(s: Session, session: MarketSession, *, with_bus: bool = True) -> BidArrays:
    """The session's bids as arrays, in ``seq`` order (all read now)."""
    return to_arrays(session, fetch(s, session.id, with_bus=with_bus))


def _ragged(
    is_block: NDArray[np.bool_], price: FloatArray, kw: FloatArray, cells: list[Any]
) -> Curves:
    """One curve per bid: a block (two breakpoints at its price) or its curve's points
    (``cells``: the curve bids' stored curves, in order)."""
    n = is_block.size
    counts = np.full(n, 2, dtype=np.int64)
    pts = [np.asarray(c["points"], dtype=np.float64).reshape(-1, 2) for c in cells]
    curve_at = np.flatnonzero(~is_block)
    if curve_at.size:
        counts[curve_at] = [p.shape[0] for p in pts]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    P = np.empty(offsets[-1])
    Q = np.empty(offsets[-1])
    b = offsets[:-1][is_block]
    P[b] = P[b + 1] = price[is_block]
    Q[b] = np.maximum(kw[is_block], 0.0)
    Q[b + 1] = np.minimum(kw[is_block], 0.0)
    if curve_at.size:
        pos = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in curve_at])
        allp = np.concatenate(pts)
        P[pos], Q[pos] = allp[:, 0], allp[:, 1]
    return Curves(P, Q, offsets)


class BookCache:
    """Bids of open sessions read ahead of their gate closure (thread-safe; memory only)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[bool, Rows]] = {}  # session -> (with_bus, rows)
        self._lock = threading.Lock()

    def prefetch(self, s: Session, session: MarketSession) -> int:
        """Read the session's bids stored since the last prefetch; returns rows held."""
        with_bus = session.clearing != "auction"
        with self._lock:
            got = self._rows.get(session.id)
        have = got[1] if got is not None and got[0] == with_bus else None
        tail = fetch(s, session.id, after_seq=have.last_seq if have else -1, with_bus=with_bus)
        rows = tail if have is None else have + tail
        with self._lock:
            self._rows[session.id] = (with_bus, rows)
        return rows.n

    def take(self, s: Session, session: MarketSession) -> BidArrays:
        """The session's whole book: the rows read ahead plus the tail, checked against the
        stored count (else everything is read again); the session leaves the cache."""
        with_bus = session.clearing != "auction"
        with self._lock:
            got = self._rows.pop(session.id, None)
        rows: Rows | None = None
        if got is not None and got[0] == with_bus:
            rows = got[1] + fetch(s, session.id, after_seq=got[1].last_seq, with_bus=with_bus)
            if rows.n != count(s, session.id):
                rows = None
        if rows is None:
            rows = fetch(s, session.id, with_bus=with_bus)
        return to_arrays(session, rows)

    def keep_only(self, session_ids: set[str]) -> None:
        """Forget the sessions not in ``session_ids`` (cleared or failed elsewhere)."""
        with self._lock:
            for sid in [k for k in self._rows if k not in session_ids]:
                del self._rows[sid]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)
