"""Capacity / NWA auction: the selection against independent optima (scipy's MILP, brute
force), economic properties, the NPV against a year-by-year hand computation, the delivery
risk against enumeration, the performance test, the season's clock and bad input."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from transactive.errors import InvalidInputError
from transactive.market.capacity import (
    EXACT_UNITS,
    Need,
    Offers,
    Season,
    Upgrade,
    annuity_factor,
    capital_recovery_factor,
    clear,
    clearing_risk,
    decide,
    delivery_risk,
    make_offers,
    need_from_peak,
    qualify,
    run_auction,
)

SEASON = Season(date(2027, 6, 1), date(2027, 8, 31), (0, 1, 2, 3, 4), (17.0, 20.0), "Europe/Berlin")


def need(kw: float, **kw_args: object) -> Need:
    return Need("trafo", SEASON, kw, **kw_args)  # type: ignore[arg-type]


@st.composite
def books(draw: st.DrawFn, max_size: int = 8) -> tuple[Offers, float]:
    """Small books (integer kW, prices on a coarse grid, ties common) and a reachable need."""
    n = draw(st.integers(1, max_size))
    kw = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    price = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    rel = draw(st.lists(st.sampled_from([0.8, 0.9, 0.95, 1.0]), min_size=n, max_size=n))
    div = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    offers = make_offers(
        [f"o{i}" for i in range(n)], kw, price, reliability=rel, divisible=div,
        provider=[f"p{i % 3}" for i in range(n)],
    )  # fmt: skip
    total = float((offers.firm_kw * offers.reliability).sum())
    frac = draw(st.floats(0.05, 1.0))
    return offers, round(total * frac, 3)


def scipy_cost(offers: Offers, need_kw: float) -> float:
    """The same selection with scipy's MILP (an independent formulation)."""
    firm = offers.firm_kw * offers.reliability
    res = milp(
        offers.cost,
        constraints=LinearConstraint(firm[None, :], need_kw, np.inf),
        integrality=(~offers.divisible).astype(int),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    assert res.success
    return float(res.fun)


@settings(max_examples=60, deadline=None)
@given(books())
def test_selection_cost_equals_scipy_milp(book: tuple[Offers, float]) -> None:
    offers, kw = book
    c = clear(offers, need(kw))
    assert c.status == "cleared"
    assert c.firm_kw.sum() >= kw * (1 - 1e-9)
    assert c.cost == pytest.approx(scipy_cost(offers, kw), rel=1e-7, abs=1e-7)
    # Pay-as-bid: each accepted offer is paid its price for the kW taken; no offer is split
    # unless it is divisible.
    np.testing.assert_allclose(c.payment, c.awarded_kw * offers.price)
    whole = ~offers.divisible
    assert np.isin(c.share[whole], [0.0, 1.0]).all()


@settings(max_examples=40, deadline=None)
@given(books(max_size=7))
def test_indivisible_selection_equals_brute_force(book: tuple[Offers, float]) -> None:
    offers, kw = book
    offers = make_offers(offers.id, offers.firm_kw, offers.price, reliability=offers.reliability)
    firm, cost = offers.firm_kw * offers.reliability, offers.cost
    best = min(
        float(cost @ np.array(x))
        for x in itertools.product((0, 1), repeat=offers.n)
        if firm @ np.array(x) >= kw - 1e-9
    )
    assert clear(offers, need(kw)).cost == pytest.approx(best, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(books(max_size=6), st.integers(1, 30), st.integers(0, 40), st.booleans())
def test_adding_an_offer_never_raises_the_cost(
    book: tuple[Offers, float], kw: int, price: int, divisible: bool
) -> None:
    offers, need_kw = book
    before = clear(offers, need(need_kw)).cost
    more = make_offers(
        [*offers.id, "new"], [*offers.firm_kw, kw], [*offers.price, price],
        reliability=[*offers.reliability, 0.9], divisible=[*offers.divisible, divisible],
    )  # fmt: skip
    assert clear(more, need(need_kw)).cost <= before + 1e-7


@settings(max_examples=40, deadline=None)
@given(books())
def test_uniform_price_pays_every_accepted_offer_at_least_its_bid(
    book: tuple[Offers, float],
) -> None:
    offers, kw = book
    pab = clear(offers, need(kw), "pay-as-bid")
    uni = clear(offers, need(kw), "uniform")
    np.testing.assert_array_equal(uni.share, pab.share)  # same selection, other payments
    assert (uni.payment >= pab.payment - 1e-9).all()
    sel = uni.selected
    # Every accepted de-rated kW earns the marginal (highest accepted) price per firm kW.
    assert uni.price == pytest.approx((offers.price / offers.reliability)[sel].max())
    np.testing.assert_allclose(uni.payment, uni.price * uni.firm_kw)


def test_performance_test_disqualifies_an_undersized_battery() -> None:
    offers = make_offers(
        ["small", "big", "dr", "far"], [10, 10, 10, 10], [5, 20, 20, 20],
        energy_kwh=[20, 40, np.nan, np.nan], max_activations=[np.inf, 50, 5, np.inf],
        node=["b1", "b2", "b3", "elsewhere"],
    )  # fmt: skip
    n = need(15, event_duration_h=3.0, events=20, eligible_nodes=("b1", "b2", "b3"))
    q = qualify(offers, n)
    assert q.qualified.tolist() == [False, True, False, False]
    assert "20 kWh holds 6.67 kW over a 3 h event, not the 10 kW offered" in q.reason[0]
    assert "allows 5 activations, the season needs 20" in q.reason[2]
    assert "node 'elsewhere' is not behind trafo" in q.reason[3]
    np.testing.assert_allclose(q.deliverable_kw, [20 / 3, 10, 10, 10])
    # The cheap battery is out: only 10 firm kW qualify, the need (15) is not met: build.
    a = run_auction(offers, n, Upgrade(50_000, 40, 0.05, 230), 3)
    assert a.clearing.status == "short" and a.clearing.cost == 0.0
    assert a.decision.action == "build" and "reach only 10.0 of 15.0" in a.decision.reason
    # With the battery's full energy (40 kWh = 13.3 kW over 3 h) it would qualify.
    assert qualify(offers, need(15, event_duration_h=2.0)).qualified[0]


def test_npv_against_a_year_by_year_hand_computation() -> None:
    offers = make_offers(["a", "b"], [30, 40], [20, 15], reliability=[1.0, 1.0])
    n, up = need(60), Upgrade(60_000, 40, 0.05, 230)
    c = clear(offers, n)
    assert c.cost == pytest.approx(30 * 20 + 40 * 15)  # both, indivisible: 70 kW ≥ 60
    years = np.arange(1, 4)
    disc = 1.05**-years
    annuity = 60_000 * 0.05 / (1 - 1.05**-40)  # capital recovery, textbook form
    hand = float(((annuity - c.cost) * disc).sum())  # avoided annuities − payments, 3 years
    d = decide(offers, n, c, up, 3)
    assert d.annualised_upgrade_cost == pytest.approx(annuity)
    assert d.upgrade_cost_per_kw_year == pytest.approx(annuity / 230)
    assert d.npv == pytest.approx(hand)
    assert d.annual_value == pytest.approx(annuity - c.cost)  # the yearly saving
    capex = decide(offers, n, c, up, 3, method="capex")
    assert capex.npv == pytest.approx(60_000 - 60_000 / 1.05**3 - float((c.cost * disc).sum()))
    # Zero discount rate: plain sums.
    assert annuity_factor(0.0, 4) == 4 and capital_recovery_factor(0.0, 40) == 1 / 40


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.005, 0.15),
    st.integers(5, 60),
    st.floats(0.5, 10),
    st.sampled_from(["annuity", "capex"]),
)
def test_a_cheaper_upgrade_flips_defer_to_build_at_break_even(
    rate: float, life: int, years: float, method: str
) -> None:
    offers = make_offers(["a", "b"], [30, 40], [20, 15])
    n = need(60)
    c = clear(offers, n)
    a_k = annuity_factor(rate, years)
    # NPV(capex) is linear in capex; break-even where the avoided cost equals the payments.
    per_capex = capital_recovery_factor(rate, life) * a_k if method == "annuity" else (
        1 - (1 + rate) ** -years
    )  # fmt: skip
    even = c.cost * a_k / per_capex
    above = decide(offers, n, c, Upgrade(even * 1.001, life, rate, 100), years, method=method)  # type: ignore[arg-type]
    below = decide(offers, n, c, Upgrade(even * 0.999, life, rate, 100), years, method=method)  # type: ignore[arg-type]
    assert above.action == "defer" and above.npv > 0
    assert below.action == "build" and below.npv < 0


