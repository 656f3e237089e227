"""Tenancy, route by route: every route is classified in MATRIX (a new route fails until it
is), and for every role each cross-tenant read is 403/404 or filtered and each cross-tenant
write is refused (and writes nothing); on SQLite and PostgreSQL.

Roles: participant (alice), other participant of the same area (eve), aggregator (agg, whose
portfolio is bob), DSO of the area (dso), DSO of another area (dso2, with carol), TSO (tso),
auditor (aud) and admin (root).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import create_engine, func, insert, select, text
from starlette.routing import Route

from conftest import PG_BASE, Api, make_api, pg_url
from transactive.service.app import create_app
from transactive.service.config import ServiceConfig
from transactive.service.models import Bid, Client, MarketSession, Party
from transactive.service.sessions import ensure_sessions

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
ROLES = ("alice", "eve", "agg", "dso", "dso2", "tso", "aud", "root")

#: Every route: how tenancy applies to it.
#: public: no token; self: the caller's own identity; admin: admin only;
#: market: market data every market:read holder sees (sessions, aggregate results);
#: rows: party rows filtered by tenancy; one: one party's row (403/404 unless readable);
#: act: a write on behalf of a party (may_act_for); journal: the public journal.
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("POST", "/v1/token"): "public",
    ("GET", "/v1/me"): "self",
    ("POST", "/v1/parties"): "admin",
    ("GET", "/v1/parties"): "rows",
    ("GET", "/v1/parties/{party_id}"): "one",
    ("POST", "/v1/parties/{party_id}/clients"): "admin",
    ("GET", "/v1/sessions"): "market",
    ("GET", "/v1/sessions/{session_id}"): "market",
    ("GET", "/v1/sessions/{session_id}/awards"): "rows",
    ("GET", "/v1/sessions/{session_id}/prices"): "market",
    ("GET", "/v1/dispatch"): "one",
    ("POST", "/v1/sessions/{session_id}/clear"): "admin",
    ("POST", "/v1/sessions/{session_id}/bids"): "act",
    ("POST", "/v1/sessions/{session_id}/bids/batch"): "act",
    ("GET", "/v1/sessions/{session_id}/bids"): "rows",
    ("GET", "/v1/bids/{bid_id}"): "one",
    ("GET", "/v1/journal/head"): "journal",
    ("GET", "/v1/journal/records/{record_id}"): "one",
    ("GET", "/v1/journal/consistency"): "journal",
    ("GET", "/v1/areas"): "market",
    ("GET", "/v1/areas/{area}"): "market",
    ("POST", "/v1/resources"): "act",
    ("GET", "/v1/resources"): "rows",
    ("GET", "/v1/resources/{resource_id}"): "one",
    ("POST", "/v1/meter-readings"): "act",
    ("GET", "/v1/meter-readings"): "rows",
    ("POST", "/v1/settlement-runs"): "act",
    ("GET", "/v1/settlement-runs"): "rows",
    ("GET", "/v1/settlement-runs/{run_id}"): "one",
    ("GET", "/v1/settlement-runs/{run_id}/lines"): "rows",
    ("GET", "/v1/invoices"): "rows",
    ("GET", "/v1/invoices/{invoice_id}"): "one",
}


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the app."""
    out: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for r in routes:
            if isinstance(r, APIRoute | Route):
                out.update((m, prefix + r.path) for m in (r.methods or ()) if m != "HEAD")
            elif hasattr(r, "original_router"):  # FastAPI's included router
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            else:
                raise AssertionError(f"unknown kind of route {r!r}: teach app_routes() it")

    app = create_app(ServiceConfig(db_url="sqlite://", scheduler=False))
    walk(app.routes, "")
    app.state.services.db.dispose()
    return out


def test_every_route_is_classified() -> None:
    routes = app_routes()
    missing = sorted(routes - set(MATRIX))
    assert not missing, f"classify these routes in tests/service/test_tenancy.py MATRIX: {missing}"
    stale = sorted(set(MATRIX) - routes)
    assert not stale, f"MATRIX lists routes the app no longer has: {stale}"


