"""Uniform-price double auction: economic properties, known answers and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from transactive.core.curves import block_curves, curves_from_arrays, ramp_curves
from transactive.errors import BalanceError, InvalidBidError, TransactiveError
from transactive.market.auction import (
    Book,
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