def test_risk_blocks_deferral_and_securing_buys_redundancy() -> None:
    # One 0.9-reliable provider covering the need alone fails 10 % of the time.
    offers = make_offers(["a", "b", "c"], [100, 40, 40], [10, 12, 12],
                         provider=["p", "q", "r"], reliability=[0.9, 0.99, 0.99])  # fmt: skip
    n, up = need(80), Upgrade(500_000, 40, 0.05, 400)
    plain = run_auction(offers, n, up, 3, secure=False)
    assert plain.clearing.selected.tolist() == [True, False, False]
    assert plain.decision.under_delivery_risk == pytest.approx(0.1)
    assert plain.decision.action == "build" and "above the 5.0% threshold" in plain.decision.reason
    secured = run_auction(offers, n, up, 3)
    assert secured.decision.under_delivery_risk <= 0.05
    assert secured.decision.action == "defer"
    assert secured.clearing.cost > plain.clearing.cost  # redundancy costs money
    # Per offer or per provider: b and c from one provider fail together.
    same = make_offers(["b", "c"], [40, 40], [12, 12], provider=["q", "q"], reliability=0.9)
    c = clear(same, need(70))
    assert clearing_risk(same, c, 70, "provider")[0] == pytest.approx(0.1)
    assert clearing_risk(same, c, 70, "offer")[0] == pytest.approx(1 - 0.81)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 20), st.floats(0.5, 1.0)), min_size=1, max_size=10),
    st.floats(0.0, 1.0),
)
def test_delivery_risk_equals_enumeration(units: list[tuple[int, float]], frac: float) -> None:
    kw = np.array([u[0] for u in units], dtype=float)
    p = np.array([u[1] for u in units])
    need_kw = frac * kw.sum()
    risk = short = 0.0
    for x in itertools.product((0, 1), repeat=kw.size):
        b = np.array(x)
        prob = float(np.prod(np.where(b == 1, p, 1 - p)))
        d = float(b @ kw)
        risk += prob * (d < need_kw - 1e-9 * max(need_kw, 1.0))
        short += prob * max(need_kw - d, 0.0)
    got = delivery_risk(kw, p, need_kw)
    assert got[0] == pytest.approx(risk, abs=1e-12)
    assert got[1] == pytest.approx(short, abs=1e-9)