@dataclass
class World:
    api: Api
    who: dict[str, dict[str, str]]
    area: str
    cleared: str  # a cleared session: bids (and awards) of alice, bob, eve
    open: str  # an open session: bids of alice, bob (by agg) and eve
    run: str = ""  # a settlement run of the area (by its DSO)
    period: dict[str, str] | None = None  # its period

    def get(self, role: str, path: str, **kw: Any) -> Any:
        return self.api.client.get(path, headers=self.who[role], **kw)

    def post(self, role: str, path: str, **kw: Any) -> Any:
        return self.api.client.post(path, headers=self.who[role], **kw)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per backend for the whole module (the world is read-mostly)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('tenancy') / 'service.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_url(schema)
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="module")
def world(world_db: str) -> Iterator[World]:
    db_url = world_db
    config = ServiceConfig(
        db_url=db_url, scheduler=False, clock_start=NOW, stages=("real-time",), substation_kw=0.0
    )
    for api in make_api(config):
        svc = api.services
        area = next(iter(svc.market.areas))
        who = {
            "alice": api.party("alice", "participant", area=area),
            "eve": api.party("eve", "participant", area=area),
            "agg": api.party("agg", "aggregator", area=area),
            "dso": api.party("dso", "dso", area=area),
            "dso2": api.party("dso2", "dso", area="elsewhere"),
            "tso": api.party("tso", "tso"),
            "aud": api.party("aud", "auditor"),
            "root": api.party("root", "admin"),
        }
        api.party("bob", "participant", area=area, aggregator_id="agg")
        api.party("carol", "participant", area="elsewhere")
        with svc.db.sessions() as s:
            ensure_sessions(s, svc.market, svc.config, NOW - timedelta(hours=1))
            s.commit()
            rows = list(s.scalars(select(MarketSession).order_by(MarketSession.interval_start)))
        first = next(m for m in rows if m.gate_closure <= NOW)
        cleared = first.id
        t0 = first.interval_start.replace(tzinfo=UTC)
        opened = next(m.id for m in rows if m.gate_closure > NOW + timedelta(minutes=5))
        bus = sorted(svc.market.areas[area].buses)[3]
        with svc.db.sessions() as s:
            s.execute(
                insert(Bid),
                [
                    {
                        "id": f"{cleared}:{p}:b",
                        "session_id": cleared,
                        "party_id": p,
                        "bid_id": "b",
                        "resource_id": None,
                        "side": side,
                        "price": price,
                        "quantity_kw": 1.0,
                        "curve": None,
                        "bus": bus,
                        "price_taking": False,
                        "created_at": NOW,
                        "journal_index": None,
                    }
                    for p, side, price in (
                        ("alice", "buy", 0.4),
                        ("bob", "sell", 0.1),
                        ("eve", "buy", 0.5),
                    )
                ],
            )
            s.commit()
        w = World(api, who, area, cleared, opened)
        assert w.post("root", f"/v1/sessions/{cleared}/clear").status_code == 200
        bid = {"bid_id": "x", "side": "buy", "price": 0.2, "quantity_kw": 1.0}
        for role, party in (("alice", "alice"), ("agg", "bob"), ("eve", "eve")):
            r = w.post(role, f"/v1/sessions/{opened}/bids", json={**bid, "party_id": party})
            assert r.status_code == 201, r.text
            res = {"id": f"r-{party}", "party_id": party, "kind": "meter", "area": area}
            r = w.post(role, "/v1/resources", json={**res, "bus": bus})
            assert r.status_code == 201, r.text
            reading = {
                "resource_id": f"r-{party}",
                "interval_start": t0.isoformat(),
                "duration_s": 900,
                "import_wh": 100,
                "export_wh": 0,
            }
            r = w.post(role, "/v1/meter-readings", json={"readings": [reading]})
            assert r.status_code == 201, r.text
        w.period = {
            "period_start": t0.isoformat(),
            "period_end": (t0 + timedelta(seconds=first.duration_s)).isoformat(),
        }
        r = w.post("dso", "/v1/settlement-runs", json={"area": area, **w.period})
        assert r.status_code in (200, 201), r.text
        w.run = r.json()["id"]
        yield w


def _parties(rows: list[dict[str, Any]]) -> set[str]:
    return {r["party_id"] for r in rows}


