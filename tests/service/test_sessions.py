"""Market sessions: opened ahead of the clock, gate closures (DST-safe day-ahead), closing
and clearing jobs, the session API; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from conftest import Api
from transactive.service.models import Job, MarketSession
from transactive.service.sessions import (
    close_due,
    day_ahead_slots,
    ensure_sessions,
    real_time_slots,
    session_id,
)

T0 = datetime(2026, 7, 1, 12, 7, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def test_session_ids_are_utc_minutes() -> None:
    t = datetime(2026, 7, 1, 14, 15, tzinfo=BERLIN)
    assert session_id("semiurb4", "real-time", t) == "semiurb4:real-time:20260701T1215Z"


def test_real_time_slots_start_after_the_next_open_gate() -> None:
    slots = real_time_slots(T0, 900, 4, 300)
    starts = [s for s, _ in slots]
    assert starts[0] == datetime(2026, 7, 1, 12, 15, tzinfo=UTC)  # gate 12:10 > 12:07
    assert starts == [starts[0] + timedelta(minutes=15 * k) for k in range(4)]
    assert all(g == s - timedelta(seconds=300) for s, g in slots)
    late = real_time_slots(datetime(2026, 7, 1, 12, 10, 30, tzinfo=UTC), 900, 1, 300)
    assert late[0][0] == datetime(2026, 7, 1, 12, 30, tzinfo=UTC)  # 12:15's gate has passed


def test_day_ahead_covers_local_days_across_daylight_saving_changes() -> None:
    # Saturday 24 Oct 2026, 11:00 CEST: Sunday 25 Oct has 25 h (100 quarter hours), its gate
    # is Saturday 12:00 CEST = 10:00Z; Monday's gate is Sunday 12:00 CET = 11:00Z.
    now = datetime(2026, 10, 24, 9, 0, tzinfo=UTC)
    slots = day_ahead_slots(now, 900, "Europe/Berlin")
    sunday = [s for s in slots if s[0].astimezone(BERLIN).date().day == 25]
    monday = [s for s in slots if s[0].astimezone(BERLIN).date().day == 26]
    assert len(sunday) == 100 and len(monday) == 96 and len(slots) == 196
    assert {g for _, g in sunday} == {datetime(2026, 10, 24, 10, 0, tzinfo=UTC)}
    assert {g for _, g in monday} == {datetime(2026, 10, 25, 11, 0, tzinfo=UTC)}
    assert sunday[0][0] == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # local midnight CEST
    assert monday[0][0] == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # local midnight CET
    # Spring: Sunday 29 Mar 2026 has 23 h; after Saturday's gate only Monday is open.
    spring = day_ahead_slots(datetime(2026, 3, 28, 10, 0, tzinfo=UTC), 900, "Europe/Berlin")
    assert len(spring) == 92 + 96
    after_gate = day_ahead_slots(datetime(2026, 3, 28, 11, 0, 1, tzinfo=UTC), 900, "Europe/Berlin")
    assert len(after_gate) == 96
    assert after_gate[0][0].astimezone(BERLIN).date().day == 30


def test_sessions_are_created_ahead_once_and_closed_with_one_job(api: Api) -> None:
    svc = api.services
    config = svc.config.model_copy(update={"stages": ("real-time", "day-ahead")})
    market = svc.market
    assert market.timezone == "Europe/Berlin" and market.interval_s == 900
    with svc.db.sessions() as s:
        new = ensure_sessions(s, market, config, T0)
        s.commit()
        # Wednesday 1 July, 14:07 CEST: Thursday's day-ahead gate (Wed 12:00) has passed,
        # Friday's (Thu 12:00) is open; real-time: 8 intervals from 12:15Z.
        assert len(new) == len(market.areas) * (8 + 96)
        assert ensure_sessions(s, market, config, T0) == []
        s.commit()
        rt = s.scalars(
            select(MarketSession)
            .where(MarketSession.stage == "real-time")
            .order_by(MarketSession.interval_start)
        ).all()
        assert [m.interval_start for m in rt[:2]] == [
            datetime(2026, 7, 1, 12, 15, tzinfo=UTC),
            datetime(2026, 7, 1, 12, 30, tzinfo=UTC),
        ]
        assert all(m.gate_closure == m.interval_start - timedelta(seconds=300) for m in rt)
        assert {m.clearing for m in rt} == {"network"} and {m.status for m in rt} == {"open"}
        da = s.scalars(select(MarketSession).where(MarketSession.stage == "day-ahead")).all()
        assert {m.clearing for m in da} == {"auction"}
        assert {m.gate_closure for m in da} == {datetime(2026, 7, 2, 10, 0, tzinfo=UTC)}
        assert min(m.interval_start for m in da) == datetime(2026, 7, 2, 22, 0, tzinfo=UTC)

        closed = close_due(s, datetime(2026, 7, 1, 12, 25, tzinfo=UTC))
        s.commit()
        assert closed == [rt[0].id, rt[1].id]  # gates 12:10 and 12:25
        assert close_due(s, datetime(2026, 7, 1, 12, 25, tzinfo=UTC)) == []
        jobs = s.scalars(select(Job).order_by(Job.key)).all()
        assert [(j.kind, j.key, j.status) for j in jobs] == [
            ("clear", rt[0].id, "pending"),
            ("clear", rt[1].id, "pending"),
        ]
        statuses = {k: v for k, v in s.execute(select(MarketSession.id, MarketSession.status))}
        assert statuses[rt[0].id] == statuses[rt[1].id] == "closed"
        assert statuses[rt[2].id] == "open"
        # A later call opens the intervals that came into reach, never a duplicate.
        later = ensure_sessions(s, market, config, datetime(2026, 7, 1, 12, 25, tzinfo=UTC))
        s.commit()
        assert len(later) == 2  # 8 intervals from 12:45Z (12:30's gate is 12:25): 14:15, 14:30
        n = s.scalar(select(func.count()).select_from(MarketSession))
        assert n == len(market.areas) * (10 + 96)


def test_session_api_lists_filters_and_validates(api: Api) -> None:
    svc = api.services
    with svc.db.sessions() as s:
        ids = ensure_sessions(s, svc.market, svc.config, T0)
        s.commit()
    tso = api.party("tso1", "tso")
    r = api.get("/v1/sessions", tso, params={"stage": "real-time", "limit": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["id"] for x in body] == sorted(ids)[:3]
    assert body[0]["status"] == "open" and body[0]["price"] is None
    assert body[0]["duration_s"] == 900 and body[0]["clearing"] == "network"
    r = api.get("/v1/sessions", tso, params={"offset": 7})
    assert [x["id"] for x in r.json()] == sorted(ids)[7:]
    assert api.get("/v1/sessions", tso, params={"status": "cleared"}).json() == []
    assert api.get("/v1/sessions", tso, params={"area": "nowhere"}).json() == []
    one = api.get(f"/v1/sessions/{ids[0]}", tso)
    assert one.status_code == 200 and one.json()["id"] == ids[0]
    bad = api.get("/v1/sessions", tso, params={"stage": "intraday", "limit": 0})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["errors"]} == {
        ("query", "stage"),
        ("query", "limit"),
    }
    missing = api.get("/v1/sessions/nowhere:real-time:20260701T1200Z", tso)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert api.client.get("/v1/sessions").status_code == 401
