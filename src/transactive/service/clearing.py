"""Gate-closure clearing of a market session with the engine's own code.

:func:`clear_session` takes the session's bids in ``seq`` order as numpy arrays
(:mod:`transactive.service.book`: read ahead by the scheduler, the tail at gate closure),
builds the engine's book and clears it:

* ``auction`` sessions (day-ahead): :func:`transactive.market.auction.clear`, the uniform-
  price double auction, with the substation as one more bid: it sells up to
  ``substation_kw`` at ``substation_price`` (and buys as much at that price: export), so a
  one-sided book still clears; ``substation_kw = 0`` leaves the local auction alone.
* ``network`` sessions (real-time, flexibility): :func:`transactive.market.network.
  clear_network` on the area's feeder at the substation price (the slack price), with the
  scenario's grid limits and loss iterations; block bids of equal bus, side, price and
  price-taking flag are aggregated before the LP and their award is shared pro rata.

Price-taking bids (no price) buy at the cap / sell at the floor, as in bid files; under
network clearing they are the engine's price-taking bids (cut only at the value of lost
load). Bids without a bus sit at the feeder's first source bus.

Money (currency per interval; ``+`` pays, ``−`` receives): every bid pays its price × award
kW × interval hours; the substation receives the clearing price (auction) or its own price
(network) × import; the DSO keeps
the merchandising surplus (congestion and loss rent, 0 in the auction). The three sum to
zero, checked from per-bid and per-bus sums on every clearing (``BalanceError`` otherwise).

Everything a clearing writes — awards (bulk: COPY on PostgreSQL), bus prices, the session's
result, the journal records (``session:{id}`` and one ``awards:{id}:{party}`` per party with
all its awards, so a party proves them with one inclusion proof) and a signed tree head — is
written in ONE transaction, so an interrupted job leaves nothing behind and its re-run gives
the identical ``result_hash`` (hashed content is sorted and holds no time). A cleared
session is never cleared again: :func:`clear_session` returns the stored result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from transactive.core.curves import Curves
from transactive.errors import BalanceError, InvalidInputError
from transactive.market.auction import book_from_curves, clear
from transactive.service import journal
from transactive.service.book import BidArrays
from transactive.service.db import bulk_insert, bulk_insert_arrays
from transactive.service.models import Award, Bid, BusPrice, Job, MarketSession
from transactive.service.sessions import queue_clearing

if TYPE_CHECKING:
    from transactive.service.deps import Services

FloatArray = NDArray[np.float64]
#: Relative tolerance of the money balance (of the money moved, plus a micro-cent).
MONEY_RTOL = 1e-9


class ClearingError(InvalidInputError):
    """A session that cannot be cleared (unknown, still open, or the engine refused it)."""


@dataclass(frozen=True)
class Result:
    """A computed clearing, before it is written."""

    status: str
    price: float | None
    quantity_kw: float
    award_kw: FloatArray  # per bid, + bought / − sold
    award_price: FloatArray  # per bid, currency/kWh
    bus_names: list[str]
    bus_price: FloatArray
    bus_net_kw: FloatArray
    substation_import_kw: float


def substation_kw(services: Services, area: str, book_kw: float) -> float:
    """kW the substation trades in an auction: the configured figure, else the substation
    transformers' rating, else (no finite rating) the whole book's size."""
    if services.config.substation_kw is not None:
        return float(services.config.substation_kw)
    rating = float(services.market.areas[area].feeder.substation_rating_kva)
    return rating if np.isfinite(rating) else book_kw


def clear_auction(services: Services, session: MarketSession, bids: BidArrays) -> Result:
    """Clear ``bids`` as a uniform-price double auction with the substation's bid."""
    floor, cap = session.floor, session.cap
    lam = float(np.clip(services.config.substation_price, floor, cap))
    q = bids.curves.quantity
    size = float(np.abs(q).sum()) + 1.0
    sub = substation_kw(services, session.area, size)
    curves = bids.curves
    ids = bids.seq
    owner = bids.party
    if sub > 0:  # the substation: sells above lam, buys (export) below it
        curves = _append_curve(curves, np.array([lam, lam]), np.array([sub, -sub]))
        ids = np.append(ids, -1)
        owner = np.append(owner, "substation")
    book = book_from_curves(ids, curves, owner=owner)
    res = clear(book, floor, cap)
    price = float(res.price[0])
    traded = not np.isnan(price)
    awards = res.awards[: bids.n] if traded else np.zeros(bids.n)
    sub_award = float(res.awards[bids.n]) if (sub > 0 and traded) else 0.0
    award_price = np.full(bids.n, price if traded else lam)
    return Result(
        status=str(res.status[0]),
        price=price if traded else None,
        quantity_kw=float(res.quantity[0]),
        award_kw=awards,
        award_price=award_price,
        bus_names=[],
        bus_price=np.zeros(0),
        bus_net_kw=np.zeros(0),
        substation_import_kw=-sub_award,
    )