AREA = {"alice", "eve", "agg", "bob", "dso"}  # the parties of the market's area
BIDDERS = {"alice", "eve", "bob"}


def test_party_reads(world: World) -> None:
    w = world
    seen = {role: {p["id"] for p in w.get(role, "/v1/parties").json()} for role in ROLES}
    assert seen["alice"] == {"alice"} and seen["eve"] == {"eve"}
    assert seen["agg"] == {"agg", "bob"}
    assert seen["dso"] == AREA and seen["dso2"] == {"dso2", "carol"}
    assert seen["tso"] == set()
    assert seen["aud"] == seen["root"] and {"carol", "tso", "aud", "root"} <= seen["root"]
    expect = {"alice": 200, "eve": 404, "agg": 404, "dso": 200, "dso2": 404, "tso": 404}
    for role in ROLES:
        r = w.get(role, "/v1/parties/alice")
        assert r.status_code == expect.get(role, 200), (role, r.text)
    assert w.get("agg", "/v1/parties/bob").status_code == 200
    assert w.get("dso", "/v1/parties/carol").status_code == 404
    for role in ROLES:
        me = w.get(role, "/v1/me").json()
        assert me["party_id"] == role


def test_admin_only_writes_are_refused_to_everyone_else(world: World) -> None:
    w = world
    with w.api.services.db.sessions() as s:
        before = (
            s.scalar(select(func.count()).select_from(Party)),
            s.scalar(select(func.count()).select_from(Client)),
        )
    for role in ROLES[:-1]:
        body = {"id": f"new-{role}", "name": "n", "role": "participant"}
        assert w.post(role, "/v1/parties", json=body).status_code == 403, role
        assert w.post(role, "/v1/parties/alice/clients").status_code == 403, role
        assert w.post(role, f"/v1/sessions/{w.cleared}/clear").status_code == 403, role
    with w.api.services.db.sessions() as s:
        after = (
            s.scalar(select(func.count()).select_from(Party)),
            s.scalar(select(func.count()).select_from(Client)),
        )
    assert after == before
    assert w.post("root", "/v1/parties/alice/clients").status_code == 201


def test_market_data_is_public_to_market_readers(world: World) -> None:
    w = world
    for role in ROLES:
        assert w.get(role, "/v1/sessions", params={"limit": 2}).status_code == 200, role
        one = w.get(role, f"/v1/sessions/{w.cleared}")
        assert one.status_code == 200 and one.json()["status"] == "cleared", role
        prices = w.get(role, f"/v1/sessions/{w.cleared}/prices")
        assert prices.status_code == 200, role
        assert (prices.json()["buses"] is None) == (role == "tso"), role  # TSO: aggregate


def _filtered(w: World, path: str) -> dict[str, set[str]]:
    out = {}
    for role in ROLES:
        r = w.get(role, path)
        assert r.status_code == 200, (role, r.text)
        out[role] = _parties(r.json())
    return out


def test_bids_and_awards_are_filtered_rows(world: World) -> None:
    w = world
    for path in (f"/v1/sessions/{w.open}/bids", f"/v1/sessions/{w.cleared}/awards"):
        seen = _filtered(w, path)
        assert seen["alice"] == {"alice"} and seen["eve"] == {"eve"}, path
        assert seen["agg"] == {"bob"}, path
        assert seen["dso"] == BIDDERS and seen["dso2"] == set(), path
        assert seen["tso"] == set(), path
        assert seen["aud"] == seen["root"] == BIDDERS, path


def test_one_partys_rows(world: World) -> None:
    w = world
    bid = f"{w.open}:alice:x"
    own = {"alice": 200, "dso": 200, "aud": 200, "root": 200}
    checks: list[tuple[str, Callable[[str], Any], dict[str, int]]] = [
        ("bid", lambda r: w.get(r, f"/v1/bids/{bid}"), own),
        ("record", lambda r: w.get(r, f"/v1/journal/records/bid:{bid}"), {**own, "tso": 403}),
        ("dispatch", lambda r: w.get(r, "/v1/dispatch", params={"party_id": "alice"}), own),
    ]
    for what, call, allowed in checks:
        for role in ROLES:
            r = call(role)
            assert r.status_code == allowed.get(role, 404), (what, role, r.text)
    bob_bid = f"{w.open}:bob:x"
    assert w.get("agg", f"/v1/bids/{bob_bid}").status_code == 200  # its portfolio
    assert w.get("dso2", f"/v1/bids/{bob_bid}").status_code == 404
    d = w.get("agg", "/v1/dispatch", params={"party_id": "bob"}).json()
    assert [x["award_kw"] for x in d] == [pytest.approx(-1.0)]


