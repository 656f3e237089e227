"""Settlement runs: energy and imbalance lines balance to the cent against the DSO,
invoices sum to 0.00, amounts match a direct numpy computation, runs are idempotent,
reads follow tenancy; on SQLite and PostgreSQL. Sessions and awards are inserted
directly (the clearing is tested in test_clearing.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Api
from transactive.service.app import build_services
from transactive.service.config import ServiceConfig
from transactive.service.deps import Services
from transactive.service.identity import create_party
from transactive.service.models import (
    Award,
    Bid,
    Invoice,
    MarketSession,
    MeterReading,
    Party,
    Resource,
    SettlementLine,
)
from transactive.service.settling import largest_remainder_cents, settle_period

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
Z = "%Y-%m-%dT%H:%M:%SZ"
Q = timedelta(minutes=15)


def add_session(
    s: Session,
    area: str,
    t: datetime,
    price: float,
    stage: str = "real-time",
    status: str = "cleared",
) -> str:
    sid = f"{area}:{stage}:{t:%Y%m%dT%H%MZ}"
    s.add(
        MarketSession(
            id=sid,
            area=area,
            stage=stage,
            interval_start=t,
            duration_s=900,
            gate_closure=t - timedelta(minutes=5),
            status=status,
            clearing="auction",
            floor=-1.0,
            cap=3.0,
            price=price if status == "cleared" else None,
            quantity_kw=None,
            result_status="ok" if status == "cleared" else None,
            n_bids=0,
            created_at=t - timedelta(days=1),
            cleared_at=t if status == "cleared" else None,
        )
    )
    s.flush()
    return sid


_bids = itertools.count()


def add_award(s: Session, sid: str, party: str, kw: float, price: float) -> None:
    k = next(_bids)
    b = Bid(
        id=f"{sid}:{party}:b{k}",
        session_id=sid,
        party_id=party,
        bid_id=f"b{k}",
        side="buy" if kw >= 0 else "sell",
        price=price,
        quantity_kw=abs(kw),
        price_taking=False,
        created_at=T0 - timedelta(days=1),
    )
    s.add(b)
    s.flush()
    s.add(
        Award(
            bid_seq=b.seq,
            award_kw=kw,
            price=price,
            amount=kw * 0.25 * price,
        )
    )


def add_meter(s: Session, rid: str, party: str, area: str, bus: str) -> None:
    s.add(
        Resource(id=rid, party_id=party, kind="meter", name=rid, area=area, bus=bus, created_at=T0)
    )
    s.flush()


def add_reading(s: Session, rid: str, party: str, t: datetime, imp: int, exp: int) -> None:
    s.add(
        MeterReading(
            resource_id=rid,
            interval_start=t,
            duration_s=900,
            party_id=party,
            import_wh=imp,
            export_wh=exp,
            trust="unsigned",
            received_at=t + Q,
        )
    )


def test_largest_remainder_rounds_to_a_zero_sum() -> None:
    totals = np.array([1 / 3, 1 / 3, 1 / 3, -1.0])
    cents = largest_remainder_cents(totals, ["a", "b", "c", "d"])
    assert cents.tolist() == [34, 33, 33, -100]  # ties to the first name
    assert largest_remainder_cents(np.array([0.125, -0.125]), ["x", "y"]).tolist() == [13, -13]


def _area(svc: Services) -> tuple[str, list[str]]:
    name = sorted(svc.market.areas)[0]
    return name, svc.market.areas[name].feeder.bus_names


def test_settlement_api_amounts_idempotency_and_tenancy(api: Api) -> None:
    svc = api.services
    area, buses = _area(svc)
    dso = api.party("dso1", "dso", area=area)
    p1 = api.party("p1", "participant", area=area)
    p2 = api.party("p2", "participant", area=area)
    agg = api.party("agg", "aggregator", area=area)
    api.party("h1", "participant", area=area, aggregator_id="agg")
    other_dso = api.party("dso2", "dso", area="elsewhere")
    admin = api.party("admin", "admin")
    for who, rid in ((p1, "m1"), (p2, "m2")):
        body = {"id": rid, "kind": "meter", "area": area, "bus": buses[1]}
        assert api.post("/v1/resources", who, json=body).status_code == 201
    with svc.db.sessions() as s:
        sid = add_session(s, area, T0, 0.30)
        add_award(s, sid, "p1", 10.0, 0.30)  # buys 2.5 kWh: pays 0.75
        add_award(s, sid, "p2", -8.0, 0.30)  # sells 2 kWh: is paid 0.60
        add_award(s, sid, "h1", 1.0, 0.30)  # no meter reading: energy only (0.075)
        add_session(s, area, T0 + 4 * Q, 0.1, status="closed")
        s.commit()
    readings = [
        {
            "resource_id": "m1",
            "interval_start": T0.strftime(Z),
            "duration_s": 900,
            "import_wh": 3000,
            "export_wh": 0,
        },
        {
            "resource_id": "m2",
            "interval_start": T0.strftime(Z),
            "duration_s": 900,
            "import_wh": 0,
            "export_wh": 1500,
        },
    ]
    assert api.post("/v1/meter-readings", p1, json={"readings": readings[:1]}).status_code == 201
    assert api.post("/v1/meter-readings", p2, json={"readings": readings[1:]}).status_code == 201
    period = {"area": area, "period_start": T0.strftime(Z), "period_end": (T0 + 4 * Q).strftime(Z)}
    assert api.post("/v1/settlement-runs", p1, json=period).status_code == 403
    assert api.post("/v1/settlement-runs", other_dso, json=period).status_code == 403
    r = api.post("/v1/settlement-runs", dso, json=period)
    assert r.status_code == 201, r.text
    run = r.json()
    again = api.post("/v1/settlement-runs", dso, json=period)
    assert again.status_code == 200 and again.json() == run
    assert (
        api.post(
            "/v1/settlement-runs", dso, json={**period, "period_end": (T0 + 2 * Q).strftime(Z)}
        ).status_code
        == 409
    )
    pending = {
        **period,
        "period_start": (T0 + 4 * Q).strftime(Z),
        "period_end": (T0 + 8 * Q).strftime(Z),
    }
    assert (
        api.post("/v1/settlement-runs", dso, json=pending).status_code == 409
    )  # a session is not cleared
    future = api.services.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    late = {**period, "period_start": future.strftime(Z), "period_end": (future + Q).strftime(Z)}
    assert api.post("/v1/settlement-runs", dso, json=late).status_code == 409
    skew = {**period, "period_start": (T0 + timedelta(minutes=5)).strftime(Z)}
    bad = api.post("/v1/settlement-runs", admin, json={**skew, "area": "nowhere"})
    assert bad.status_code == 422
    assert {e["loc"][1] for e in bad.json()["errors"]} == {"area", "period_start"}
    # amounts: energy + imbalance at the real-time price; the DSO is the counterparty
    inv = {
        x["party_id"]: x for x in api.get("/v1/invoices", dso, params={"run_id": run["id"]}).json()
    }
    assert set(inv) == {"p1", "p2", "h1", "dso1"}
    assert inv["p1"]["document"]["subtotal"] == pytest.approx(0.75 + 0.5 * 0.30)
    assert inv["p2"]["document"]["subtotal"] == pytest.approx(-0.60 + 0.5 * 0.30)
    assert inv["h1"]["document"]["subtotal"] == pytest.approx(0.075)
    cents = [x["document"]["total_cents"] for x in inv.values()]
    assert sum(cents) == 0 and inv["p1"]["total"] == 0.90 and inv["p2"]["total"] == -0.45
    assert inv["h1"]["total"] + inv["dso1"]["total"] == pytest.approx(-0.45)
    lines = api.get(f"/v1/settlement-runs/{run['id']}/lines", dso, params={"limit": 1000}).json()
    assert abs(sum(x["amount"] for x in lines)) < 1e-9
    kinds = {(x["party_id"], x["kind"]) for x in lines}
    assert ("p1", "imbalance") in kinds and ("dso1", "energy_counterparty") in kinds
    assert ("h1", "imbalance") not in kinds
    # tenancy: own invoice and lines; the aggregator its portfolio; the DSO its area
    mine = api.get("/v1/invoices", p1).json()
    assert [x["party_id"] for x in mine] == ["p1"]
    assert {
        x["party_id"] for x in api.get(f"/v1/settlement-runs/{run['id']}/lines", p1).json()
    } == {"p1"}
    assert api.get(f"/v1/invoices/{inv['p2']['id']}", p1).status_code == 404
    assert api.get(f"/v1/invoices/{inv['p1']['id']}", p1).json()["total"] == 0.90
    assert [x["party_id"] for x in api.get("/v1/invoices", agg).json()] == ["h1"]
    assert api.get("/v1/invoices", other_dso).json() == []
    assert api.get(f"/v1/settlement-runs/{run['id']}", other_dso).status_code == 404
    assert [x["id"] for x in api.get("/v1/settlement-runs", p1).json()] == [run["id"]]
    assert len(api.get("/v1/invoices", admin).json()) == 4
    assert (
        api.get("/v1/invoices", dso, params={"limit": 2, "offset": 3}).json()[0]["party_id"] == "p2"
    )
    # the journal: the invoice record is the party's, the run record the admin's
    rec = api.get(f"/v1/journal/records/invoice:{inv['p1']['id']}", p1)
    assert rec.status_code == 200 and rec.json()["body"]["total_cents"] == 90
    body = api.get(f"/v1/journal/records/settlement:{run['id']}", admin).json()["body"]
    assert len(body["lines"]) == len(lines) and sum(body["invoices"].values()) == 0


@pytest.fixture
def svc(db_url: str) -> Iterator[Services]:
    """One Services for the whole test (hypothesis runs its body several times)."""
    services = build_services(ServiceConfig(db_url=db_url, scheduler=False))
    yield services
    services.db.dispose()


_day = itertools.count()

award_st = st.tuples(
    st.integers(0, 3),
    st.integers(0, 2),
    st.floats(-60, 60, allow_nan=False).map(lambda x: round(x, 3)),
)
read_st = st.tuples(
    st.integers(0, 3), st.integers(0, 2), st.integers(0, 40_000), st.integers(0, 40_000)
)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prices=st.lists(st.floats(-0.2, 0.6, allow_nan=False), min_size=3, max_size=3),
    da_price=st.floats(0.0, 0.5, allow_nan=False),
    awards=st.lists(award_st, max_size=12),
    da_awards=st.lists(
        st.tuples(st.integers(0, 3), st.floats(-30, 30, allow_nan=False)), max_size=4
    ),
    reads=st.lists(read_st, max_size=12),
)
def test_random_runs_balance_to_the_cent_and_match_numpy(
    svc: Services,
    prices: list[float],
    da_price: float,
    awards: list[tuple[int, int, float]],
    da_awards: list[tuple[int, float]],
    reads: list[tuple[int, int, int, int]],
) -> None:
    area, buses = _area(svc)
    d = next(_day)
    start = T0 + timedelta(days=d)
    ts = [start + k * Q for k in range(3)]
    parties = [f"x{d}p{i}" for i in range(4)]
    with svc.db.sessions() as s:
        if s.get(Party, "dso") is None:
            create_party(
                s, party_id="dso", name="dso", role="dso", area=area, aggregator_id=None, now=T0
            )
        for i, p in enumerate(parties):
            create_party(
                s, party_id=p, name=p, role="participant", area=area, aggregator_id=None, now=T0
            )
            s.flush()
            add_meter(s, f"{p}-m", p, area, buses[i + 1])
        sids = [add_session(s, area, t, pr) for t, pr in zip(ts, prices, strict=True)]
        da = add_session(s, area, ts[0], da_price, stage="day-ahead")
        for i, k, kw in awards:
            add_award(s, sids[k], parties[i], kw, prices[k])
        for i, kw in da_awards:
            add_award(s, da, parties[i], kw, da_price)
        stored = {(i, k): (imp, exp) for i, k, imp, exp in reads}
        for (i, k), (imp, exp) in stored.items():
            add_reading(s, f"{parties[i]}-m", parties[i], ts[k], imp, exp)
        s.commit()
        run, new = settle_period(s, svc, area, start, start + 3 * Q)
        assert new
        # the direct computation: energy at the award price, imbalance at the real-time price
        want = np.zeros(4)
        awarded = np.zeros((4, 3))
        for i, k, kw in awards:
            want[i] += kw * 0.25 * prices[k]
            awarded[i, k] += kw * 0.25
        for i, kw in da_awards:
            want[i] += kw * 0.25 * da_price
            awarded[i, 0] += kw * 0.25
        for (i, k), (imp, exp) in stored.items():
            want[i] += ((imp - exp) / 1000 - awarded[i, k]) * prices[k]
        invoices = {
            x.party_id: x for x in s.scalars(select(Invoice).where(Invoice.run_id == run.id))
        }
        cents = {p: int(x.document["total_cents"]) for p, x in invoices.items()}
        assert sum(cents.values()) == 0
        total = float(
            s.scalar(select(func.sum(SettlementLine.amount)).where(SettlementLine.run_id == run.id))
            or 0.0
        )
        assert abs(total) < 0.005
        for i, p in enumerate(parties):
            if p in invoices:
                doc: dict[str, Any] = invoices[p].document
                assert doc["subtotal"] == pytest.approx(want[i], abs=1e-9)
                assert abs(cents[p] / 100 - want[i]) < 0.01
            else:
                assert want[i] == 0
        if invoices:
            assert invoices["dso"].document["subtotal"] == pytest.approx(-want.sum(), abs=1e-9)
        n = s.scalar(
            select(func.count()).select_from(SettlementLine).where(SettlementLine.run_id == run.id)
        )
        again, new = settle_period(s, svc, area, start, start + 3 * Q)
        assert not new and again.id == run.id
        assert (
            s.scalar(
                select(func.count())
                .select_from(SettlementLine)
                .where(SettlementLine.run_id == run.id)
            )
            == n
        )
