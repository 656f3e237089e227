"""Gate-closure clearing: the service's results equal the engine clearing the same bids
directly (auction price and awards, network DLMPs), money balances, re-runs give the same
result hash, an interrupted clearing leaves nothing behind, the scheduler clears sessions
on an accelerated clock; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from conftest import Api, make_api
from transactive.core.curves import Curves, concat
from transactive.errors import BalanceError
from transactive.market.auction import book_from_blocks, book_from_curves, clear
from transactive.market.network import clear_network
from transactive.service import book, clearing, journal, scheduler
from transactive.service.config import ServiceConfig
from transactive.service.models import Award, Bid, BusPrice, Job, JournalLeaf, MarketSession
from transactive.service.sessions import ensure_sessions, session_id

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # the service clock's start
PAST = NOW - timedelta(hours=1)  # sessions opened at PAST: gates 11:10 … 12:55


@pytest.fixture
def config(db_url: str) -> ServiceConfig:
    return ServiceConfig(
        db_url=db_url,
        scheduler=False,
        clock_start=NOW,
        stages=("real-time", "day-ahead"),
        substation_kw=0.0,
    )


def open_sessions(api: Api, stage: str) -> list[MarketSession]:
    svc = api.services
    cfg = svc.config
    with svc.db.sessions() as s:
        ensure_sessions(
            s, svc.market, cfg, PAST - timedelta(days=1) if stage == "day-ahead" else PAST
        )
        s.commit()
        return list(
            s.scalars(
                select(MarketSession)
                .where(MarketSession.stage == stage, MarketSession.gate_closure <= NOW)
                .order_by(MarketSession.interval_start)
            )
        )


def parties(api: Api, n: int) -> list[str]:
    ids = [f"p{i}" for i in range(n)]
    for p in ids:
        api.party(p, "participant", area=next(iter(api.services.market.areas)))
    return ids


def insert_bids(api: Api, sid: str, rows: list[dict[str, Any]]) -> None:
    """Bids straight into the bids table (as intake stores them), in list order."""
    full = []
    for i, r in enumerate(rows):
        full.append(
            {
                "id": f"{sid}:{r['party_id']}:b{i}",
                "session_id": sid,
                "bid_id": f"b{i}",
                "resource_id": None,
                "side": None,
                "price": None,
                "quantity_kw": None,
                "curve": None,
                "bus": None,
                "price_taking": False,
                "created_at": NOW,
                "journal_index": None,
            }
            | r
        )
    with api.services.db.sessions() as s:
        s.execute(insert(Bid), full)
        s.commit()


def random_blocks(rng: np.random.Generator, who: list[str], n: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(n):
        side = "buy" if rng.random() < 0.5 else "sell"
        price = None if rng.random() < 0.1 else round(float(rng.uniform(0.05, 0.45)), 2)
        rows.append(
            {
                "party_id": str(rng.choice(who)),
                "side": side,
                "price": price,
                "quantity_kw": round(float(rng.uniform(0.5, 8.0)), 3),
                "price_taking": price is None,
            }
        )
    return rows


def test_auction_session_equals_the_engine_on_the_same_bids(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "day-ahead")[0]
    assert m.clearing == "auction"
    who = parties(api, 5)
    rng = np.random.default_rng(1)
    rows = random_blocks(rng, who, 60)
    points = [[0.10, 5.0], [0.30, 1.0], [0.30, -2.0], [0.40, -4.0]]  # a battery's curve
    rows.append({"party_id": who[0], "curve": {"points": points}})
    insert_bids(api, m.id, rows)
    with svc.db.sessions() as s:
        out = clearing.clear_session(s, svc, m.id)
    assert out.status == "cleared" and out.n_bids == 61

    # The engine directly: blocks (price-taking at cap / floor) plus the curve.
    blocks = rows[:-1]
    side = np.array([r["side"] for r in blocks])
    price = np.array([np.nan if r["price"] is None else r["price"] for r in blocks])
    price = np.where(np.isnan(price), np.where(side == "buy", m.cap, m.floor), price)
    qty = np.array([r["quantity_kw"] for r in blocks])
    ref_blocks = book_from_blocks(np.arange(60), side, price, qty)
    p, q = np.array(points).T
    curves = concat([ref_blocks.curves, Curves(p, q, np.array([0, 4]))])
    ref = clear(book_from_curves(np.arange(61), curves), m.floor, m.cap)
    assert out.price == pytest.approx(float(ref.price[0]), abs=0, rel=1e-15)
    assert out.quantity_kw == pytest.approx(float(ref.quantity[0]), rel=1e-12)
    assert out.result_status == str(ref.status[0])
    with svc.db.sessions() as s:
        of_m = Award.bid_seq.in_(select(Bid.seq).where(Bid.session_id == m.id))
        awards = s.scalars(select(Award).where(of_m).order_by(Award.bid_seq))
        got = np.array([a.award_kw for a in awards])
        amounts = s.scalars(select(func.sum(Award.amount)).where(of_m)).one()
    np.testing.assert_allclose(got, ref.awards, rtol=1e-12, atol=1e-12)
    assert abs(amounts) < 1e-9  # pay-as-clear: buyers pay what sellers receive
    assert out.merchandising_surplus == 0.0 and out.substation_import_kw == 0.0


def test_one_sided_auction_clears_against_the_substation(db_url: str) -> None:
    cfg = ServiceConfig(db_url=db_url, scheduler=False, clock_start=NOW, stages=("day-ahead",))
    for api in make_api(cfg):
        svc = api.services
        m = open_sessions(api, "day-ahead")[0]
        who = parties(api, 2)
        insert_bids(
            api,
            m.id,
            [
                {"party_id": who[0], "side": "buy", "price": 0.40, "quantity_kw": 10.0},
                {"party_id": who[1], "side": "buy", "price": 0.20, "quantity_kw": 5.0},
                {"party_id": who[1], "side": "buy", "price": None, "quantity_kw": 2.0,
                 "price_taking": True},
            ],
        )  # fmt: skip
        with svc.db.sessions() as s:
            out = clearing.clear_session(s, svc, m.id)
            got = [a.award_kw for a in s.scalars(select(Award).order_by(Award.bid_seq))]
            paid = s.scalars(select(func.sum(Award.amount))).one()
        assert out.price == pytest.approx(svc.config.substation_price)
        assert got == pytest.approx([10.0, 0.0, 2.0])  # the 0.20 bid is out of the money
        assert out.substation_import_kw == pytest.approx(12.0)
        hours = m.duration_s / 3600
        assert paid == pytest.approx(out.price * 12.0 * hours)  # = what the substation gets


def network_rows(
    api: Api, who: list[str], rng: np.random.Generator, n: int
) -> list[dict[str, Any]]:
    buses = sorted(next(iter(api.services.market.areas.values())).buses)
    rows = random_blocks(rng, who, n)
    for r in rows:
        r["bus"] = str(rng.choice(buses[1:]))
    # Equal blocks at one bus: aggregated before the LP, shared pro rata after it.
    rows += [
        {"party_id": who[0], "side": "buy", "price": 0.35, "quantity_kw": 3.0, "bus": buses[5]},
        {"party_id": who[1], "side": "buy", "price": 0.35, "quantity_kw": 1.0, "bus": buses[5]},
    ]
    return rows


def test_network_session_dlmps_equal_the_engine(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    assert m.clearing == "network"
    who = parties(api, 4)
    rows = network_rows(api, who, np.random.default_rng(2), 80)
    insert_bids(api, m.id, rows)
    with svc.db.sessions() as s:
        out = clearing.clear_session(s, svc, m.id)
        bus_prices = {
            b.bus: b for b in s.scalars(select(BusPrice).where(BusPrice.session_id == m.id))
        }
        awards = np.array([a.award_kw for a in s.scalars(select(Award).order_by(Award.bid_seq))])
        amounts = np.array([a.amount for a in s.scalars(select(Award).order_by(Award.bid_seq))])
    assert out.status == "cleared" and out.result_status in ("optimal", "shed")

    # The engine directly, one bid per row (no aggregation).
    area = next(iter(svc.market.areas.values()))
    feeder = area.feeder
    side = np.array([r["side"] for r in rows])
    pt = np.array([r["price"] is None for r in rows])
    price = np.array([np.nan if r["price"] is None else r["price"] for r in rows])
    price = np.where(pt, np.where(side == "buy", m.cap, m.floor), price)
    qty = np.array([r["quantity_kw"] for r in rows])
    bus = np.array([feeder.bus_names.index(r["bus"]) for r in rows])
    sc = svc.market.scenario
    ref = clear_network(
        feeder,
        book_from_blocks(np.arange(len(rows)), side, price, qty),
        bus,
        svc.config.substation_price,
        limits=sc.limits,
        loss_iterations=sc.dso.loss_iterations,
        price_taking=pt,
        interval_hours=0.25,
    )
    live = np.flatnonzero(~np.isnan(ref.dlmp[0]))
    assert set(bus_prices) == {feeder.bus_names[i] for i in live}
    for i in live:
        expect = float(np.clip(ref.dlmp[0, i], m.floor, m.cap))
        assert bus_prices[feeder.bus_names[i]].price == pytest.approx(expect, abs=1e-9)
    # Per-bus awarded load equals the engine's, and equal blocks share pro rata.
    ref_bus = np.bincount(bus, weights=ref.awards, minlength=len(feeder.bus_names))
    got_bus = np.bincount(bus, weights=awards, minlength=len(feeder.bus_names))
    np.testing.assert_allclose(got_bus, ref_bus, atol=1e-6)
    assert awards[-2] == pytest.approx(3 * awards[-1], abs=1e-9)
    assert out.substation_import_kw == pytest.approx(float(ref.substation_import_kw[0]), abs=1e-6)
    # Money: bids pay their DLMP; the substation is paid for the import; the DSO keeps the rest.
    lam = svc.config.substation_price
    total = amounts.sum() - lam * out.substation_import_kw * 0.25 - out.merchandising_surplus
    assert abs(total) < 1e-9


def test_reclear_and_interrupted_clearing_give_the_same_result_hash(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    who = parties(api, 3)
    insert_bids(api, m.id, network_rows(api, who, np.random.default_rng(3), 40))

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("power cut")

    with monkeypatch.context() as mp:  # dies after writing awards and journal, before commit
        mp.setattr(journal, "sign_head", crash)
        with svc.db.sessions() as s, pytest.raises(RuntimeError):
            clearing.clear_session(s, svc, m.id)
    with svc.db.sessions() as s:
        assert s.get(MarketSession, m.id).status == "closed"  # type: ignore[union-attr]
        pending = s.scalars(select(Job.status).where(Job.key == m.id)).one()
        assert pending == "pending"  # the scheduler would resume it
        assert s.scalar(select(func.count()).select_from(Award)) == 0
        assert s.scalar(select(func.count()).select_from(JournalLeaf)) == 0

    with svc.db.sessions() as s:
        first = clearing.clear_session(s, svc, m.id)
    with svc.db.sessions() as s:
        again = clearing.clear_session(s, svc, m.id)  # idempotent: the stored result
        n_awards = s.scalar(select(func.count()).select_from(Award))
        leaf = s.scalars(
            select(JournalLeaf).where(JournalLeaf.record_id == f"session:{m.id}")
        ).one()
        job = s.scalars(select(Job).where(Job.key == m.id)).one()
        awards = s.execute(
            select(Bid.id, Bid.party_id, Award.award_kw, Award.amount)
            .join(Bid, Bid.seq == Award.bid_seq)
            .order_by(Award.bid_seq)
        ).all()
        per_party = s.scalars(select(JournalLeaf).where(JournalLeaf.kind == "awards")).all()
    assert first.result_hash == again.result_hash == hashlib.sha256(leaf.body).hexdigest()
    assert n_awards == 42 and job.status == "done" and job.result_hash == first.result_hash
    # One journal record per party holds exactly its awards, as stored.
    assert sorted(r.record_id for r in per_party) == [f"awards:{m.id}:{p}" for p in sorted(who)]
    journaled = {
        (f"{m.id}:{d['party_id']}:{b}", d["party_id"], k, a)
        for d in (json.loads(r.body) for r in per_party)
        for b, k, a in zip(d["bid"], d["award_kw"], d["amount"], strict=True)
    }
    assert journaled == {tuple(r) for r in awards}
    in_order = sorted(per_party, key=lambda r: r.party_id or "")
    digest = hashlib.sha256(b"".join(hashlib.sha256(r.body).digest() for r in in_order))
    assert json.loads(leaf.body)["awards_sha256"] == digest.hexdigest()
    # Recomputing from the stored bids gives the identical record, bit for bit.
    with svc.db.sessions() as s:
        session = s.get(MarketSession, m.id)
        assert session is not None
        bids = book.read_bids(s, session)
    assert clearing.result_hash(svc, session, bids) == first.result_hash


def test_empty_book_clears_with_no_bids(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    with svc.db.sessions() as s:
        out = clearing.clear_session(s, svc, m.id)
        rec = s.scalars(select(JournalLeaf.record_id)).all()
    assert (out.status, out.result_status, out.n_bids, out.price) == ("cleared", "no-bids", 0, None)
    assert rec == [f"session:{m.id}"]


def test_results_api_tenancy_prices_dispatch_and_admin_clear(api: Api) -> None:
    svc = api.services
    m = open_sessions(api, "real-time")[0]
    area = next(iter(svc.market.areas))
    alice = api.party("alice", "participant", area=area)
    api.party("bob", "participant", area=area)
    tso = api.party("tso", "tso")
    admin = api.party("admin", "admin")
    dso = api.party("dso", "dso", area=area)
    bus = sorted(svc.market.areas[area].buses)[3]
    insert_bids(
        api,
        m.id,
        [
            {"party_id": "alice", "side": "buy", "price": 0.4, "quantity_kw": 2.0, "bus": bus},
            {"party_id": "bob", "side": "sell", "price": 0.1, "quantity_kw": 1.0, "bus": bus},
        ],
    )
    early = session_id(area, "real-time", NOW + timedelta(minutes=45))
    assert api.post(f"/v1/sessions/{early}/clear", admin).status_code == 409  # gate still open
    assert api.post(f"/v1/sessions/{m.id}/clear", alice).status_code == 403
    assert api.post("/v1/sessions/x:real-time:20260701T1200Z/clear", admin).status_code == 404
    r = api.post(f"/v1/sessions/{m.id}/clear", admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cleared" and r.json()["n_bids"] == 2
    again = api.post(f"/v1/sessions/{m.id}/clear", admin).json()
    assert again["result_hash"] == r.json()["result_hash"]

    mine = api.get(f"/v1/sessions/{m.id}/awards", alice).json()
    assert [a["party_id"] for a in mine] == ["alice"]
    assert mine[0]["bid_id"] == f"{m.id}:alice:b0" and mine[0]["award_kw"] == pytest.approx(2.0)
    assert [a["party_id"] for a in api.get(f"/v1/sessions/{m.id}/awards", dso).json()] == [
        "alice",
        "bob",
    ]
    assert api.get(f"/v1/sessions/{m.id}/awards", tso).json() == []
    assert len(api.get(f"/v1/sessions/{m.id}/awards", admin, params={"limit": 1}).json()) == 1

    t = api.get(f"/v1/sessions/{m.id}/prices", tso).json()
    assert t["buses"] is None and t["substation_import_kw"] == pytest.approx(
        r.json()["substation_import_kw"]
    )
    p = api.get(f"/v1/sessions/{m.id}/prices", alice).json()
    assert bus in {b["bus"] for b in p["buses"]}

    d = api.get("/v1/dispatch", alice).json()
    assert [(x["session_id"], x["award_kw"]) for x in d] == [(m.id, pytest.approx(2.0))]
    assert api.get("/v1/dispatch", alice, params={"party_id": "bob"}).status_code == 404
    assert api.get("/v1/dispatch", dso, params={"party_id": "bob"}).json()[0]["award_kw"] == (
        pytest.approx(-1.0)
    )
    late = api.get("/v1/dispatch", alice, params={"start": "2026-07-02T00:00:00Z"}).json()
    assert late == []
    assert api.get("/v1/dispatch", alice, params={"start": "yesterday"}).status_code == 422


def test_scheduler_fails_a_bad_session_and_resumes_interrupted_jobs(api: Api) -> None:
    svc = api.services
    sessions = open_sessions(api, "real-time")
    who = parties(api, 1)
    insert_bids(api, sessions[0].id, [{"party_id": who[0], "side": "buy", "price": 0.2,
                                       "quantity_kw": 1.0, "bus": "no-such-bus"}])  # fmt: skip
    with svc.db.sessions() as s:  # a crash left the second one running
        s.add(Job(kind="clear", key=sessions[1].id, status="running", attempts=1, due_at=PAST))
        s.commit()
    for _ in range(scheduler.MAX_ATTEMPTS):
        scheduler.tick(svc)
    with svc.db.sessions() as s:
        bad = s.get(MarketSession, sessions[0].id)
        resumed = s.get(MarketSession, sessions[1].id)
        job = s.scalars(select(Job).where(Job.key == sessions[0].id)).one()
        assert bad is not None and resumed is not None
        assert bad.status == "failed" and job.status == "failed"
        assert job.attempts == scheduler.MAX_ATTEMPTS and "no-such-bus" in (job.error or "")
        assert resumed.status == "cleared" and resumed.result_status == "no-bids"


@pytest.fixture
def live(db_url: str) -> Iterator[Api]:
    # 30 market seconds per wall second: a 15-minute interval every 30 s of wall time.
    cfg = ServiceConfig(
        db_url=db_url,
        scheduler=True,
        clock_start=datetime(2026, 7, 1, 12, 8, tzinfo=UTC),
        clock_speed=30.0,
        sessions_ahead=2,
    )
    yield from make_api(cfg)


def test_scheduler_clears_sessions_on_an_accelerated_clock(live: Api) -> None:
    svc = live.services
    area = next(iter(svc.market.areas))
    p0 = live.party("p0", "participant", area=area)
    with svc.db.sessions() as s:  # the scheduler may have opened them already: idempotent
        ensure_sessions(s, svc.market, svc.config, svc.now())
        s.commit()
        # The first session whose gate is ≥ 3 market minutes (6 s wall) away: the test does
        # not depend on how fast a loaded machine signs in.
        first = s.scalars(
            select(MarketSession.id)
            .where(MarketSession.area == area, MarketSession.stage == "real-time")
            .where(MarketSession.gate_closure > svc.now() + timedelta(minutes=3))
            .order_by(MarketSession.gate_closure)
        ).first()
    assert first is not None
    bus = sorted(svc.market.areas[area].buses)[2]
    r = live.post(
        f"/v1/sessions/{first}/bids",
        p0,
        json={"bid_id": "ev", "side": "buy", "price": 0.5, "quantity_kw": 4.0, "bus": bus},
    )
    assert r.status_code == 201, r.text
    r = live.post(
        f"/v1/sessions/{first}/bids/batch",
        p0,
        json={"bids": [{"bid_id": "pv", "side": "sell", "price": 0.01, "quantity_kw": 1.5,
                        "bus": bus}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 90
    status = "open"
    while time.monotonic() < deadline:
        with svc.db.sessions() as s:
            m = s.get(MarketSession, first)
            status = m.status if m is not None else "missing"
            if status in ("cleared", "failed"):
                break
        time.sleep(0.1)
    assert status == "cleared"
    with svc.db.sessions() as s:
        m = s.get(MarketSession, first)
        assert m is not None and m.n_bids == 2 and m.cleared_at is not None
        assert m.cleared_at >= m.gate_closure
        kw = s.scalars(
            select(Award.award_kw)
            .join(Bid, Bid.seq == Award.bid_seq)
            .where(Bid.session_id == first)
            .order_by(Award.bid_seq)
        ).all()
        assert kw == pytest.approx([4.0, -1.5])
        assert s.scalar(select(func.count()).select_from(JournalLeaf)) >= 2
        # The sessions ahead keep being opened as the clock runs.
        assert s.scalar(select(func.count()).select_from(MarketSession)) >= 3
    late = live.post(
        f"/v1/sessions/{first}/bids",
        p0,
        json={"bid_id": "late", "side": "buy", "price": 0.5, "quantity_kw": 1.0, "bus": bus},
    )
    assert late.status_code == 409
    mine = live.get(f"/v1/sessions/{first}/awards", p0).json()
    assert [a["bid_id"] for a in mine] == [f"{first}:p0:ev", f"{first}:p0:pv"]


def test_party_records_hold_each_award_once_in_its_partys_canonical_record() -> None:
    bid = ["b1", 'odd "id" ü', "x", "y"]
    party = np.array(["p1", "ß", "p1", "a"])
    kw, price = np.array([1.5, -0.0, 1e-300, -2.0]), np.array([0.1, 3.0, -0.5, 0.2])
    amount = kw * price * 0.25
    got = clearing.party_records("s:1", bid, party, kw, price, amount)
    assert [p for p, _ in got] == ["a", "p1", "ß"]  # party order
    docs = {p: json.loads(b) for p, b in got}
    assert all(journal.canonical(docs[p]) == b for p, b in got)  # canonical JSON
    assert docs["p1"] == {
        "session_id": "s:1", "party_id": "p1", "bid": ["b1", "x"],
        "award_kw": [1.5, 1e-300], "price": [0.1, -0.5], "amount": [amount[0], amount[2]],
    }  # fmt: skip
    seen = sorted(b for d in docs.values() for b in d["bid"])
    assert seen == sorted(bid)
    with pytest.raises(BalanceError, match="non-finite"):
        clearing.party_records("s:1", bid, party, kw, price, amount * np.nan)


def test_auction_with_a_saturated_substation_pays_it_the_clearing_price(db_url: str) -> None:
    cfg = ServiceConfig(
        db_url=db_url, scheduler=False, clock_start=NOW, stages=("day-ahead",), substation_kw=5.0
    )
    for api in make_api(cfg):
        svc = api.services
        m = open_sessions(api, "day-ahead")[0]
        who = parties(api, 2)
        insert_bids(
            api,
            m.id,
            [
                {"party_id": who[0], "side": "sell", "price": 0.05, "quantity_kw": 20.0},
                {"party_id": who[1], "side": "buy", "price": 0.40, "quantity_kw": 2.0},
            ],
        )
        with svc.db.sessions() as s:
            out = clearing.clear_session(s, svc, m.id)
            paid = s.scalars(select(func.sum(Award.amount))).one()
        # Supply 20 kW at 0.05 meets 2 kW of demand and 5 kW of substation export: the price
        # is the seller's, below the substation's 0.30, and the substation pays that price.
        assert out.price == pytest.approx(0.05)
        assert out.substation_import_kw == pytest.approx(-5.0)
        assert paid == pytest.approx(-0.05 * 5.0 * m.duration_s / 3600)
        assert out.merchandising_surplus == 0.0


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.booleans(),
            st.sampled_from([-1.0, 1.0]),
            st.sampled_from([0.1, 0.2, -0.5, 3.0]),
        ),
        max_size=60,
    )
)
def test_unique_rows_equals_numpy_unique(rows: list[tuple[int, bool, float, float]]) -> None:
    key = np.array(rows, dtype=np.float64).reshape(-1, 4)
    got, inv = clearing._unique_rows(key)
    if key.shape[0] == 0:
        assert got.shape == (0, 4) and inv.size == 0
        return
    want, want_inv = np.unique(key, axis=0, return_inverse=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(inv, want_inv.ravel())