def test_journal_is_public_to_journal_readers(world: World) -> None:
    w = world
    for role in ROLES:
        head = w.get(role, "/v1/journal/head")
        rec = w.get(role, f"/v1/journal/records/session:{w.cleared}")
        cons = w.get(role, "/v1/journal/consistency", params={"first": 1, "second": 2})
        want = 403 if role == "tso" else 200  # the TSO holds no journal:read
        assert (head.status_code, rec.status_code, cons.status_code) == (want,) * 3, role


def test_bids_for_others_are_refused_and_write_nothing(world: World) -> None:
    w = world
    url = f"/v1/sessions/{w.open}/bids"
    with w.api.services.db.sessions() as s:
        before = s.scalar(select(func.count()).select_from(Bid))
    bid = {"bid_id": "y", "side": "sell", "price": 0.1, "quantity_kw": 1.0}
    for role in ROLES:
        for party in ("alice", "bob", "carol"):
            if (role, party) in (("alice", "alice"), ("agg", "bob")):
                continue
            one = w.post(role, url, json={**bid, "party_id": party})
            batch = w.post(role, f"{url}/batch", json={"bids": [{**bid, "party_id": party}]})
            assert (one.status_code, batch.status_code) == (403, 403), (role, party, one.text)
    with w.api.services.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Bid)) == before
    assert w.post("agg", url, json={**bid, "party_id": "bob"}).status_code == 201


def test_resources_and_meter_readings(world: World) -> None:
    w = world
    for path in ("/v1/resources", "/v1/meter-readings"):
        seen = _filtered(w, path)
        assert seen["alice"] == {"alice"} and seen["agg"] == {"bob"}, path
        assert seen["dso"] == BIDDERS and seen["dso2"] == seen["tso"] == set(), path
        assert seen["aud"] == seen["root"] == BIDDERS, path
    for role in ROLES:
        r = w.get(role, "/v1/resources/r-alice")
        ok = role in ("alice", "dso", "aud", "root")
        assert r.status_code in ((200,) if ok else (403, 404)), (role, r.text)
    bus = sorted(w.api.services.market.areas[w.area].buses)[3]
    res = {"kind": "meter", "area": w.area, "bus": bus}
    reading = {
        "interval_start": "2026-07-01T11:15:00Z",
        "duration_s": 900,
        "import_wh": 5,
        "export_wh": 0,
    }
    for role in ROLES:
        for party in ("alice", "bob"):
            if (role, party) in (("alice", "alice"), ("agg", "bob")):
                continue
            body = {**res, "id": f"z-{role}-{party}", "party_id": party}
            r = w.post(role, "/v1/resources", json=body)
            assert r.status_code in (403, 404), (role, party, r.text)
            m = w.post(
                role,
                "/v1/meter-readings",
                json={"readings": [{**reading, "resource_id": f"r-{party}"}]},
            )
            assert m.status_code in (403, 404, 422), (role, party, m.text)  # "not yours"
    assert len(w.get("root", "/v1/resources").json()) == 3
    assert len(w.get("root", "/v1/meter-readings").json()) == 3


