"""The node tree: offer-up and pass-down over several levels and areas, balance at every node,
and the privacy model (a node receives only its own children's curves)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.curves import (
    Curves,
    aggregate,
    block_curves,
    clip,
    concat,
    quantity_at,
    ramp_curves,
    select,
)
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes.tree import (
    Kind,
    Plan,
    TreeBuilder,
    make_plan,
    offer_up,
    pass_down,
    roll_up,
)
from transactive.nodes.wholesale import clear_wholesale, read_merit_order

FLOOR, CAP = -0.1, 2.0


def three_area_tree(sub_limit: float = np.inf) -> tuple[Plan, Curves, dict[str, int]]:
    """TSO → 3 DSO areas → 2 feeders each → 3 homes per feeder, and one aggregator whose
    portfolio spans feeders f0 and f1 of area a0 (one located node per feeder)."""
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    homes = []
    for a in range(3):
        dso = f"dso:a{a}"
        b.add(dso, Kind.DSO, "tso", dso, area=a, import_limit=sub_limit, export_limit=sub_limit)
        for f in range(2):
            feeder = f"feeder:a{a}/f{f}"
            b.add(
                feeder, Kind.FEEDER, dso, dso, area=a, bus=f, import_limit=30.0, export_limit=30.0
            )
            for h in range(3):
                hid = f"home:a{a}/f{f}/{h}"
                homes.append(
                    b.add(
                        hid,
                        Kind.HOME,
                        feeder,
                        hid,
                        area=a,
                        bus=10 * f + h,
                        import_limit=12.0,
                        export_limit=12.0,
                    )
                )
    agg = [
        b.add(f"agg:vpp/a0/f{f}", Kind.AGGREGATOR, f"feeder:a0/f{f}", "agg:vpp", area=0, bus=10 * f)
        for f in range(2)
    ]
    tree = b.build()
    # Devices: per home a must-run load, an EV block and a PV seller; two batteries per
    # aggregator node.
    rng = np.random.default_rng(3)
    curves, node = [], []
    for h in homes:
        curves += [
            block_curves([CAP], [rng.uniform(0.5, 2.0)]),
            block_curves([rng.uniform(0.05, 0.4)], [7.2]),
            block_curves([rng.uniform(-0.05, 0.05)], [-rng.uniform(1.0, 6.0)]),
        ]
        node += [h, h, h]
    for g in agg:
        for _ in range(2):
            curves.append(ramp_curves([0.05], [0.3], [5.0]))
            node.append(g)
    plan = make_plan(tree, np.array(node))
    return plan, concat(curves), {"agg0": agg[0], "agg1": agg[1]}


def test_three_areas_offer_up_pass_down_balance_and_privacy() -> None:
    plan, devices, idx = three_area_tree(sub_limit=45.0)
    tree = plan.tree
    offered = offer_up(plan, devices)
    # Every node's curve is its children's curves summed and clipped (checked at every price
    # of a grid against a direct evaluation), and it received exactly its children's curves.
    prices = np.linspace(FLOOR, CAP, 41)
    for i in range(tree.n):
        kids = [str(x) for x in tree.id[tree.children(i)]]
        devs = [f"device:{k}" for k in np.flatnonzero(plan.device_node == i)]
        assert sorted(offered.received(i)) == sorted(devs + kids)
        parts = [select(offered.curves, tree.children(i))] if kids else []
        if devs:
            parts.append(select(devices, np.flatnonzero(plan.device_node == i)))
        direct = clip(
            aggregate(concat(parts), np.zeros(sum(p.n for p in parts), dtype=np.int64), 1),
            tree.export_limit[i],
            tree.import_limit[i],
        )
        got = select(offered.curves, [i])
        for p in prices:
            assert quantity_at(got, p)[0] == pytest.approx(quantity_at(direct, p)[0], abs=1e-9)
    # The TSO clears the three areas' sum against a merit order; the result flows down.
    source = read_merit_order(np.array([400.0]), scale_kw=600.0)
    lam, q = clear_wholesale(select(offered.curves, [0]), source, FLOOR, CAP)
    award, price = np.full(tree.n, np.nan), np.full(tree.n, np.nan)
    award[0], price[0] = q[0], lam[0]
    down = pass_down(offered, award, price, FLOOR, CAP)
    # Energy balance at every node: its award = its devices' awards + its child nodes' awards.
    for i in range(tree.n):
        mine = down.device_kw[plan.device_node == i].sum() + down.node_kw[tree.children(i)].sum()
        assert mine == pytest.approx(down.node_kw[i], abs=1e-6)
        assert -tree.export_limit[i] - 1e-9 <= down.node_kw[i] <= tree.import_limit[i] + 1e-9
    np.testing.assert_allclose(roll_up(plan, down.device_kw), down.node_kw, atol=1e-6)
    # Each device got what its curve takes at its node's internal price (within the step).
    internal = down.internal_price[plan.device_node]
    lo = quantity_at(devices, internal, side="right")
    hi = quantity_at(devices, internal, side="left")
    assert np.all(lo - 1e-9 <= down.device_kw) and np.all(down.device_kw <= hi + 1e-9)
    # The aggregator spans two feeders: one located curve per feeder, each under its feeder.
    a0, a1 = idx["agg0"], idx["agg1"]
    assert tree.owner[a0] == tree.owner[a1] == "agg:vpp"
    assert tree.id[tree.parent[a0]] != tree.id[tree.parent[a1]]


def test_binding_feeder_limit_raises_its_internal_price() -> None:
    plan, devices, _ = three_area_tree()
    tree = plan.tree
    offered = offer_up(plan, devices)
    award, price = np.full(tree.n, np.nan), np.full(tree.n, np.nan)
    award[0] = quantity_at(select(offered.curves, [0]), 0.01)[0]
    price[0] = 0.01
    down = pass_down(offered, award, price, FLOOR, CAP)
    feeders = np.flatnonzero(tree.kind == Kind.FEEDER)
    binding = np.isclose(down.node_kw[feeders], tree.import_limit[feeders])
    assert binding.any()  # at a cheap price every EV wants to charge: 30 kW feeders bind
    assert (down.internal_price[feeders[binding]] > 0.01).all()
    assert np.allclose(down.internal_price[feeders[~binding]], 0.01)


def test_market_can_award_any_set_of_nodes() -> None:
    """A DSO clearing its homes directly (network clearing) passes down from the homes."""
    plan, devices, _ = three_area_tree()
    tree = plan.tree
    offered = offer_up(plan, devices)
    start = np.isin(tree.kind, [Kind.HOME, Kind.AGGREGATOR])
    award, price = np.full(tree.n, np.nan), np.full(tree.n, np.nan)
    price[start] = np.linspace(0.0, 0.5, int(start.sum()))
    award[start] = quantity_at(select(offered.curves, np.flatnonzero(start)), price[start])
    down = pass_down(offered, award, price, FLOOR, CAP)
    assert np.isnan(down.node_kw[~start]).all()
    np.testing.assert_allclose(roll_up(plan, down.device_kw)[start], award[start], atol=1e-9)


def test_award_the_children_cannot_take_is_a_balance_error() -> None:
    plan, devices, _ = three_area_tree()
    offered = offer_up(plan, devices)
    award, price = np.full(plan.tree.n, np.nan), np.full(plan.tree.n, np.nan)
    award[0], price[0] = 1e6, 0.1
    with pytest.raises(BalanceError):
        pass_down(offered, award, price, FLOOR, CAP)


def test_tree_rejects_bad_structure() -> None:
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    with pytest.raises(InvalidInputError, match="not unique"):
        b.add("tso", Kind.DSO, "tso", "x")
    with pytest.raises(InvalidInputError, match="not in the tree"):
        b.add("h", Kind.HOME, "nowhere", "h")
    tree = b.build()
    with pytest.raises(InvalidInputError, match="outside the tree"):
        make_plan(tree, np.array([3]))


@settings(max_examples=40, deadline=None)
@given(
    depth=st.integers(1, 5),
    n_dev=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
    p=st.floats(FLOOR, CAP),
)
def test_any_depth_pass_down_balances(depth: int, n_dev: int, seed: int, p: float) -> None:
    """A random tree of any depth: offer up, award the root its quantity at a price, pass
    down — every node balances and no limit is exceeded."""
    rng = np.random.default_rng(seed)
    b = TreeBuilder()
    b.add("n0", Kind.TSO, None, "o0")
    ids = ["n0"]
    for i in range(1, 3 * depth):
        parent = ids[int(rng.integers(0, len(ids)))]
        lim = float(rng.choice([np.inf, rng.uniform(1, 20)]))
        ids.append(f"n{i}")
        b.add(f"n{i}", Kind.FEEDER, parent, f"o{i}", import_limit=lim, export_limit=lim)
    tree = b.build()
    node = rng.integers(0, tree.n, n_dev)
    devices = block_curves(rng.uniform(FLOOR, CAP, n_dev), rng.uniform(-8, 8, n_dev))
    plan = make_plan(tree, node)
    offered = offer_up(plan, devices)
    award, price = np.full(tree.n, np.nan), np.full(tree.n, np.nan)
    award[0] = quantity_at(select(offered.curves, [0]), p)[0]
    price[0] = p
    down = pass_down(offered, award, price, FLOOR, CAP)
    np.testing.assert_allclose(roll_up(plan, down.device_kw), down.node_kw, atol=1e-6)
    assert np.all(down.node_kw <= tree.import_limit + 1e-6)
    assert np.all(down.node_kw >= -tree.export_limit - 1e-6)