def _append_curve(curves: Curves, price: FloatArray, quantity: FloatArray) -> Curves:
    return Curves(
        np.concatenate([curves.price, price]),
        np.concatenate([curves.quantity, quantity]),
        np.append(curves.offsets, curves.offsets[-1] + price.size),
    )


def clear_on_network(services: Services, session: MarketSession, bids: BidArrays) -> Result:
    """Clear ``bids`` on the area's feeder (DLMPs); equal blocks aggregated before the LP."""
    from transactive.market.network import clear_network

    area = services.market.areas[session.area]
    feeder = area.feeder
    names = feeder.bus_names
    index = {b: i for i, b in enumerate(names)}
    slack = int(feeder.source_buses[0])
    try:
        bus = np.array([slack if b is None else index[b] for b in bids.bus], dtype=np.int64)
    except KeyError as exc:
        raise ClearingError(f"session {session.id}: bid at unknown bus {exc}") from None
    # Aggregate blocks by (bus, price-taking, side, price); curves stay one group each.
    blk = np.flatnonzero(bids.is_block)
    crv = np.flatnonzero(~bids.is_block)
    key = np.column_stack(
        [
            bus[blk].astype(np.float64),
            bids.price_taking[blk].astype(np.float64),
            np.sign(bids.block_kw[blk]),
            bids.block_price[blk],
        ]
    )
    uniq, inv = _unique_rows(key)
    g_kw = np.bincount(inv, weights=bids.block_kw[blk], minlength=uniq.shape[0])
    n_g = uniq.shape[0]
    group_curves = Curves(
        np.repeat(uniq[:, 3], 2),
        np.column_stack([np.maximum(g_kw, 0.0), np.minimum(g_kw, 0.0)]).ravel(),
        np.arange(0, 2 * n_g + 1, 2, dtype=np.int64),
    )
    from transactive.core.curves import concat, select

    curves = concat([group_curves, select(bids.curves, crv)])
    g_bus = np.concatenate([uniq[:, 0].astype(np.int64), bus[crv]])
    g_pt = np.concatenate([uniq[:, 1] > 0, np.zeros(crv.size, dtype=bool)])
    book = book_from_curves(np.arange(n_g + crv.size), curves)
    sc = services.market.scenario
    lam = float(np.clip(services.config.substation_price, session.floor, session.cap))
    res = clear_network(
        feeder,
        book,
        g_bus,
        lam,
        limits=sc.limits,
        loss_iterations=sc.dso.loss_iterations,
        price_taking=g_pt,
        interval_hours=session.duration_s / 3600.0,
    )
    status = str(res.status[0])
    if status == "infeasible":
        raise ClearingError(f"session {session.id}: the network cannot be cleared (infeasible)")
    award = np.zeros(bids.n)
    g_award = res.awards[:n_g]
    share = np.divide(bids.block_kw[blk], g_kw[inv], out=np.zeros(blk.size), where=g_kw[inv] != 0.0)
    award[blk] = g_award[inv] * share
    award[crv] = res.awards[n_g:]
    dlmp = res.dlmp[0]
    priced = np.clip(np.where(np.isnan(dlmp), lam, dlmp), session.floor, session.cap)
    live = np.flatnonzero(~np.isnan(dlmp))
    net_kw = np.asarray(np.bincount(bus, weights=award, minlength=len(names)), dtype=np.float64)
    return Result(
        status=status,
        price=lam,
        quantity_kw=float(np.maximum(award, 0.0).sum()),
        award_kw=award,
        award_price=priced[bus],
        bus_names=[names[i] for i in live],
        bus_price=priced[live],
        bus_net_kw=net_kw[live],
        substation_import_kw=float(res.substation_import_kw[0]),
    )


def _unique_rows(key: FloatArray) -> tuple[FloatArray, NDArray[np.intp]]:
    """``np.unique(key, axis=0, return_inverse=True)`` (rows in lexicographic order) by a
    lexsort of the columns: ~20x faster on 100,000 rows of finite floats."""
    if key.shape[0] == 0:
        return key, np.zeros(0, dtype=np.intp)
    order = np.lexsort(key.T[::-1])
    ks = key[order]
    new = np.ones(ks.shape[0], dtype=bool)
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    inv = np.empty(ks.shape[0], dtype=np.intp)
    inv[order] = np.cumsum(new) - 1
    return ks[new], inv