def test_areas_and_settlement(world: World) -> None:
    w = world
    for role in ROLES:
        assert w.get(role, "/v1/areas").status_code == 200, role
        a = w.get(role, f"/v1/areas/{w.area}")
        assert a.status_code == 200, role
        assert (a.json()["buses"] is None) == (role == "tso"), role
    assert w.period is not None
    for role in ("alice", "eve", "agg", "dso2", "tso", "aud"):
        r = w.post(role, "/v1/settlement-runs", json={"area": w.area, **w.period})
        assert r.status_code == 403, (role, r.text)
    for role in ROLES:
        if role == "tso":  # no settlement:read
            assert w.get(role, "/v1/invoices").status_code == 403
            continue
        inv = w.get(role, "/v1/invoices").json()
        lines = w.get(role, f"/v1/settlement-runs/{w.run}/lines")
        run = w.get(role, f"/v1/settlement-runs/{w.run}")
        runs = {x["id"] for x in w.get(role, "/v1/settlement-runs").json()}
        mine = _parties(inv)
        if role in ("dso2",):
            assert mine == set() and runs == set() and run.status_code == 404, role
            assert lines.status_code == 404 or _parties(lines.json()) == set(), role
            continue
        assert run.status_code == 200 and w.run in runs, role
        assert _parties(lines.json()) <= mine | ({"dso"} if role != "alice" else set()), role
        expect = {"alice": {"alice"}, "eve": {"eve"}, "agg": {"bob"}}.get(role)
        if expect is not None:
            assert mine == expect, (role, mine)
        for x in w.get("root", "/v1/invoices").json():
            one = w.get(role, f"/v1/invoices/{x['id']}")
            assert one.status_code == (200 if x["party_id"] in mine else 404), (role, x)


#: The test that proves each non-public route (a new route needs an entry).
PROBED = {
    ("GET", "/v1/me"): test_party_reads,
    ("POST", "/v1/parties"): test_admin_only_writes_are_refused_to_everyone_else,
    ("GET", "/v1/parties"): test_party_reads,
    ("GET", "/v1/parties/{party_id}"): test_party_reads,
    ("POST", "/v1/parties/{party_id}/clients"): test_admin_only_writes_are_refused_to_everyone_else,
    ("GET", "/v1/sessions"): test_market_data_is_public_to_market_readers,
    ("GET", "/v1/sessions/{session_id}"): test_market_data_is_public_to_market_readers,
    ("GET", "/v1/sessions/{session_id}/awards"): test_bids_and_awards_are_filtered_rows,
    ("GET", "/v1/sessions/{session_id}/prices"): test_market_data_is_public_to_market_readers,
    ("GET", "/v1/dispatch"): test_one_partys_rows,
    (
        "POST",
        "/v1/sessions/{session_id}/clear",
    ): test_admin_only_writes_are_refused_to_everyone_else,
    ("POST", "/v1/sessions/{session_id}/bids"): test_bids_for_others_are_refused_and_write_nothing,
    ("POST", "/v1/sessions/{session_id}/bids/batch"): (
        test_bids_for_others_are_refused_and_write_nothing
    ),
    ("GET", "/v1/sessions/{session_id}/bids"): test_bids_and_awards_are_filtered_rows,
    ("GET", "/v1/bids/{bid_id}"): test_one_partys_rows,
    ("GET", "/v1/journal/head"): test_journal_is_public_to_journal_readers,
    ("GET", "/v1/journal/records/{record_id}"): test_one_partys_rows,
    ("GET", "/v1/journal/consistency"): test_journal_is_public_to_journal_readers,
    ("GET", "/v1/areas"): test_areas_and_settlement,
    ("GET", "/v1/areas/{area}"): test_areas_and_settlement,
    ("POST", "/v1/resources"): test_resources_and_meter_readings,
    ("GET", "/v1/resources"): test_resources_and_meter_readings,
    ("GET", "/v1/resources/{resource_id}"): test_resources_and_meter_readings,
    ("POST", "/v1/meter-readings"): test_resources_and_meter_readings,
    ("GET", "/v1/meter-readings"): test_resources_and_meter_readings,
    ("POST", "/v1/settlement-runs"): test_areas_and_settlement,
    ("GET", "/v1/settlement-runs"): test_areas_and_settlement,
    ("GET", "/v1/settlement-runs/{run_id}"): test_areas_and_settlement,
    ("GET", "/v1/settlement-runs/{run_id}/lines"): test_areas_and_settlement,
    ("GET", "/v1/invoices"): test_areas_and_settlement,
    ("GET", "/v1/invoices/{invoice_id}"): test_areas_and_settlement,
}


def test_every_classified_route_is_probed() -> None:
    """Each non-public MATRIX route names the test above that proves its tenancy."""
    private = {k for k, kind in MATRIX.items() if kind != "public"}
    assert set(PROBED) == private, sorted(private ^ set(PROBED))
