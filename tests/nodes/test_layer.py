"""Node layers: offer = clipped sum of children; pass_down splits the award exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.core.curves import block_curves, concat, quantity_at, ramp_curves
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes.layer import make_layer, offer, pass_down

FLOOR, CAP = 0.0, 1.0


def test_import_limit_binds_and_highest_value_children_keep_the_energy() -> None:
    dev = concat([block_curves([0.3, 0.2, 0.1], [6, 4, 3]), block_curves([0.05], [-5])])
    layer = make_layer([0, 0, 0, 1], 2, import_limit=[8, 10], export_limit=[0, 4])
    up = offer(layer, dev)
    award = quantity_at(up, 0.15)  # the parent's price is 0.15 $/kWh
    np.testing.assert_allclose(award, [8.0, -4.0])  # both nodes at their limits
    internal, child = pass_down(layer, dev, award, FLOOR, CAP)
    # Node 0 imports 8 kW, so its internal price rises to 0.2: the 0.3 bid is served in
    # full, the 0.2 bid shares the rest, the 0.1 bid gets nothing.
    np.testing.assert_allclose(internal, [0.2, 0.05])
    np.testing.assert_allclose(child, [6.0, 2.0, 0.0, -4.0])


def test_unconstrained_node_passes_the_parent_price_down() -> None:
    dev = concat([ramp_curves([0.1], [0.3], [10.0]), block_curves([0.15], [-4.0])])
    layer = make_layer([0, 0], 1)
    award = quantity_at(offer(layer, dev), 0.2)
    internal, child = pass_down(layer, dev, award, FLOOR, CAP)
    assert internal[0] == pytest.approx(0.2)
    np.testing.assert_allclose(child, quantity_at(dev, 0.2))


@st.composite
def fleets(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 10))
    nodes = draw(st.integers(1, 3))
    prices = st.integers(0, 10).map(lambda i: i / 10)
    parts = []
    for _ in range(n):
        if draw(st.booleans()):
            parts.append(block_curves([draw(prices)], [draw(st.integers(-5, 5))]))
        else:
            lo, hi = sorted([draw(prices), draw(prices)])
            parts.append(ramp_curves([lo], [hi], [draw(st.integers(-5, 5))]))
    parent = draw(st.lists(st.integers(0, nodes - 1), min_size=n, max_size=n))
    limits = draw(st.lists(st.integers(0, 12), min_size=nodes, max_size=nodes))
    return concat(parts), np.array(parent), nodes, np.array(limits, float), draw(prices)


@given(fleets())
def test_pass_down_conserves_energy_and_respects_children_curves(case: tuple) -> None:
    dev, parent, nodes, limit, price = case
    layer = make_layer(parent, nodes, import_limit=limit, export_limit=limit / 2)
    up = offer(layer, dev)
    for p in np.unique(np.concatenate([up.price, [FLOOR, CAP, price]])):
        assert (quantity_at(up, p) <= limit + 1e-9).all()
        assert (quantity_at(up, p) >= -limit / 2 - 1e-9).all()
    award = quantity_at(up, price)
    internal, child = pass_down(layer, dev, award, FLOOR, CAP)
    np.testing.assert_allclose(np.bincount(parent, child, minlength=nodes), award, atol=1e-9)
    # Each child is on its own curve at its node's internal price.
    p = internal[parent]
    assert (child <= quantity_at(dev, p, "left") + 1e-9).all()
    assert (child >= quantity_at(dev, p, "right") - 1e-9).all()


def test_award_children_cannot_take_is_a_balance_error() -> None:
    layer = make_layer([0], 1)
    with pytest.raises(BalanceError, match="node 0"):
        pass_down(layer, block_curves([0.2], [3.0]), [5.0], FLOOR, CAP)


def test_bad_layers_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        make_layer([0, 2], 2)
    with pytest.raises(InvalidInputError, match="import_limit"):
        make_layer([0], 1, import_limit=-1.0)
    with pytest.raises(InvalidInputError, match="child curves"):
        offer(make_layer([0, 0], 1), block_curves([0.1], [1.0]))