def money(
    session: MarketSession, result: Result, substation_price: float
) -> tuple[FloatArray, float]:
    """Per-bid amounts (currency, + pays) and the merchandising surplus; raises BalanceError
    unless bids + substation − surplus sum to zero (per-bid vs per-bus sums). The substation
    is paid the clearing price in an auction (it is one of its bids), its own price under
    network clearing (the slack price)."""
    h = session.duration_s / 3600.0
    amount = result.award_price * result.award_kw * h
    paid = result.price if session.clearing == "auction" and result.price is not None else None
    sub_amount = -(substation_price if paid is None else paid) * result.substation_import_kw * h
    if session.clearing == "network":
        surplus = float((result.bus_price * result.bus_net_kw).sum() * h) + sub_amount
    else:
        surplus = 0.0
    total = float(amount.sum()) + sub_amount - surplus
    scale = float(np.abs(amount).sum()) + abs(sub_amount) + 1e-6
    if abs(total) > MONEY_RTOL * scale:
        raise BalanceError(
            f"session {session.id}: bids {amount.sum()} + substation {sub_amount} "
            f"- surplus {surplus} = {total} (not zero)"
        )
    return amount, surplus


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clear_session(s: Session, services: Services, session_id: str) -> MarketSession:
    """Clear session ``session_id`` (see the module docstring) and commit; a cleared
    session is returned as stored. Raises ClearingError for an unknown session or one whose
    gate has not closed, and whatever the engine raises for a book it refuses."""
    now = services.now()
    session = s.get(MarketSession, session_id)
    if session is None:
        raise ClearingError(f"session {session_id!r} not found")
    if session.status == "cleared":
        return session
    if session.status == "open" and now < session.gate_closure:
        raise ClearingError(f"session {session_id}: gate closure not reached")
    # Read under the row lock (a bid transaction in flight commits first), close the gate
    # and queue the job in the same commit: a crash from here on is resumed by the scheduler.
    session = _locked(s, session_id)
    if session.status == "cleared":  # another worker finished first
        return session
    if session.status == "open":
        session.status = "closed"
        queue_clearing(s, [session_id], now)
    bids = services.books.take(s, session)  # read ahead by the scheduler, or all now
    s.commit()  # the engine runs outside any transaction (SQLite: outside the write lock)
    result = run_engine(services, session, bids)
    journal.lock(s)  # the journal before the session row, in the order intake takes them
    session = _locked(s, session_id)
    if session.status == "cleared":  # another worker finished first
        return session
    lam = float(np.clip(services.config.substation_price, session.floor, session.cap))
    amount, surplus = money(session, result, lam)
    _write(s, session, bids, result, amount, surplus, lam, services, now)
    s.commit()
    return session


def run_engine(services: Services, session: MarketSession, bids: BidArrays) -> Result:
    """The session's clearing method on ``bids`` (no database access)."""
    if bids.n == 0:
        return Result(
            "no-bids", None, 0.0, np.zeros(0), np.zeros(0), [], np.zeros(0), np.zeros(0), 0.0
        )
    if session.clearing == "auction":
        return clear_auction(services, session, bids)
    return clear_on_network(services, session, bids)


def result_hash(services: Services, session: MarketSession, bids: BidArrays) -> str:
    """The ``result_hash`` a clearing of ``bids`` stores (computed here, nothing written):
    an independent re-computation to compare a stored result with."""
    result = run_engine(services, session, bids)
    lam = float(np.clip(services.config.substation_price, session.floor, session.cap))
    amount, surplus = money(session, result, lam)
    return _hash(records(session, bids, result, amount, surplus, lam)[0])


def _locked(s: Session, session_id: str) -> MarketSession:
    """The session row, locked for update (PostgreSQL; SQLite's BEGIN IMMEDIATE locks)."""
    q = select(MarketSession).where(MarketSession.id == session_id).with_for_update()
    session = s.scalars(q.execution_options(populate_existing=True)).one()
    return session


