"""Market sessions: one per area, stage and interval, opened ahead of the clock, closed at
gate closure.

* **real-time** (network clearing with DLMPs) and **flexibility** (network clearing): one
  session per market interval (the scenario's ``market_interval_min``), ``sessions_ahead``
  intervals ahead of the clock; gate closure ``gate_closure_s`` before the interval starts.
* **day-ahead** (uniform-price auction): one session per interval of the next local day
  (the market's time zone; 92 or 100 quarter hours on the days daylight saving time
  changes), gate closure at 12:00 local time the day before. The sessions of a day are
  opened while its gate is still open, up to two days ahead.

Session ids are ``{area}:{stage}:{YYYYmmddTHHMMZ}`` of the interval start in UTC. Creating
sessions and jobs is idempotent (``INSERT … ON CONFLICT DO NOTHING`` on the unique keys),
so several schedulers, restarts and retries never duplicate one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from transactive.service.area import Market
from transactive.service.config import ServiceConfig
from transactive.service.models import Job, MarketSession

#: Clearing method of each stage.
CLEARING = {"day-ahead": "auction", "real-time": "network", "flexibility": "network"}
#: Local time of the day-ahead gate closure, the day before delivery.
DAY_AHEAD_GATE = time(12, 0)
#: How many local days ahead day-ahead sessions are opened (while their gate is open).
DAY_AHEAD_DAYS = 2


def session_id(area: str, stage: str, interval_start: datetime) -> str:
    """``{area}:{stage}:{YYYYmmddTHHMMZ}`` of ``interval_start`` (tz-aware) in UTC."""
    return f"{area}:{stage}:{interval_start.astimezone(UTC):%Y%m%dT%H%MZ}"


def _insert_ignore(s: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any that collide with a unique key (both backends)."""
    if not rows:
        return
    dialect = s.get_bind().dialect.name
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    s.execute(ins.on_conflict_do_nothing(), list(rows))


def real_time_slots(
    now: datetime, interval_s: int, ahead: int, gate_s: int
) -> list[tuple[datetime, datetime]]:
    """(interval start, gate closure) of the next ``ahead`` intervals whose gate is still
    open at ``now``; intervals are aligned to multiples of ``interval_s`` since the epoch."""
    epoch = int(now.timestamp())
    first = (epoch // interval_s) * interval_s
    out: list[tuple[datetime, datetime]] = []
    k = 0
    while len(out) < ahead:
        start = datetime.fromtimestamp(first + k * interval_s, UTC)
        gate = start - timedelta(seconds=gate_s)
        if gate > now:
            out.append((start, gate))
        k += 1
    return out


def day_ahead_slots(
    now: datetime, interval_s: int, timezone: str
) -> list[tuple[datetime, datetime]]:
    """(interval start, gate closure) of every interval of the local delivery days whose
    gate (12:00 local, the day before) is still open at ``now``, up to two days ahead."""
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    out: list[tuple[datetime, datetime]] = []
    for k in range(1, DAY_AHEAD_DAYS + 1):
        day = today + timedelta(days=k)
        gate = datetime.combine(day - timedelta(days=1), DAY_AHEAD_GATE, tz).astimezone(UTC)
        if gate <= now:
            continue
        start, end = _local_day(day, tz)
        n = int((end - start).total_seconds()) // interval_s
        out.extend((start + timedelta(seconds=i * interval_s), gate) for i in range(n))
    return out


def _local_day(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of the local calendar ``day`` (23, 24 or 25 hours long)."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def ensure_sessions(s: Session, market: Market, config: ServiceConfig, now: datetime) -> list[str]:
    """Create the sessions of every area and configured stage ahead of ``now`` (see the
    module docstring); returns the ids of the sessions that did not exist before."""
    interval_s = market.interval_s
    rows: list[dict[str, Any]] = []
    for stage in config.stages:
        if stage == "day-ahead":
            slots = day_ahead_slots(now, interval_s, market.timezone)
        else:
            slots = real_time_slots(now, interval_s, config.sessions_ahead, config.gate_closure_s)
        for area in market.areas:
            rows.extend(
                {
                    "id": session_id(area, stage, start),
                    "area": area,
                    "stage": stage,
                    "interval_start": start,
                    "duration_s": interval_s,
                    "gate_closure": gate,
                    "status": "open",
                    "clearing": CLEARING[stage],
                    "floor": market.floor,
                    "cap": market.cap,
                    "n_bids": 0,
                    "created_at": now,
                }
                for start, gate in slots
            )
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    existing: set[str] = set()
    for i in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[i : i + 500]
        existing.update(s.scalars(select(MarketSession.id).where(MarketSession.id.in_(chunk))))
    new = [r for r in rows if r["id"] not in existing]
    _insert_ignore(s, MarketSession.__table__, new)
    return [r["id"] for r in new]


def close_due(s: Session, now: datetime) -> list[str]:
    """Close every open session whose gate closure is at or before ``now`` and queue its
    clearing job (``Job`` kind ``clear``, key = session id); returns the closed ids."""
    due = list(
        s.scalars(
            select(MarketSession.id)
            .where(MarketSession.status == "open", MarketSession.gate_closure <= now)
            .order_by(MarketSession.gate_closure, MarketSession.id)
        )
    )
    if not due:
        return []
    s.execute(
        update(MarketSession)
        .where(MarketSession.id.in_(due), MarketSession.status == "open")
        .values(status="closed")
    )
    queue_clearing(s, due, now)
    return due


def queue_clearing(s: Session, session_ids: Sequence[str], now: datetime) -> None:
    """A pending ``clear`` job per session (no-op for sessions that have one)."""
    _insert_ignore(
        s,
        Job.__table__,
        [
            {"kind": "clear", "key": sid, "status": "pending", "attempts": 0, "due_at": now}
            for sid in session_ids
        ],
    )
