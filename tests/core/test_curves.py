"""Bid curves: aggregation, reading, clipping and splitting agree with direct evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import quad

from transactive.core.curves import (
    Curves,
    aggregate,
    block_curves,
    clip,
    concat,
    curves_from_arrays,
    dispatch,
    integrate,
    price_at,
    price_interval,
    quantity_at,
    ramp_curves,
    split_sides,
)
from transactive.errors import InvalidCurveError

FLOOR, CAP = 0.0, 1.0
prices = st.integers(0, 20).map(lambda i: i / 20)  # a coarse grid: many ties
kws = st.integers(-10, 10).map(float)


@st.composite
def curve_sets(draw: st.DrawFn, max_curves: int = 12) -> Curves:
    """A mix of blocks, ramps and mixed buy/sell curves (battery-like)."""
    n = draw(st.integers(1, max_curves))
    parts = []
    for _ in range(n):
        kind = draw(st.sampled_from(["block", "ramp", "battery"]))
        if kind == "block":
            parts.append(block_curves([draw(prices)], [draw(kws)]))
        elif kind == "ramp":
            lo, hi = sorted([draw(prices), draw(prices)])
            parts.append(ramp_curves([lo], [hi], [draw(kws)]))
        else:
            p = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
            charge, discharge = draw(st.integers(0, 10)), draw(st.integers(0, 10))
            parts.append(curves_from_arrays([p], [[charge, charge, -discharge, -discharge]]))
    return concat(parts)


def eval_points(c: Curves) -> np.ndarray:
    """Prices to probe: every breakpoint, midpoints and beyond the ends."""
    p = np.unique(np.concatenate([c.price, [FLOOR, CAP, -0.5, 1.5]]))
    return np.unique(np.concatenate([p, 0.5 * (p[1:] + p[:-1])]))


@given(curve_sets(), st.integers(1, 3), st.randoms())
def test_aggregate_equals_sum_of_curves_per_group(c: Curves, ng: int, rnd) -> None:
    group = np.array([rnd.randrange(ng) for _ in range(c.n)])
    agg = aggregate(c, group, ng)
    assert agg.n == ng
    Curves(agg.price, agg.quantity, agg.offsets)  # the sum is itself a valid curve
    for p in eval_points(c):
        for side in ("left", "right"):
            direct = np.bincount(group, quantity_at(c, p, side), minlength=ng)
            np.testing.assert_allclose(quantity_at(agg, p, side), direct, atol=1e-9)


def test_aggregate_of_blocks_by_hand() -> None:
    c = block_curves([0.3, 0.1, 0.2], [10, -10, 5])
    agg = aggregate(c)
    np.testing.assert_array_equal(agg.price, [0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
    np.testing.assert_array_equal(agg.quantity, [15, 5, 5, 0, 0, -10])


def test_aggregate_empty_group_is_zero_curve() -> None:
    agg = aggregate(block_curves([0.2], [3.0]), [1], 3)
    assert quantity_at(agg, 0.1).tolist() == [0.0, 3.0, 0.0]


def test_quantity_at_step_sides_and_ramp() -> None:
    c = concat([block_curves([0.2], [4.0]), ramp_curves([0.1], [0.3], [-10.0])])
    np.testing.assert_allclose(quantity_at(c, 0.2, "left"), [4.0, -5.0])
    np.testing.assert_allclose(quantity_at(c, 0.2, "right"), [0.0, -5.0])
    np.testing.assert_allclose(quantity_at(c, [0.0, 0.5]), [4.0, -10.0])


@given(curve_sets(), st.floats(0.5, 20))
def test_clip_equals_clipped_evaluation(c: Curves, limit: float) -> None:
    clipped = clip(c, export_limit=limit / 2, import_limit=limit)
    for p in eval_points(c):
        np.testing.assert_allclose(
            quantity_at(clipped, p), np.clip(quantity_at(c, p), -limit / 2, limit), atol=1e-9
        )


def test_clip_inserts_crossing_of_a_ramp() -> None:
    clipped = clip(ramp_curves([0.1], [0.3], [10.0]), 0.0, 4.0)
    np.testing.assert_allclose(clipped.price, [0.1, 0.22, 0.3])
    np.testing.assert_allclose(clipped.quantity, [4.0, 4.0, 0.0])


def test_clip_rejects_negative_limit() -> None:
    with pytest.raises(InvalidCurveError, match="≥ 0"):
        clip(block_curves([0.1], [1.0]), -1.0, 2.0)


@given(curve_sets())
def test_split_sides_partition_the_curve(c: Curves) -> None:
    buys, sells = split_sides(c)
    for p in eval_points(c):
        b, s = quantity_at(buys, p), quantity_at(sells, p)
        assert (b >= 0).all() and (s <= 0).all()
        np.testing.assert_allclose(b + s, quantity_at(c, p), atol=1e-12)


@given(curve_sets(max_curves=1), st.floats(-12, 12))
def test_price_at_returns_a_price_where_the_curve_takes_the_quantity(c: Curves, q: float) -> None:
    p = price_at(c, q, FLOOR, CAP)[0]
    lo_q = quantity_at(c, FLOOR, "left")[0]
    hi_q = quantity_at(c, CAP, "right")[0]
    if not hi_q - 1e-9 <= q <= lo_q + 1e-9:
        assert np.isnan(p)  # not reachable within [floor, cap]
        return
    assert FLOOR <= p <= CAP
    assert quantity_at(c, p, "right")[0] - 1e-9 <= q <= quantity_at(c, p, "left")[0] + 1e-9


def test_price_interval_of_flat_part_is_its_extent_and_price_is_midpoint() -> None:
    c = aggregate(block_curves([0.3, 0.1], [10.0, -10.0]))  # net 0 between 0.1 and 0.3
    a, b = price_interval(c, 0.0, FLOOR, CAP)
    assert (a[0], b[0]) == (0.1, 0.3)
    assert price_at(c, 0.0, FLOOR, CAP)[0] == pytest.approx(0.2)


@given(curve_sets(max_curves=1), prices, prices)
def test_integrate_matches_quadrature(c: Curves, lo: float, hi: float) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    kinks = [p for p in c.price if lo < p < hi]
    expected = quad(lambda p: quantity_at(c, p)[0], lo, hi, points=kinks or None, limit=200)[0]
    assert integrate(c, lo, hi)[0] == pytest.approx(expected, abs=1e-7)


def test_dispatch_shares_marginal_steps_pro_rata() -> None:
    c = block_curves([0.2, 0.2, 0.3, 0.1], [6.0, 2.0, 5.0, 4.0])
    # At 0.2: the 0.3 bid takes 5 in full; 3 kW left for 8 kW of marginal steps.
    got = dispatch(c, 0.2, 8.0)
    np.testing.assert_allclose(got, [2.25, 0.75, 5.0, 0.0])


def test_batched_reads_equal_one_by_one() -> None:
    rng = np.random.default_rng(1)
    c = block_curves(rng.uniform(0, 1, 50), rng.uniform(-5, 5, 50))
    p = rng.uniform(0, 1, 50)
    batched = quantity_at(c, p)
    single = [
        quantity_at(block_curves([c.take(i)[0][0]], [c.take(i)[1].sum()]), p[i])[0]
        for i in range(50)
    ]
    np.testing.assert_allclose(batched, single)


@pytest.mark.parametrize(
    ("price", "quantity", "message"),
    [
        ([[0.1, np.nan]], [[1.0, 0.0]], "curve 0: NaN"),
        ([[0.1, 0.2]], [[1.0, np.inf]], "curve 0: NaN or infinite"),
        ([[0.3, 0.2]], [[1.0, 0.0]], "prices must not decrease"),
        ([[0.1, 0.2]], [[0.0, 1.0]], "must not increase"),
    ],
)
def test_invalid_curves_are_rejected_with_their_index(price, quantity, message) -> None:
    with pytest.raises(InvalidCurveError, match=message) as err:
        curves_from_arrays(price, quantity)
    assert err.value.index == 0
    assert isinstance(err.value, ValueError)


def test_second_curve_is_named() -> None:
    with pytest.raises(InvalidCurveError, match="curve 1") as err:
        curves_from_arrays([[0.1, 0.2], [0.2, 0.1]], [[1.0, 0.0], [1.0, 0.0]])
    assert err.value.index == 1


def test_price_interval_where_a_ramp_ends_on_a_step_is_that_price() -> None:
    # 0.3 + (0.9 − 0.3) rounds to 0.8999…; the crossing must still be exactly 0.9.
    c = aggregate(concat([ramp_curves([0.3], [0.9], [1.0]), block_curves([0.9], [-1.0])]))
    a, b = price_interval(c, 0.0, FLOOR, CAP)
    assert (a[0], b[0]) == (0.9, 0.9)


def test_a_flat_group_keeps_its_curves_price() -> None:
    agg = aggregate(curves_from_arrays([[0.5], [0.5]], [[1.0], [2.0]]))
    assert agg.price.tolist() == [0.5] and agg.quantity.tolist() == [3.0]


def test_close_adds_price_taking_steps_at_the_limits() -> None:
    from transactive.core.curves import close

    c = close(curves_from_arrays([[0.2, 0.4], [0.2, 0.4]], [[5.0, 2.0], [-1.0, -3.0]]), 0.0, 1.0)
    np.testing.assert_allclose(quantity_at(c, [0.99, 0.01]), [2.0, -1.0])  # unchanged inside
    np.testing.assert_allclose(quantity_at(c, [1.0, 0.0], "right"), [0.0, -1.0])
    np.testing.assert_allclose(quantity_at(c, [1.5, -0.5]), [0.0, 0.0])  # closed outside