def test_delivery_risk_on_the_grid_is_conservative_and_close() -> None:
    rng = np.random.default_rng(4)
    n = EXACT_UNITS + 2  # the convolution path; 2^18 outcomes still enumerable here
    kw = rng.uniform(2.0, 9.0, n)
    p = rng.uniform(0.85, 0.99, n)
    need_kw = 0.8 * kw.sum()
    x = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    prob = np.prod(np.where(x == 1, p, 1 - p), axis=1)
    d = x @ kw
    exact = float(prob[d < need_kw].sum())
    shortfall = float((prob * np.clip(need_kw - d, 0, None)).sum())
    risk, short = delivery_risk(kw, p, need_kw)
    assert exact <= risk <= exact + 0.01
    assert shortfall <= short <= shortfall + 0.01


def test_season_windows_follow_the_local_clock_through_daylight_saving() -> None:
    s = Season(date(2027, 3, 26), date(2027, 3, 29), (0, 4), (17.0, 20.0), "Europe/Berlin")
    w = s.windows()
    # Friday 26 March (CET, UTC+1) and Monday 29 March (CEST, UTC+2): 17:00 local both days.
    assert w["start"].tolist() == [
        pd.Timestamp("2027-03-26T16:00Z"),
        pd.Timestamp("2027-03-29T15:00Z"),
    ]
    assert (w["end"] - w["start"]).tolist() == [pd.Timedelta(hours=3)] * 2
    starts = pd.date_range("2027-03-29T14:45Z", periods=6, freq="15min")
    assert s.contains(starts, 0.25).tolist() == [False, True, True, True, True, True]
    assert len(SEASON.windows()) == 66  # weekdays of June–August 2027


def test_need_from_peak_and_no_need() -> None:
    assert need_from_peak(452, 400) == 52 and need_from_peak(380, 400) == 0
    offers = make_offers(["a"], [10], [10])
    a = run_auction(offers, need(0), Upgrade(1000, 10, 0.05, 10), 2)
    assert a.decision.action == "none" and a.clearing.cost == 0 and not a.decision.defer


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: make_offers(["a"], [-1], [5]), "offer 'a': firm_kw must be a kW > 0"),
        (lambda: make_offers(["a"], [1], [5], reliability=1.5), "reliability must be in (0, 1]"),
        (lambda: make_offers(["a", "a"], [1, 2], [5, 5]), "offer id 'a' is used twice"),
        (lambda: make_offers(["a"], [1], [5], energy_kwh=[0]), "energy_kwh must be > 0 kWh"),
        (lambda: Upgrade(1e5, 0, 0.05, 100), "upgrade life_years"),
        (lambda: Upgrade(1e5, 40, 1.5, 100), "upgrade discount_rate"),
        (lambda: Season(date(2027, 6, 2), date(2027, 6, 1), (0,), (1, 2), "UTC"), "before first"),
        (lambda: Season(date(2027, 6, 1), date(2027, 6, 2), (0,), (20, 17), "UTC"), "hours"),
        (lambda: need(-5), "need_kw must be a finite kW ≥ 0"),
        (lambda: need(5, event_duration_h=4.0), "event_duration_h must be in (0, 3.0]"),
        (lambda: need_from_peak(float("nan"), 400), "finite peak"),
    ],
)
def test_bad_input_names_the_culprit(build: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as err:
        build()  # type: ignore[operator]
    assert message in str(err.value)


def test_bad_rules_are_refused() -> None:
    offers = make_offers(["a"], [10], [10])
    c = clear(offers, need(5))
    with pytest.raises(InvalidInputError, match="pricing"):
        clear(offers, need(5), "vickrey")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="deferral_years"):
        decide(offers, need(5), c, Upgrade(1, 1, 0.1, 1), 0)
    with pytest.raises(InvalidInputError, match="risk unit"):
        clearing_risk(offers, c, 5, "home")  # type: ignore[arg-type]
