"""The aggregator's offers from its batteries: every offer is physically deliverable by the
real battery model (power and state-of-charge limits, the rebound restores the energy), the
offer rows are the sum of the batteries' activation, the truthful price equals the marginal
cost measured by running the batteries, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.records import FLEX_ASKS, FLEX_OFFERS
from transactive.der.base import make_context
from transactive.der.fleet import Fleet, make_fleet
from transactive.errors import InvalidInputError
from transactive.market.flex_offers import Portfolio, battery_offers

T = 24
DT = 1.0
STARTS = pd.date_range("2018-02-26T00:00Z", periods=T, freq="h")


def fleet(n: int, seed: int) -> Fleet:
    return make_fleet("battery", n, seed=seed)


def idle_portfolio(f: Fleet, buses: list[str]) -> Portfolio:
    """The fleet idle all day (an aggregator's batteries in business as usual)."""
    p = f.params
    n = f.n
    return Portfolio(
        device=np.arange(n, dtype=np.int64) + 100,
        node=np.array([f"agg:vpp/a/{b}" for b in buses], dtype=object),
        bus=np.array(buses, dtype=object),
        capacity_kwh=p.capacity_kwh,
        charge_kw=p.charge_kw,
        discharge_kw=p.discharge_kw,
        eta_charge=p.eta_charge,
        eta_discharge=p.eta_discharge,
        soc_min=p.soc_min,
        soc_max=p.soc_max,
        degradation_cost=p.degradation_cost,
        power_kw=np.zeros((T, n)),
        soc=np.tile(f.state.soc, (T + 1, 1)),
    )


def asks(rows: list[tuple[str, str, int, str, float]]) -> pd.DataFrame:
    """FLEX_ASKS from (ask_id, buses, interval, direction, kw)."""
    return FLEX_ASKS.frame(
        {
            "design": "d",
            "market_id": "flex:a",
            "stage": "day-ahead",
            "interval_start": STARTS[[r[2] for r in rows]],
            "duration_h": DT,
            "participant_id": "dso:a",
            "resource_id": [f"branch:{r[0]}" for r in rows],
            "node_id": "dso:a",
            "ask_id": [r[0] for r in rows],
            "area": "a",
            "buses": [r[1] for r in rows],
            "direction": [r[3] for r in rows],
            "kw": [r[4] for r in rows],
            "price_ceiling": 1.0,
            "reason": "overload",
        }
    )


def offers(pf: Portfolio, a: pd.DataFrame, price: np.ndarray | None = None, **kw: float):  # type: ignore[no-untyped-def]
    return battery_offers(
        pf, a, STARTS, DT, np.full(T, 0.3) if price is None else price, participant="agg:vpp",
        area="a", design="d", market_id="flex:a", availability_price=kw.get("avail", 0.002),
        rebound_h=kw.get("rebound_h", 4.0),
    )  # fmt: skip


def run_day(f: Fleet, power: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the real battery model at ``power`` (T × n): the power it ran at, the SoC at each
    interval start and the end, and the degradation cost per interval."""
    soc = [f.state.soc.copy()]
    ran, deg = np.zeros_like(power), np.zeros_like(power)
    for t in range(T):
        ctx = make_context(STARTS[t], DT, [0.3], floor=-1.0, cap=3.0)
        ran[t] = f.respond(ctx, f.bid(ctx), award=power[t])
        f, rep = f.step(ran[t], ctx)
        deg[t] = rep.extra["degradation_cost"]
        soc.append(f.state.soc.copy())
    return ran, np.array(soc), deg


def device_power(pf: Portfolio, act: pd.DataFrame, fraction: float = 1.0) -> np.ndarray:
    out = pf.power_kw.copy()
    col = pd.Index(pf.device).get_indexer(pd.Index(act["device"]))
    np.add.at(out, (act["interval"].to_numpy(), col), fraction * act["kw"].to_numpy())
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    start=st.integers(4, 18),
    length=st.integers(1, 5),
    kw=st.floats(1.0, 80.0),
    direction=st.sampled_from(["up", "down"]),
    fraction=st.floats(0.05, 1.0),
)
def test_every_offer_is_deliverable_and_the_rebound_restores_the_energy(
    n: int, seed: int, start: int, length: int, kw: float, direction: str, fraction: float
) -> None:
    f = fleet(n, seed)
    buses = [f"b{i % 2}" for i in range(n)]
    pf = idle_portfolio(f, buses)
    rows = [("x", "b0;b1", t, direction, kw) for t in range(start, min(start + length, T))]
    out = offers(pf, asks(rows))
    FLEX_OFFERS.check(out.table)
    assert (out.table["kw"] >= 0).all()
    power = device_power(pf, out.activation, fraction)
    ran, soc, _ = run_day(f, power)
    # the battery model honours the committed schedule exactly (nothing clipped) …
    np.testing.assert_allclose(ran, power, atol=1e-9)
    # … stays in its SoC band, and ends the day where the baseline (idle) left it
    assert (soc >= pf.soc_min - 1e-9).all() and (soc <= pf.soc_max + 1e-9).all()
    np.testing.assert_allclose(soc[-1], f.state.soc, atol=1e-9)
    # offer rows = the node's batteries' activation; the rebound is the opposite direction
    for oid, g in out.table.groupby("offer_id", observed=True):
        act = out.activation[out.activation["offer_id"] == oid]
        by_t = act.groupby("interval")["kw"].sum()
        t = STARTS.get_indexer(pd.DatetimeIndex(g["interval_start"]))
        np.testing.assert_allclose(np.abs(by_t.reindex(t).to_numpy()), g["kw"], atol=1e-9)
        main, reb = g[~g["rebound"]], g[g["rebound"]]
        assert (main["direction"] == direction).all() and (reb["direction"] != direction).all()
        assert (
            pd.DatetimeIndex(reb["interval_start"]).min()
            > pd.DatetimeIndex(main["interval_start"]).max()
        )
        sign = -1 if direction == "up" else 1
        assert (sign * act[act["interval"].isin(t[~g["rebound"].to_numpy()])]["kw"] > 0).all()


def marginal_cost(price: np.ndarray) -> tuple[float, float]:
    """(offered price, marginal cost per kWh delivered measured by running the battery:
    its energy bill at ``price`` and its degradation, with the offer minus without)."""
    f = fleet(1, 7)
    pf = idle_portfolio(f, ["b0"])
    out = offers(pf, asks([("x", "b0", 17, "up", 3.0), ("x", "b0", 18, "up", 3.0)]), price)
    ran, _, deg = run_day(f, device_power(pf, out.activation))
    _, _, deg0 = run_day(f, pf.power_kw)
    delivered = float(-ran[17:19, 0].sum() * DT)
    extra = float((ran[:, 0] * DT * price).sum()) + deg.sum() - deg0.sum()
    return float(out.table["price"].iloc[0]), extra / delivered


def test_the_truthful_price_is_the_marginal_cost_measured_by_running_the_battery() -> None:
    offered, marginal = marginal_cost(np.full(T, 0.30))
    assert offered == pytest.approx(marginal, rel=1e-9)
    assert 0.01 < marginal < 0.15  # losses of a round trip + degradation, €/kWh
    offered, marginal = marginal_cost(np.where(np.arange(T) >= 20, 0.28, 0.30))
    assert offered == pytest.approx(marginal, rel=1e-9)
    # a rebound so cheap that the activation pays for itself: offered at 0, not below
    offered, marginal = marginal_cost(np.where(np.arange(T) >= 20, 0.10, 0.30))
    assert marginal < 0 and offered == 0.0


def test_offers_only_where_asked_and_only_with_room_for_the_rebound() -> None:
    f = fleet(3, 1)
    pf = idle_portfolio(f, ["b0", "b1", "b2"])
    out = offers(pf, asks([("x", "b1;b9", 10, "up", 5.0)]))
    assert set(out.table["bus"].astype(str)) == {"b1"}
    assert set(out.activation["device"]) == {101}
    assert out.table["ask_id"].astype(str).unique().tolist() == ["x"]
    assert offers(pf, asks([("x", "b9", 10, "up", 5.0)])).table.empty
    assert offers(pf, asks([("x", "b0", T - 1, "up", 5.0)])).table.empty  # no time to pay back
    full = Portfolio(**{**pf.__dict__, "soc": np.tile(pf.soc_min, (T + 1, 1))})
    assert offers(full, asks([("x", "b0", 10, "up", 5.0)])).table.empty  # nothing to give


def test_the_offer_follows_the_shape_of_the_ask_and_the_battery_energy() -> None:
    f = fleet(1, 3)
    pf = idle_portfolio(f, ["b0"])
    a = asks([("x", "b0", 16, "up", 2.0), ("x", "b0", 17, "up", 4.0), ("x", "b0", 18, "up", 2.0)])
    g = offers(pf, a).table
    main = g[~g["rebound"]]["kw"].to_numpy()
    np.testing.assert_allclose(main / main[1], [0.5, 1.0, 0.5])
    stock = (f.state.soc[0] - pf.soc_min[0]) * pf.capacity_kwh[0] * pf.eta_discharge[0]
    assert main.max() <= pf.discharge_kw[0] + 1e-9
    assert main.sum() * DT <= stock + 1e-9


def test_bad_input_is_refused() -> None:
    f = fleet(2, 1)
    pf = idle_portfolio(f, ["b0", "b1"])
    a = asks([("x", "b0", 10, "up", 5.0)])
    with pytest.raises(InvalidInputError, match="forecast prices"):
        offers(pf, a, np.full(T - 1, 0.3))
    with pytest.raises(InvalidInputError, match="rebound_h"):
        offers(pf, a, rebound_h=0.0)
    bad = Portfolio(**{**pf.__dict__, "power_kw": np.zeros((T - 1, 2))})
    with pytest.raises(InvalidInputError, match="baseline power"):
        offers(bad, a)