def party_records(
    sid: str,
    bid: NDArray[np.str_] | list[str],
    party: NDArray[np.str_],
    award_kw: FloatArray,
    price: FloatArray,
    amount: FloatArray,
) -> list[tuple[str, bytes]]:
    """One journal record per party of the session, in party order: ``(party_id, body)``,
    the body the canonical JSON (:func:`journal.canonical`) of the party's awards as
    columns in bid ``seq`` order: ``{"amount": [...], "award_kw": [...], "bid": [bid_id,
    ...], "party_id", "price": [...], "session_id"}`` (currency, kW, currency/kWh; a bid's
    public id is ``{session_id}:{party_id}:{bid_id}``). A party proves all its awards of a
    session with one inclusion proof."""
    if not (np.isfinite(award_kw).all() and np.isfinite(amount).all()):
        raise BalanceError(f"session {sid}: non-finite award or amount")
    if party.size == 0:
        return []
    order = np.argsort(party, kind="stable")
    names, first = np.unique(party[order], return_index=True)
    bounds = [*first.tolist(), int(party.size)]
    bids = np.asarray(bid, dtype=object)[order].tolist()
    cols = [a[order].tolist() for a in (award_kw, price, amount)]
    out = []
    for j, name in enumerate(names.tolist()):
        lo, hi = bounds[j], bounds[j + 1]
        doc = {
            "session_id": sid,
            "party_id": name,
            "bid": bids[lo:hi],
            "award_kw": cols[0][lo:hi],
            "price": cols[1][lo:hi],
            "amount": cols[2][lo:hi],
        }
        out.append((str(name), journal.canonical(doc)))
    return out


def records(
    session: MarketSession,
    bids: BidArrays,
    result: Result,
    amount: FloatArray,
    surplus: float,
    lam: float,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The journal bodies of a clearing: the session record (its SHA-256 is the
    ``result_hash``; it holds the SHA-256 of the concatenated SHA-256 of every party's
    awards record, no time) and the :func:`party_records`."""
    sid = session.id
    per_party = party_records(
        sid, bids.bid_id, bids.party, result.award_kw, result.award_price, amount
    )
    digest = hashlib.sha256()
    for _, body in per_party:
        digest.update(hashlib.sha256(body).digest())
    record = {
        "session_id": sid,
        "area": session.area,
        "stage": session.stage,
        "interval_start": session.interval_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": session.duration_s,
        "clearing": session.clearing,
        "status": result.status,
        "price": result.price,
        "quantity_kw": result.quantity_kw,
        "n_bids": bids.n,
        "substation_price": lam,
        "substation_import_kw": result.substation_import_kw,
        "merchandising_surplus": surplus,
        "bus_prices": [
            [b, pr, kw]
            for b, pr, kw in sorted(
                zip(
                    result.bus_names,
                    result.bus_price.tolist(),
                    result.bus_net_kw.tolist(),
                    strict=True,
                )
            )
        ],
        "awards_sha256": digest.hexdigest(),
    }
    return journal.canonical(record), per_party


def _write(
    s: Session,
    session: MarketSession,
    bids: BidArrays,
    result: Result,
    amount: FloatArray,
    surplus: float,
    lam: float,
    services: Services,
    now: datetime,
) -> None:
    """Awards, bus prices, journal records, the session's result and the job: one
    transaction (the caller commits)."""
    sid = session.id
    s.execute(delete(BusPrice).where(BusPrice.session_id == sid))
    s.execute(delete(Award).where(Award.bid_seq.in_(select(Bid.seq).where(Bid.session_id == sid))))
    bulk_insert_arrays(
        s,
        "awards",
        {
            "bid_seq": bids.seq,
            "award_kw": result.award_kw,
            "price": result.award_price,
            "amount": amount,
        },
    )
    bulk_insert(
        s,
        "bus_prices",
        ("session_id", "bus", "price", "net_kw"),
        [
            (sid, b, pr, kw)
            for b, pr, kw in zip(
                result.bus_names,
                result.bus_price.tolist(),
                result.bus_net_kw.tolist(),
                strict=True,
            )
        ],
    )
    body, per_party = records(session, bids, result, amount, surplus, lam)
    result_hash = _hash(body)
    entries: list[tuple[str, str, str | None, bytes]] = [(f"session:{sid}", "session", None, body)]
    entries.extend((f"awards:{sid}:{p}", "awards", p, b) for p, b in per_party)
    journal.append(s, entries)
    journal.sign_head(s, services.journal_key, now)
    s.execute(
        update(MarketSession)
        .where(MarketSession.id == sid)
        .values(
            status="cleared",
            price=result.price,
            quantity_kw=result.quantity_kw,
            result_status=result.status,
            n_bids=bids.n,
            result_hash=result_hash,
            cleared_at=now,
            substation_price=lam,
            substation_import_kw=result.substation_import_kw,
            merchandising_surplus=surplus,
        )
    )
    queue_clearing(s, [sid], now)
    s.execute(
        update(Job)
        .where(Job.kind == "clear", Job.key == sid)
        .values(status="done", finished_at=now, result_hash=result_hash, error=None)
    )
    s.flush()
    s.refresh(session)
