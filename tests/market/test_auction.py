"""Uniform-price double auction: economic properties, known answers and bad input."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from transactive.core.curves import block_curves, curves_from_arrays, ramp_curves
from transactive.errors import BalanceError, InvalidBidError, InvalidInputError, TransactiveError
from transactive.market.auction import (
    ZERO_EPS,
    Book,
    Status,
    book_from_blocks,
    book_from_curves,
    book_from_points,
    clear,
)

FLOOR, CAP = -0.5, 2.0
EPS = 1e-9


@st.composite
def block_books(draw: st.DrawFn, min_size: int = 1, max_size: int = 14) -> dict:
    """Small books of blocks on a coarse price grid (ties are common) incl. price-takers."""
    n = draw(st.integers(min_size, max_size))
    side = draw(st.lists(st.sampled_from(["buy", "sell"]), min_size=n, max_size=n))
    price = draw(st.lists(st.integers(-5, 20).map(lambda i: i / 10), min_size=n, max_size=n))
    qty = draw(st.lists(st.integers(0, 12).map(float), min_size=n, max_size=n))
    return {"ids": [f"b{i}" for i in range(n)], "side": side, "price": price, "quantity": qty}


def make(b: dict) -> Book:
    return book_from_blocks(b["ids"], b["side"], b["price"], b["quantity"])


def welfare(b: dict, awards: np.ndarray) -> float:
    """Σ value of what buyers get − Σ cost of what sellers give ($/h)."""
    return float(np.dot(b["price"], awards))


def lp_welfare(b: dict) -> float:
    """Reference: max Σ b_i x_i − Σ s_j y_j  s.t. Σ x = Σ y, 0 ≤ x, y ≤ q (HiGHS LP)."""
    sign = np.where(np.array(b["side"]) == "buy", 1.0, -1.0)
    res = linprog(
        -np.array(b["price"]) * sign,
        A_eq=sign[None, :],
        b_eq=[0.0],
        bounds=list(zip([0.0] * len(sign), b["quantity"], strict=True)),
        method="highs",
    )
    assert res.status == 0
    return float(-res.fun)


@given(block_books())
def test_economic_properties(b: dict) -> None:
    r = clear(make(b), FLOOR, CAP)
    p, v = r.price[0], r.quantity[0]
    buy = np.array(b["side"]) == "buy"
    price, qty, a = np.array(b["price"]), np.array(b["quantity"]), r.awards
    # Signs and bounds of awards.
    assert (a[buy] >= -EPS).all() and (a[buy] <= qty[buy] + EPS).all()
    assert (a[~buy] <= EPS).all() and (-a[~buy] <= qty[~buy] + EPS).all()
    # Awarded buys = awarded sells = cleared quantity; payments = receipts.
    assert a[buy].sum() == pytest.approx(v, abs=1e-9)
    assert -a[~buy].sum() == pytest.approx(v, abs=1e-9)
    pay = r.payments()
    assert pay[buy].sum() == pytest.approx(-pay[~buy].sum(), abs=1e-9)
    if r.status[0] == "no_trade":
        assert np.isnan(p) and v == 0 and (a == 0).all()
        return
    assert FLOOR <= p <= CAP
    # Nobody trades against its price; everyone strictly in the money is fully served.
    assert (price[buy & (a > EPS)] >= p).all()
    assert (price[~buy & (a < -EPS)] <= p).all()
    np.testing.assert_allclose(a[buy & (price > p)], qty[buy & (price > p)])
    np.testing.assert_allclose(a[~buy & (price < p)], -qty[~buy & (price < p)])
    # The trade maximises welfare (LP reference).
    assert welfare(b, a) == pytest.approx(lp_welfare(b), abs=1e-7)
    # Surplus per side adds up to the welfare.
    assert r.buyer_surplus[0] + r.seller_surplus[0] == pytest.approx(welfare(b, a), abs=1e-7)


@given(block_books(), st.randoms())
def test_result_does_not_depend_on_submission_order(b: dict, rnd) -> None:
    perm = list(range(len(b["ids"])))
    rnd.shuffle(perm)
    shuffled = {k: [v[i] for i in perm] for k, v in b.items()}
    r1, r2 = clear(make(b), FLOOR, CAP), clear(make(shuffled), FLOOR, CAP)
    np.testing.assert_array_equal(r1.status, r2.status)
    np.testing.assert_allclose(r1.price, r2.price, equal_nan=True)
    np.testing.assert_allclose(r1.awards[perm], r2.awards, atol=1e-12)


@given(block_books(), st.integers(-5, 20), st.integers(1, 12))
def test_adding_a_buy_bid_never_lowers_the_price(b: dict, price: int, qty: int) -> None:
    before = clear(make(b), FLOOR, CAP)
    more = {k: [*v] for k, v in b.items()}
    for k, v in (("ids", "new"), ("side", "buy"), ("price", price / 10), ("quantity", qty)):
        more[k].append(v)
    after = clear(make(more), FLOOR, CAP)
    if before.status[0] != "no_trade":
        assert after.status[0] != "no_trade"
        assert after.price[0] >= before.price[0] - 1e-12
    assert after.quantity[0] >= before.quantity[0] - 1e-9


@given(block_books())
def test_equal_marginal_bids_get_equal_awards(b: dict) -> None:
    twin = {k: [*v, v[0]] for k, v in b.items()}
    twin["ids"][-1] = "twin"
    r = clear(make(twin), FLOOR, CAP)
    assert r.awards[0] == pytest.approx(r.awards[-1], abs=1e-12)


@given(st.lists(block_books(), min_size=1, max_size=4))
def test_many_intervals_in_one_call_equal_one_by_one(books: list[dict]) -> None:
    ids, side, price, qty, interval = [], [], [], [], []
    for t, b in enumerate(books):
        ids += b["ids"]
        side += b["side"]
        price += b["price"]
        qty += b["quantity"]
        interval += [t] * len(b["ids"])
    together = clear(book_from_blocks(ids, side, price, qty, interval), FLOOR, CAP)
    for t, b in enumerate(books):
        alone = clear(make(b), FLOOR, CAP)
        assert together.status[t] == alone.status[0]
        np.testing.assert_allclose(together.price[t], alone.price[0], equal_nan=True)
        np.testing.assert_allclose(
            together.awards[np.array(interval) == t], alone.awards, atol=1e-9
        )


def test_textbook_crossing_with_marginal_seller() -> None:
    b = book_from_blocks(
        ["b1", "s1", "b2", "s2"],
        ["buy", "sell", "buy", "sell"],
        [0.3, 0.1, 0.2, 0.2],
        [10, 10, 5, 8],
    )
    r = clear(b, 0.0, 1.0)
    assert (r.price[0], r.quantity[0], r.status[0]) == (0.2, 15.0, "cleared")
    np.testing.assert_allclose(r.awards, [10, -10, 5, -5])
    assert r.buyer_surplus[0] == pytest.approx(1.0)  # 10 kW × (0.3 − 0.2)
    assert r.seller_surplus[0] == pytest.approx(1.0)  # 10 kW × (0.2 − 0.1)


def test_price_range_gives_the_midpoint() -> None:
    r = clear(book_from_blocks(["b", "s"], ["buy", "sell"], [0.3, 0.1], [10, 10]), 0.0, 1.0)
    assert r.price[0] == pytest.approx(0.2) and r.quantity[0] == 10


def test_ramp_bids_clear_where_the_lines_cross() -> None:
    curves = ramp_curves([0.0, 0.0], [0.4, 0.4], [10.0, -10.0])  # demand 10→0, supply 0→10
    r = clear(book_from_curves(["d", "s"], curves), 0.0, 1.0)
    assert r.price[0] == pytest.approx(0.2) and r.quantity[0] == pytest.approx(5.0)


def test_battery_curve_buys_and_sells_on_its_sides() -> None:
    bat = book_from_points(["bat"], [[0.1, 0.1, 0.3, 0.3]], [[5.0, 0.0, 0.0, -5.0]])
    r = clear(bat, 0.0, 1.0, unresponsive_demand=3.0)  # only the battery can serve 3 kW
    assert r.price[0] == 0.3 and r.awards[0] == pytest.approx(-3.0)
    assert r.unresponsive_demand[0] == pytest.approx(3.0)


def test_shortage_sets_cap_and_rations_price_takers() -> None:
    b = book_from_blocks(["s"], ["sell"], [0.4], [6.0])
    r = clear(b, 0.0, 1.0, unresponsive_demand=10.0)
    assert r.status[0] == "shortage" and r.price[0] == 1.0
    assert r.unresponsive_demand[0] == pytest.approx(6.0) and r.awards[0] == pytest.approx(-6.0)


def test_surplus_sets_floor() -> None:
    b = book_from_blocks(["d"], ["buy"], [0.2], [3.0])
    r = clear(b, -0.1, 1.0, unresponsive_supply=8.0)
    assert r.status[0] == "surplus" and r.price[0] == -0.1
    assert r.unresponsive_supply[0] == pytest.approx(3.0)


@pytest.mark.parametrize(
    "b",
    [
        {"ids": ["a", "b"], "side": ["buy", "sell"], "price": [0.1, 0.3], "quantity": [5, 5]},
        {"ids": ["a"], "side": ["buy"], "price": [0.1], "quantity": [5]},
        {"ids": [], "side": [], "price": [], "quantity": []},
    ],
)
def test_no_trade_has_no_price(b: dict) -> None:
    r = clear(make(b), 0.0, 1.0)
    assert r.status[0] == "no_trade" and np.isnan(r.price[0]) and r.quantity[0] == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", np.nan, "price nan is not a finite"),
        ("price", np.inf, "price inf is not a finite"),
        ("quantity", -1.0, "negative quantity"),
        ("quantity", np.nan, "quantity nan"),
        ("side", "hold", "unknown side 'hold'"),
        ("price", 3.0, "outside"),
        ("ids", "a", "duplicate bid id"),
    ],
)
def test_bad_bids_name_the_bid(field: str, value: object, message: str) -> None:
    b = {"ids": ["a", "bad"], "side": ["buy", "sell"], "price": [0.2, 0.1], "quantity": [1, 1]}
    b[field][1] = value
    with pytest.raises(InvalidBidError, match=message) as err:
        clear(make(b), FLOOR, CAP)
    assert isinstance(err.value, ValueError) and isinstance(err.value, TransactiveError)
    assert "'a'" in str(err.value) if field == "ids" else "'bad'" in str(err.value)


def test_non_monotone_curve_names_the_bid() -> None:
    with pytest.raises(InvalidBidError, match=r"bid 'up'.*must not increase"):
        book_from_points(["ok", "up"], [[0.1, 0.2], [0.1, 0.2]], [[1.0, 0.0], [0.0, 1.0]])


def test_same_id_in_different_intervals_is_allowed() -> None:
    b = book_from_blocks(["a", "a"], ["buy", "buy"], [0.1, 0.1], [1, 1], [0, 1])
    assert clear(b, 0.0, 1.0).status.tolist() == ["no_trade", "no_trade"]


def test_bad_price_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="floor < cap"):
        clear(make({"ids": [], "side": [], "price": [], "quantity": []}), 1.0, 1.0)


def test_balance_check_fires_on_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    import transactive.market.auction as auction

    monkeypatch.setattr(auction, "share_steps", lambda left, right, g, t: 2 * left)
    with pytest.raises(BalanceError):
        auction.clear(book_from_blocks(["b", "s"], ["buy", "sell"], [0.3, 0.1], [5, 5]), 0, 1)


def test_flat_price_taking_curves_clear_as_bids_at_the_cap() -> None:
    flat = curves_from_arrays([[0.0], [0.0]], [[5.0], [-2.0]])  # 5 kW demand, 2 kW supply
    r = clear(book_from_curves([0, 1], flat), floor=0.2, cap=1.0)
    # Demand that never falls to zero is price-taking: it is rationed at the cap.
    assert r.status[0] == "shortage" and r.price[0] == 1.0
    np.testing.assert_allclose(r.awards, [2.0, -2.0])


def test_a_flat_curve_may_sit_at_any_price_but_a_step_must_be_in_range() -> None:
    flat = curves_from_arrays([[9.0]], [[3.0]])
    assert clear(book_from_curves(["f"], flat), 0.5, 2.0).status[0] == "shortage"
    with pytest.raises(InvalidBidError, match=r"'s'.*outside"):
        clear(book_from_curves(["s"], block_curves([3.0], [1.0])), 0.5, 2.0)


# --- magnitudes: huge and tiny bids in one book ---------------------------------------------

MAGNITUDES = [1e-6, 1e-3, 0.5, 7.0, 500.0, 1e6, 1e9, 1e12]


@st.composite
def mixed_books(draw: st.DrawFn) -> dict:
    """Books mixing kW-scale bids with tiny (1e-6 kW) and "unlimited" (1e9, 1e12 kW) ones,
    price-takers at the floor and cap included."""
    n = draw(st.integers(1, 10))
    side = draw(st.lists(st.sampled_from(["buy", "sell"]), min_size=n, max_size=n))
    price = draw(st.lists(st.integers(-1, 20).map(lambda i: i / 10), min_size=n, max_size=n))
    size = st.tuples(st.sampled_from(MAGNITUDES), st.integers(1, 9)).map(lambda t: t[0] * t[1])
    qty = draw(st.lists(size, min_size=n, max_size=n))
    return {"ids": [f"b{i}" for i in range(n)], "side": side, "price": price, "quantity": qty}


def exact_reference(b: dict) -> tuple[Fraction, Fraction]:
    """Welfare-maximising volume (kW) and welfare ($/h) in exact rational arithmetic: match
    the highest buys with the lowest sells while the buy price is ≥ the sell price."""
    pairs = list(zip(b["side"], b["price"], b["quantity"], strict=True))
    buys = sorted(((Fraction(p), Fraction(q)) for s, p, q in pairs if s == "buy"), reverse=True)
    sells = sorted((Fraction(p), Fraction(q)) for s, p, q in pairs if s == "sell")
    left_b, left_s = [q for _, q in buys], [q for _, q in sells]
    i = j = 0
    volume = welfare_ = Fraction(0)
    while i < len(buys) and j < len(sells) and buys[i][0] >= sells[j][0]:
        m = min(left_b[i], left_s[j])
        volume += m
        welfare_ += m * (buys[i][0] - sells[j][0])
        left_b[i] -= m
        left_s[j] -= m
        i += left_b[i] == 0
        j += left_s[j] == 0
    return volume, welfare_


@given(mixed_books())
def test_huge_and_tiny_quantities_clear_exactly_up_to_round_off(b: dict) -> None:
    r = clear(make(b), -0.1, 2.0)
    qty, price = np.array(b["quantity"]), np.array(b["price"])
    buy = np.array(b["side"]) == "buy"
    # The documented round-off allowance of this book: ZERO_EPS · √n · (demand + supply).
    allowance = ZERO_EPS * np.sqrt(len(qty) + 2) * qty.sum()
    volume, best = exact_reference(b)
    v, a = r.quantity[0], r.awards
    assert abs(v - float(volume)) <= allowance + 1e-9 * float(volume)
    assert abs(a[buy].sum() - v) <= 1e-9 * v + allowance
    assert abs(-a[~buy].sum() - v) <= 1e-9 * v + allowance
    assert (a[buy] >= -allowance).all() and (a[buy] <= qty[buy] * (1 + 1e-12)).all()
    assert (a[~buy] <= allowance).all() and (-a[~buy] <= qty[~buy] * (1 + 1e-12)).all()
    welfare_ = float(np.dot(price, a))
    assert abs(welfare_ - float(best)) <= 2.1 * allowance + 1e-9 * float(best)
    if float(volume) > 2 * allowance:
        assert r.status[0] != "no_trade"
        p = r.price[0]
        assert (price[buy & (a > allowance)] >= p).all()
        assert (price[~buy & (a < -allowance)] <= p).all()


def test_a_huge_buy_next_to_a_small_sell_trades_the_sell() -> None:
    # `transactive clear` on huge,buy,0.3,1e12 + s1,sell,0.1,500: demand exceeds supply at
    # every price below 0.3 and is 0 above it, so the price is 0.3 (the buyer's step); the
    # marginal buyer gets all 500 kW; the seller earns (0.3 − 0.1) × 500 = 100 $/h.
    r = clear(book_from_blocks(["huge", "s1"], ["buy", "sell"], [0.3, 0.1], [1e12, 500]), -0.1, 2)
    assert r.status[0] is Status.CLEARED and r.price[0] == pytest.approx(0.3)
    assert r.quantity[0] == pytest.approx(500.0, rel=1e-12)
    np.testing.assert_allclose(r.awards, [500.0, -500.0], rtol=1e-12)
    assert r.buyer_surplus[0] == pytest.approx(0.0, abs=1e-9)
    assert r.seller_surplus[0] == pytest.approx(100.0)


@pytest.mark.parametrize("load_kw", [0.3, 0.7, 3.3, 7.1])
def test_an_unlimited_sell_bid_balances(load_kw: float) -> None:
    # A 1e9 kW "unlimited" grid offer is the marginal seller of a small load: it sells
    # exactly the load at its own price (before: awards off by 5e-8 kW, BalanceError).
    b = book_from_blocks(["grid", "load"], ["sell", "buy"], [0.05, 0.3], [1e9, load_kw])
    r = clear(b, -0.1, 2.0)
    assert r.status[0] == "cleared" and r.price[0] == 0.05
    np.testing.assert_allclose(r.awards, [-load_kw, load_kw], rtol=1e-15)


def test_tiny_books_are_not_mistaken_for_no_trade() -> None:
    b = book_from_blocks(["b", "s"], ["buy", "sell"], [0.3, 0.1], [2e-6, 1e-6])
    r = clear(b, 0.0, 1.0)
    assert r.status[0] == "cleared" and r.quantity[0] == pytest.approx(1e-6, rel=1e-12)
    assert r.price[0] == pytest.approx(0.3)


# --- identity: owners, interval starts, statuses --------------------------------------------


def test_owner_and_interval_start_are_carried_into_the_clearing() -> None:
    b = book_from_blocks(
        ["ev", "pv", "ev"],
        ["buy", "sell", "buy"],
        [0.3, 0.1, 0.3],
        [5, 5, 5],
        [0, 0, 1],
        owner=["home-1", "home-2", "home-1"],
        interval_start=["2026-07-01T19:00:00+02:00", "2026-07-01T17:15:00Z"],
    )
    assert b.n_intervals == 2 and b.owner.tolist() == ["home-1", "home-2", "home-1"]
    assert b.interval_start is not None and str(b.interval_start.tz) == "UTC"
    assert [t.isoformat() for t in b.interval_start] == [
        "2026-07-01T17:00:00+00:00",
        "2026-07-01T17:15:00+00:00",
    ]
    r = clear(b, 0.0, 1.0)
    assert r.owner.tolist() == ["home-1", "home-2", "home-1"]
    assert r.ids.tolist() == ["ev", "pv", "ev"]
    assert r.interval_start is b.interval_start
    assert r.status.tolist() == ["cleared", "no_trade"]


def test_owner_defaults_to_the_bid_id_and_a_book_may_be_timeless() -> None:
    b = book_from_curves(np.arange(3), block_curves([0.2, 0.1, 0.3], [1.0, -1.0, 2.0]))
    assert b.owner.tolist() == [0, 1, 2] and b.interval_start is None
    assert clear(b, 0.0, 1.0).interval_start is None


def test_interval_start_accepts_a_datetime_index_and_sets_the_interval_count() -> None:
    starts = pd.date_range("2026-07-01", periods=3, freq="15min", tz="Europe/Berlin")
    b = book_from_points(["a"], [[0.1, 0.1]], [[1.0, 0.0]], interval_start=starts)
    assert b.n_intervals == 3 and b.interval_start is not None
    assert b.interval_start[0] == pd.Timestamp("2026-06-30T22:00:00Z")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_start": ["2026-07-01T17:00:00"]}, "no time zone"),
        ({"interval_start": ["2026-07-01T17:00Z", "2026-07-01T19:00+02:00"]}, "twice"),
        ({"interval_start": ["someday"]}, "interval_start"),
        ({"interval_start": ["2026-07-01T17:00Z"], "n_intervals": 2}, "1 interval starts"),
        ({"owner": ["x"]}, "1 owners for 2 bids"),
        ({"owner": ["x", ""]}, "bid 'b': empty owner"),
    ],
)
def test_bad_identity_is_rejected_by_name(kwargs: dict, message: str) -> None:
    n_iv = kwargs.pop("n_intervals", None)
    with pytest.raises(InvalidInputError, match=message):
        book_from_blocks(["a", "b"], ["buy", "sell"], [0.2, 0.1], [1, 1], None, n_iv, **kwargs)


def test_status_is_a_str_enum_covering_network_clearing() -> None:
    from transactive.market import network

    r = clear(book_from_blocks(["b", "s"], ["buy", "sell"], [0.3, 0.1], [1, 1]), 0.0, 1.0)
    assert r.status[0] is Status.CLEARED and r.status[0] == "cleared"
    assert json.dumps({"status": r.status[0]}) == '{"status": "cleared"}'
    assert f"{r.status[0]}" == "cleared"
    for name in (network.OPTIMAL, network.SHED, network.INFEASIBLE):
        assert Status(name) == name
