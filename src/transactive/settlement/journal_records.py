"""Record tables → journal records: what the operator commits to the journal, and when.

One journal record per participant, design and local day for each kind, so that a
participant can later check *its* records against a signed tree head without seeing anyone
else's (the journal's inclusion proofs reveal only hashes of the others):

* ``awards``: a node's awards of one stage (day-ahead, real-time or tariff) over the day:
  the interval starts as an offset list and the quantity (kW) and price (currency/kWh) per
  interval (``null`` where the market did not trade);
* ``meter_reading``: a meter's signed message for the day, exactly as the meter sent it
  (:mod:`transactive.settlement.meter_data`), wrapped with the design it was read in;
* ``settlement``: a participant's settlement lines of the day — charge, counterparty,
  resource, interval, quantity kWh, price and the amount in minor units (cents) — and their
  total.

:func:`journal_days` groups them by local day in the order they happen — awards (the
market closes), then the meter readings, then settlement — so that the caller signs a tree
head after each day's market close. Quantities are journaled to 1e-6 kW or kWh and prices
to 1e-8 currency/kWh (the records keep full precision); amounts are the exact integer cents.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from transactive.settlement.meter_data import Message

Record = dict[str, Any]


@dataclass(frozen=True)
class JournalDay:
    """The records of one local day, in journal order, and the instant of the day's close
    (UTC end of the local day: the last market interval of the day has closed)."""

    date: str
    close: pd.Timestamp
    records: list[Record]


def journal_days(
    awards: pd.DataFrame,
    readings: Sequence[tuple[str, str, Message]],
    lines: pd.DataFrame,
    timezone: str,
) -> Iterator[JournalDay]:
    """The journal records of ``awards`` (AWARDS), the signed meter messages ``readings``
    (``(design, local date, message)``; the message as sent: payload and signature) and
    settlement ``lines`` (SETTLEMENT, amounts in
    minor units), one :class:`JournalDay` per local day, days in order."""
    by_day: dict[str, list[Record]] = {}
    closes: dict[str, pd.Timestamp] = {}
    for date, close, rec in _award_records(awards, timezone):
        by_day.setdefault(date, []).append(rec)
        closes[date] = max(closes.get(date, close), close)
    for design, date, message in readings:
        by_day.setdefault(date, []).append(
            {
                "kind": "meter_reading",
                "id": f"meter_reading/{design}/{message.payload['meter_id']}/{date}",
                "design": design,
                "participant_id": message.payload["participant_id"],
                "date": date,
                "message": {**message.payload, "signature": message.signature},
            }
        )
    for date, close, rec in _settlement_records(lines, timezone):
        by_day.setdefault(date, []).append(rec)
        closes[date] = max(closes.get(date, close), close)
    for date in sorted(by_day):
        kinds = {"awards": 0, "meter_reading": 1, "settlement": 2}
        records = sorted(by_day[date], key=lambda r: kinds[r["kind"]])  # stable within a kind
        close = closes.get(date) or pd.Timestamp(date, tz=timezone) + pd.Timedelta(days=1)
        yield JournalDay(date, close.tz_convert("UTC"), records)


def _local_dates(starts: pd.Series, timezone: str) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Local date (ISO) of every interval start, and the starts as a UTC index."""
    utc = pd.DatetimeIndex(starts).tz_convert("UTC")
    return np.asarray(utc.tz_convert(timezone).strftime("%Y-%m-%d")), utc


