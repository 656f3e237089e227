"""Settlement runs: energy and imbalance lines of an area and period, invoices per party.

For the cleared sessions of ``area`` whose interval starts in [start, end):

* ``energy``: per party and session, Σ award_kw × h × price of its awards (currency; + the
  party pays, − it is paid: buyers pay, sellers are paid);
* ``imbalance``: per party and interval with meter readings, the deviation
  (import − export) kWh − awarded kWh (all stages of the interval), settled at the
  interval's real-time price: the simulator's two-settlement rule
  (:mod:`transactive.settlement.settle`, deviation from the position at the real-time
  price). Without a cleared real-time session the day-ahead, then the flexibility
  session's price is used; readings of an interval without any price stay unsettled
  (counted as ``unpriced_readings``);
* the area's DSO, the market operator, is the counterparty of both (``energy_counterparty``
  and ``imbalance_counterparty`` per session), so the run is revenue-neutral: Σ lines = 0,
  checked to the cent (:class:`~transactive.errors.BalanceError` otherwise).

Invoices are each party's Σ lines rounded to the cent by the largest-remainder rule (ties
by party id), so they sum to exactly 0.00. Lines and invoices are journaled
(``settlement:{run_id}``, ``invoice:{invoice_id}``) with the run in one transaction. A run is
idempotent per (area, period_start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transactive.errors import BalanceError
from transactive.service import journal
from transactive.service.deps import Services
from transactive.service.models import (
    Award,
    Bid,
    Invoice,
    MarketSession,
    MeterReading,
    Party,
    Resource,
    SettlementLine,
    SettlementRun,
)
from transactive.service.problems import ApiError, FieldError

#: Stages whose cleared price settles imbalance, in order of preference.
IMBALANCE_STAGES = ("real-time", "day-ahead", "flexibility")
#: Longest period one run settles.
MAX_PERIOD = timedelta(days=31)
#: |Σ lines| allowed before the run is refused (currency): half a cent.
TOLERANCE = 0.005

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def run_id(area: str, start: datetime) -> str:
    return f"{area}:{start.astimezone(UTC):%Y%m%dT%H%MZ}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Lines:
    """Settlement lines as columns (one entry per line)."""

    party: list[str]
    session: list[str | None]
    kind: list[str]
    kwh: FloatArray
    price: FloatArray  # NaN: no single price (counterparty lines)
    amount: FloatArray


def _sum(codes: npt.NDArray[np.intp], weights: FloatArray, n: int) -> FloatArray:
    """Σ ``weights`` per code 0..n-1."""
    out: FloatArray = np.bincount(codes, weights=weights, minlength=n).astype(np.float64)
    return out


def largest_remainder_cents(totals: FloatArray, names: list[str]) -> IntArray:
    """``totals`` (currency) rounded to integer cents so that they sum to the rounded sum:
    floor each, then give the missing cents to the largest fractional parts (ties by
    name)."""
    exact = np.asarray(totals, dtype=float) * 100.0
    base = np.floor(exact)
    cents = base.astype(np.int64)
    short = int(np.rint(exact.sum())) - int(cents.sum())
    if not 0 <= short <= cents.size:
        raise BalanceError(f"settlement: cannot round {cents.size} invoices ({short} cents)")
    order = sorted(range(cents.size), key=lambda i: (-(exact[i] - base[i]), names[i]))
    cents[order[:short]] += 1
    return cents


def compute_lines(
    awards: dict[str, Any], readings: dict[str, Any], prices: dict[int, tuple[str, float]], dso: str
) -> tuple[Lines, int]:
    """Energy, imbalance and counterparty lines (vectorised over awards and readings:
    integer group codes, ``np.unique`` and ``np.bincount``).

    ``awards``: arrays party, session, t (interval start, epoch s), h (duration, hours),
    award_kw, price; ``readings``: party, t, net_kwh; ``prices``: interval start → (session
    id, imbalance price). Returns the lines and the number of unpriced readings."""
    a_party = np.asarray(awards["party"], dtype=str)
    r_party = np.asarray(readings["party"], dtype=str)
    names, pcode = np.unique(np.concatenate([a_party, r_party]), return_inverse=True)
    a_pc, r_pc = pcode[: a_party.size], pcode[a_party.size :]
    a_kwh = np.asarray(awards["award_kw"], dtype=float) * np.asarray(awards["h"], dtype=float)
    a_amt = a_kwh * np.asarray(awards["price"], dtype=float)
    parts: list[Lines] = []
    if a_party.size:
        sess, a_sc = np.unique(np.asarray(awards["session"], dtype=str), return_inverse=True)
        uk, inv = np.unique(a_pc * sess.size + a_sc, return_inverse=True)
        kwh, amt = _sum(inv, a_kwh, uk.size), _sum(inv, a_amt, uk.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            price = np.where(kwh != 0, amt / kwh, np.nan)
        n = uk.size
        parts.append(
            Lines(
                names[uk // sess.size].tolist(),
                sess[uk % sess.size].tolist(),
                ["energy"] * n,
                kwh,
                price,
                amt,
            )
        )
        parts.append(
            Lines(
                [dso] * sess.size,
                sess.tolist(),
                ["energy_counterparty"] * sess.size,
                -_sum(a_sc, a_kwh, sess.size),
                np.full(sess.size, np.nan),
                -_sum(a_sc, a_amt, sess.size),
            )
        )
    pt = np.array(sorted(prices), dtype=np.int64)  # priced interval starts
    p_price = np.array([prices[int(x)][1] for x in pt], dtype=float)
    p_sess = np.array([prices[int(x)][0] for x in pt], dtype=object)

    def tcode(ts: Any) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        ts = np.asarray(ts, dtype=np.int64)
        if pt.size == 0:
            return np.zeros(ts.size, np.int64), np.zeros(ts.size, bool)
        i = np.minimum(np.searchsorted(pt, ts), pt.size - 1)
        return i.astype(np.int64), pt[i] == ts

    r_tc, priced = tcode(readings["t"])
    unpriced = int((~priced).sum())
    if priced.any():
        r_kwh = np.asarray(readings["net_kwh"], dtype=float)[priced]
        uk, inv = np.unique(r_pc[priced] * pt.size + r_tc[priced], return_inverse=True)
        metered = _sum(inv, r_kwh, uk.size)
        awarded = np.zeros(uk.size)
        if a_party.size:
            a_tc, a_ok = tcode(awards["t"])
            a_key = a_pc * pt.size + a_tc
            pos = np.minimum(np.searchsorted(uk, a_key), uk.size - 1)
            hit = a_ok & (uk[pos] == a_key)
            awarded = _sum(pos[hit], a_kwh[hit], uk.size)
        tc = uk % pt.size
        imb = metered - awarded
        amt = imb * p_price[tc]
        parts.append(
            Lines(
                names[uk // pt.size].tolist(),
                p_sess[tc].tolist(),
                ["imbalance"] * uk.size,
                imb,
                p_price[tc],
                amt,
            )
        )
        used = np.unique(tc)
        parts.append(
            Lines(
                [dso] * used.size,
                p_sess[used].tolist(),
                ["imbalance_counterparty"] * used.size,
                -_sum(tc, imb, pt.size)[used],
                np.full(used.size, np.nan),
                -_sum(tc, amt, pt.size)[used],
            )
        )
    lines = Lines(
        [str(p) for x in parts for p in x.party],
        [None if q is None else str(q) for x in parts for q in x.session],
        [k for x in parts for k in x.kind],
        np.concatenate([x.kwh for x in parts]) if parts else np.zeros(0),
        np.concatenate([x.price for x in parts]) if parts else np.zeros(0),
        np.concatenate([x.amount for x in parts]) if parts else np.zeros(0),
    )
    if not np.isfinite(lines.amount).all():
        raise BalanceError("settlement: a non-finite amount")
    total = float(lines.amount.sum())
    if abs(total) > TOLERANCE:
        raise BalanceError(f"settlement: lines sum to {total:.6f}, not 0 to the cent")
    return lines, unpriced


def _fetch(
    s: Session, area: str, start: datetime, end: datetime
) -> tuple[dict[str, Any], dict[str, Any], dict[int, tuple[str, float]], dict[str, int]]:
    """Awards, readings and imbalance prices of the cleared sessions and readings of the
    period; unsigned-reading counts per party."""
    sessions = s.scalars(
        select(MarketSession)
        .where(
            MarketSession.area == area,
            MarketSession.interval_start >= start,
            MarketSession.interval_start < end,
        )
        .order_by(MarketSession.id)
    ).all()
    pending = [m.id for m in sessions if m.status in ("open", "closed")]
    if pending:
        raise ApiError(
            409,
            f"{len(pending)} session(s) of the period are not cleared yet (first {pending[0]})",
        )
    cleared = {m.id: m for m in sessions if m.status == "cleared"}
    prices: dict[int, tuple[str, float]] = {}
    for stage in reversed(IMBALANCE_STAGES):  # the preferred stage overwrites
        for m in cleared.values():
            if m.stage == stage and m.price is not None and np.isfinite(m.price):
                prices[int(m.interval_start.timestamp())] = (m.id, float(m.price))
    rows = s.execute(
        select(Bid.party_id, Bid.session_id, Award.award_kw, Award.price)
        .join(Bid, Bid.seq == Award.bid_seq)
        .where(Bid.session_id.in_(list(cleared)))
        .order_by(Award.bid_seq)
    ).all()
    awards: dict[str, Any] = {
        "party": [r[0] for r in rows],
        "session": [r[1] for r in rows],
        "t": [int(cleared[r[1]].interval_start.timestamp()) for r in rows],
        "h": [cleared[r[1]].duration_s / 3600.0 for r in rows],
        "award_kw": [r[2] for r in rows],
        "price": [r[3] for r in rows],
    }
    reads = s.execute(
        select(
            MeterReading.party_id,
            MeterReading.interval_start,
            MeterReading.import_wh,
            MeterReading.export_wh,
            MeterReading.trust,
        )
        .join(Resource, Resource.id == MeterReading.resource_id)
        .where(
            Resource.area == area,
            MeterReading.interval_start >= start,
            MeterReading.interval_start < end,
        )
        .order_by(MeterReading.resource_id, MeterReading.interval_start)
    ).all()
    imp = np.array([r[2] for r in reads], dtype=np.int64)
    exp = np.array([r[3] for r in reads], dtype=np.int64)
    readings: dict[str, Any] = {
        "party": [r[0] for r in reads],
        "t": [int(r[1].timestamp()) for r in reads],
        "net_kwh": (imp - exp) / 1000.0,
    }
    unsigned: dict[str, int] = {}
    for r in reads:
        if r[4] != "signed":
            unsigned[r[0]] = unsigned.get(r[0], 0) + 1
    return awards, readings, prices, unsigned


def _check_period(svc: Services, area: str, start: datetime, end: datetime) -> None:
    errors: list[FieldError] = []
    step = svc.market.interval_s

    def bad(field: str, msg: str) -> None:
        errors.append(FieldError(loc=["body", field], msg=msg, type="value_error"))

    if area not in svc.market.areas:
        bad("area", f"unknown area {area!r}")
    for name, t in (("period_start", start), ("period_end", end)):
        if t.timestamp() % step:
            bad(name, f"not aligned to the {step} s market interval")
    if end <= start:
        bad("period_end", "must be after period_start")
    elif end - start > MAX_PERIOD:
        bad("period_end", f"a run settles at most {MAX_PERIOD.days} days")
    if errors:
        raise ApiError(422, f"{len(errors)} invalid field(s)", errors=errors)
    if end > svc.now():
        raise ApiError(409, "the period has not ended yet")


def settle_period(
    s: Session, svc: Services, area: str, start: datetime, end: datetime
) -> tuple[SettlementRun, bool]:
    """Settle ``area`` over [start, end) (commits): the run and whether it is new. An
    existing run of the same period is returned as is; another end for the same start is a
    409; uncleared sessions in the period are a 409."""
    _check_period(svc, area, start, end)
    rid = run_id(area, start)
    old = s.get(SettlementRun, rid)
    if old is not None:
        if old.period_end != end:
            raise ApiError(409, f"run {rid} exists with period_end {_iso(old.period_end)}")
        return old, False
    dso = s.scalars(
        select(Party.id).where(Party.role == "dso", Party.area == area).order_by(Party.id)
    ).first()
    if dso is None:
        raise ApiError(409, f"area {area!r} has no DSO party to act as counterparty")
    awards, readings, prices, unsigned = _fetch(s, area, start, end)
    lines, unpriced = compute_lines(awards, readings, prices, dso)
    now = svc.now()
    currency = svc.market.currency
    try:
        run = _write(s, svc, rid, area, start, end, currency, lines, unpriced, unsigned, now)
    except IntegrityError:  # a concurrent run of the same period committed first
        s.rollback()
        run2 = s.get(SettlementRun, rid)
        if run2 is None:
            raise
        return run2, False
    return run, True


def _write(
    s: Session,
    svc: Services,
    rid: str,
    area: str,
    start: datetime,
    end: datetime,
    currency: str,
    lines: Lines,
    unpriced: int,
    unsigned: dict[str, int],
    now: datetime,
) -> SettlementRun:
    order = sorted(
        range(len(lines.party)),
        key=lambda i: (lines.party[i], lines.kind[i], lines.session[i] or ""),
    )
    run = SettlementRun(
        id=rid,
        area=area,
        period_start=start,
        period_end=end,
        status="final",
        currency=currency,
        created_at=now,
    )
    s.add(run)
    s.flush()  # the unique (area, period_start) guard fires here
    rows = [
        {
            "run_id": rid,
            "party_id": lines.party[i],
            "session_id": lines.session[i],
            "kind": lines.kind[i],
            "kwh": float(lines.kwh[i]),
            "price": None if np.isnan(lines.price[i]) else float(lines.price[i]),
            "amount": float(lines.amount[i]),
        }
        for i in order
    ]
    if rows:
        s.execute(insert(SettlementLine), rows)
    parties = sorted(set(lines.party))
    by_party: dict[str, list[dict[str, Any]]] = {p: [] for p in parties}
    for r in rows:
        by_party[str(r["party_id"])].append(
            {k: r[k] for k in ("kind", "session_id", "kwh", "price", "amount")}
        )
    exact = np.array([sum(x["amount"] for x in by_party[p]) for p in parties], dtype=float)
    cents = largest_remainder_cents(exact, parties) if parties else np.zeros(0, np.int64)
    if int(cents.sum()) != 0:
        raise BalanceError(f"settlement: invoices sum to {int(cents.sum())} cents, not 0")
    journal.lock(s)
    entries: list[tuple[str, str, str | None, bytes]] = []
    docs: list[dict[str, Any]] = []
    for p, ex, c in zip(parties, exact, cents, strict=True):
        doc = {
            "kind": "invoice",
            "invoice_id": f"{rid}:{p}",
            "run_id": rid,
            "party_id": p,
            "area": area,
            "period_start": _iso(start),
            "period_end": _iso(end),
            "currency": currency,
            "lines": by_party[p],
            "subtotal": float(ex),
            "total": int(c) / 100,
            "total_cents": int(c),
            "rounding": round(int(c) / 100 - float(ex), 10),
            "unsigned_readings": unsigned.get(p, 0),
        }
        docs.append(doc)
    body = {
        "kind": "settlement",
        "run_id": rid,
        "area": area,
        "period_start": _iso(start),
        "period_end": _iso(end),
        "currency": currency,
        "created_at": _iso(now),
        "lines": [
            [r["party_id"], r["session_id"], r["kind"], r["kwh"], r["price"], r["amount"]]
            for r in rows
        ],
        "invoices": {d["party_id"]: d["total_cents"] for d in docs},
        "unpriced_readings": unpriced,
    }
    entries.append((f"settlement:{rid}", "settlement", None, journal.canonical(body)))
    for d in docs:
        entries.append(
            (f"invoice:{d['invoice_id']}", "invoice", d["party_id"], journal.canonical(d))
        )
    journal.append(s, entries)
    if docs:
        s.execute(
            insert(Invoice),
            [
                {
                    "id": d["invoice_id"],
                    "run_id": rid,
                    "party_id": d["party_id"],
                    "total": d["total"],
                    "currency": currency,
                    "document": d,
                }
                for d in docs
            ],
        )
    journal.sign_head(s, svc.journal_key, now)
    s.commit()
    return run