def _groups(keys: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Row positions of every distinct combination of ``keys`` (sorted by the keys)."""
    codes = [pd.factorize(k, sort=True)[0] for k in keys]
    order = np.lexsort(codes[::-1])
    stacked = np.stack([c[order] for c in codes])
    cut = np.flatnonzero((np.diff(stacked, axis=1) != 0).any(axis=0)) + 1
    yield from np.split(order, cut)


def _iso(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _numbers(values: np.ndarray, digits: int | None = None) -> list[float | None]:
    """JSON numbers (``None`` for NaN/inf, which JSON cannot hold)."""
    out: list[float | None] = []
    for v in values.tolist():
        if not math.isfinite(v):
            out.append(None)
        else:
            out.append(round(v, digits) if digits is not None else v)
    return out


def _award_records(
    awards: pd.DataFrame, timezone: str
) -> Iterator[tuple[str, pd.Timestamp, Record]]:
    if awards.empty:
        return
    dates, utc = _local_dates(awards["interval_start"], timezone)
    cols = {c: awards[c].astype(str).to_numpy() for c in ("design", "stage", "node_id")}
    part = awards["participant_id"].astype(str).to_numpy()
    market = awards["market_id"].astype(str).to_numpy()
    q = awards["quantity_kw"].to_numpy(dtype=float)
    p = awards["price"].to_numpy(dtype=float)
    hours = awards["duration_h"].to_numpy(dtype=float)
    for rows in _groups([dates, cols["design"], cols["stage"], cols["node_id"]]):
        rows = rows[np.argsort(utc.asi8[rows], kind="stable")]
        first = utc[rows[0]]
        date, design, stage, node = (
            dates[rows[0]],
            cols["design"][rows[0]],
            cols["stage"][rows[0]],
            cols["node_id"][rows[0]],
        )
        offsets = ((utc.asi8[rows] - first.value) // 60_000_000_000).tolist()
        yield (
            date,
            utc[rows[-1]] + pd.Timedelta(hours=float(hours[rows[-1]])),
            {
                "kind": "awards",
                "id": f"awards/{design}/{stage}/{node}/{date}",
                "design": design,
                "stage": stage,
                "market_id": market[rows[0]],
                "participant_id": part[rows[0]],
                "node_id": node,
                "date": date,
                "first_interval_start": _iso(first),
                "interval_offsets_min": offsets,
                "duration_h": float(hours[rows[0]]),
                "quantity_kw": _numbers(q[rows], 6),
                "price": _numbers(p[rows], 8),
            },
        )


def _settlement_records(
    lines: pd.DataFrame, timezone: str
) -> Iterator[tuple[str, pd.Timestamp, Record]]:
    if lines.empty:
        return
    dates, utc = _local_dates(lines["interval_start"], timezone)
    design = lines["design"].astype(str).to_numpy()
    part = lines["participant_id"].astype(str).to_numpy()
    text = {
        c: lines[c].astype(str).to_numpy()
        for c in ("charge", "counterparty_id", "resource_id", "currency")
    }
    qty = lines["quantity_kwh"].to_numpy(dtype=float)
    price = lines["price"].to_numpy(dtype=float)
    amount = lines["amount"].to_numpy()
    hours = lines["duration_h"].to_numpy(dtype=float)
    for rows in _groups([dates, design, part]):
        rows = rows[np.argsort(utc.asi8[rows], kind="stable")]
        date, d, who = dates[rows[0]], design[rows[0]], part[rows[0]]
        amounts = [int(a) for a in amount[rows].tolist()]
        yield (
            date,
            utc[rows[-1]] + pd.Timedelta(hours=float(hours[rows[-1]])),
            {
                "kind": "settlement",
                "id": f"settlement/{d}/{who}/{date}",
                "design": d,
                "participant_id": who,
                "date": date,
                "currency": text["currency"][rows[0]],
                "lines": {
                    "charge": text["charge"][rows].tolist(),
                    "counterparty_id": text["counterparty_id"][rows].tolist(),
                    "resource_id": text["resource_id"][rows].tolist(),
                    "interval_start": [_iso(t) for t in utc[rows]],
                    "quantity_kwh": _numbers(qty[rows], 6),
                    "price": _numbers(price[rows], 8),
                    "amount_minor": amounts,
                },
                "total_minor": sum(amounts),
            },
        )
