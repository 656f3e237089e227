"""P2P matching: preferences and price limits honoured, welfare equal to an independent LP,
equilibrium prices, monotone welfare, network charges, the DSO's AC curtailment, order files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from transactive.errors import InvalidInputError
from transactive.grid import Limits, load_feeder
from transactive.grid.limits import check_limits
from transactive.grid.model import Injections, feeder_sections, path_to_substation
from transactive.grid.powerflow import PowerFlow
from transactive.market.p2p import (
    NetworkCharge,
    Orders,
    branch_hops,
    clear_p2p,
    compatible_pairs,
    make_orders,
    match,
    parse_network_charge,
    read_orders,
)

PARTICIPANTS = ["a", "b", "c", "d", "e"]


@st.composite
def books(draw: st.DrawFn, min_orders: int = 2, max_orders: int = 9) -> Orders:
    """Small random books: 1–2 intervals, 5 participants in 2 sections, random preferences."""
    n = draw(st.integers(min_orders, max_orders))
    buy = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    who = np.array(draw(st.lists(st.sampled_from(PARTICIPANTS), min_size=n, max_size=n)))
    kwh = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), dtype=float)
    cents = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    flags = [draw(st.lists(st.booleans(), min_size=n, max_size=n)) for _ in range(3)]
    cp = np.array(draw(st.lists(st.sampled_from(["", "", "", *PARTICIPANTS]), min_size=n,
                                max_size=n)))  # fmt: skip
    cp = np.where(cp == who, "", cp)
    return make_orders(
        [f"o{i}" for i in range(n)],
        who,
        buy,
        kwh,
        np.array(cents) / 100,
        bus=[f"bus-{p}" for p in who],
        section=[PARTICIPANTS.index(p) % 2 for p in who],
        local_only=flags[0],
        green_only=np.array(flags[1]) & buy,
        green=np.array(flags[2]) & ~buy,
        counterparty=cp,
        interval=draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
    )


def compatible(o: Orders, i: int, j: int) -> bool:
    """Reference predicate, order by order (independent of the vectorised pair builder)."""
    if not (o.buy[i] and not o.buy[j]) or o.interval[i] != o.interval[j]:
        return False
    if o.participant[i] == o.participant[j]:
        return False
    if (o.local_only[i] or o.local_only[j]) and o.section[i] != o.section[j]:
        return False
    if o.green_only[i] and not o.green[j]:
        return False
    if o.counterparty[i] and o.counterparty[i] != o.participant[j]:
        return False
    return not (o.counterparty[j] and o.counterparty[j] != o.participant[i])


def linprog_welfare(o: Orders, rate: float) -> float:
    """The same optimum by scipy's HiGHS interface on pairs built by a double loop."""
    pairs = [(i, j) for i in range(o.n) for j in range(o.n) if compatible(o, i, j)]
    if not pairs:
        return 0.0
    w = np.array([o.price[i] - o.price[j] - rate for i, j in pairs])
    A = np.zeros((o.n, len(pairs)))
    for k, (i, j) in enumerate(pairs):
        A[i, k] = A[j, k] = 1.0
    res = linprog(-w, A_ub=A, b_ub=o.kwh, bounds=(0, None), method="highs")
    assert res.status == 0
    return float(-res.fun)


def index_of(o: Orders) -> dict[str, int]:
    return {str(k): i for i, k in enumerate(o.order_id)}


@given(books(), st.sampled_from([0.0, 0.01, 0.03]))
def test_trades_honour_preferences_limits_and_quantities(o: Orders, rate: float) -> None:
    r = clear_p2p(o, NetworkCharge("flat", rate))
    tr = r.trades
    idx = index_of(o)
    bi = np.array([idx[k] for k in tr["buyer_order"]], dtype=np.int64)
    sj = np.array([idx[k] for k in tr["seller_order"]], dtype=np.int64)
    for i, j in zip(bi, sj, strict=True):
        assert compatible(o, int(i), int(j))
    assert (tr["kwh"] > 0).all()
    # nobody pays more than its limit or sells below it; buyer's price = seller's + charge
    assert (tr["buyer_price"] <= o.price[bi] + 1e-9).all()
    assert (tr["price"] >= o.price[sj] - 1e-9).all()
    assert np.allclose(tr["buyer_price"], tr["price"] + rate)
    traded = np.bincount(bi, tr["kwh"], o.n) + np.bincount(sj, tr["kwh"], o.n)
    assert (traded <= o.kwh + 1e-7).all()
    assert r.welfare == pytest.approx(
        float(np.sum((o.price[bi] - o.price[sj] - rate) * tr["kwh"])), abs=1e-7
    )


@given(books(), st.sampled_from([0.0, 0.02]))
def test_welfare_equals_an_independent_lp(o: Orders, rate: float) -> None:
    m = match(o, NetworkCharge("flat", rate))
    assert m.welfare == pytest.approx(linprog_welfare(o, rate), abs=1e-7)


@given(books(max_orders=7))
def test_brute_force_on_unit_books(o: Orders) -> None:
    """With every order 1 kWh the LP is an assignment problem with integral vertices:
    its optimum equals the best matching found by enumerating all of them."""
    o = make_orders(o.order_id, o.participant, o.buy, 1.0, o.price, bus=o.bus,
                    section=o.section, local_only=o.local_only, green_only=o.green_only,
                    green=o.green, counterparty=o.counterparty, interval=o.interval)  # fmt: skip
    pairs = [(i, j) for i in range(o.n) for j in range(o.n) if compatible(o, i, j)]
    w = {p: o.price[p[0]] - o.price[p[1]] for p in pairs}

    def best(k: int, used: frozenset[int]) -> float:
        if k == len(pairs):
            return 0.0
        skip = best(k + 1, used)
        i, j = pairs[k]
        if i in used or j in used or w[pairs[k]] <= 0:
            return skip
        return max(skip, w[pairs[k]] + best(k + 1, used | {i, j}))

    assert match(o).welfare == pytest.approx(best(0, frozenset()), abs=1e-9)


@given(books(), st.sampled_from([0.0, 0.02]))
def test_prices_are_a_competitive_equilibrium(o: Orders, rate: float) -> None:
    """Duals u, v ≥ 0 cover every compatible pair's gain (no buyer finds a cheaper
    compatible seller at the posted prices) and split it exactly on traded pairs."""
    m = match(o, NetworkCharge("flat", rate))
    bi, sj = compatible_pairs(o)
    gain = o.price[bi] - o.price[sj] - rate
    assert (m.dual >= 0).all()
    assert (m.dual[bi] + m.dual[sj] >= gain - 1e-7).all()
    t = m.x > 0
    split = m.dual[m.buyer] + m.dual[m.seller]
    assert np.allclose(split[t], (o.price[m.buyer] - o.price[m.seller] - m.charge)[t], atol=1e-7)
    # an order with kWh left over keeps no surplus
    left = o.kwh - np.bincount(m.buyer, m.x, o.n) - np.bincount(m.seller, m.x, o.n)
    assert np.all(m.dual[left > 1e-7] <= 1e-7)


@given(books(max_orders=7), st.data())
def test_adding_a_compatible_order_never_lowers_welfare(o: Orders, data: st.DataObject) -> None:
    before = match(o).welfare
    buy = data.draw(st.booleans())
    extra = make_orders(
        [*o.order_id, "new"],
        [*o.participant, data.draw(st.sampled_from(PARTICIPANTS))],
        [*o.buy, buy],
        [*o.kwh, data.draw(st.integers(0, 20))],
        [*o.price, data.draw(st.integers(0, 40)) / 100],
        section=[*o.section, data.draw(st.integers(0, 1))],
        local_only=[*o.local_only, data.draw(st.booleans())],
        green_only=[*o.green_only, buy and data.draw(st.booleans())],
        green=[*o.green, (not buy) and data.draw(st.booleans())],
        counterparty=[*o.counterparty, ""],
        interval=[*o.interval, data.draw(st.integers(0, 1))],
        bus=[*o.bus, "bus-new"],
    )
    assert match(extra).welfare >= before - 1e-9


def test_small_book_by_hand() -> None:
    """Two buyers, two sellers, 0.02 network charge: the cheap seller sells out, the
    dearer one has kWh left and sets the price (0.20 + 0.02 all-in)."""
    o = make_orders(["b1", "b2", "s1", "s2"], ["h1", "h2", "h3", "h4"],
                    [True, True, False, False], [5, 3, 4, 6], [0.30, 0.25, 0.10, 0.20])  # fmt: skip
    r = clear_p2p(o, NetworkCharge("flat", 0.02))
    assert r.welfare == pytest.approx(0.89)
    assert r.trades["kwh"].sum() == pytest.approx(8.0)
    assert np.allclose(r.trades["price"], 0.20)
    assert np.allclose(r.trades["buyer_price"], 0.22)


def test_preferences_exclude_pairs() -> None:
    o = make_orders(
        ["b-green", "b-local", "b-named", "s-grey", "s-green", "s-far"],
        ["g", "l", "n", "x", "y", "z"],
        [True, True, True, False, False, False],
        5.0,
        [0.3, 0.3, 0.3, 0.05, 0.05, 0.05],
        section=[0, 0, 0, 0, 0, 1],
        local_only=[False, True, False, False, False, False],
        green_only=[True, False, False, False, False, False],
        green=[False, False, False, False, True, True],
        counterparty=["", "", "z", "", "", ""],
    )
    bi, sj = compatible_pairs(o)
    got = {(str(o.order_id[i]), str(o.order_id[j])) for i, j in zip(bi, sj, strict=True)}
    assert got == {
        ("b-green", "s-green"),
        ("b-green", "s-far"),
        ("b-local", "s-grey"),
        ("b-local", "s-green"),
        ("b-named", "s-far"),
    }


# -- network charge and the DSO ----------------------------------------------------------
@pytest.fixture(scope="module")
def cigre() -> object:
    return load_feeder("pandapower:cigre_lv")


def test_branch_hops_match_paths_to_the_substation(cigre: object) -> None:
    f = cigre
    n = f.n_bus  # type: ignore[attr-defined]
    a, b = np.meshgrid(np.arange(n), np.arange(n))
    hops = branch_hops(f, a.ravel(), b.ravel())  # type: ignore[arg-type]
    for x, y, h in zip(a.ravel()[::37], b.ravel()[::37], hops[::37], strict=True):
        px = set(path_to_substation(f, int(x))[1].tolist())  # type: ignore[arg-type]
        py = set(path_to_substation(f, int(y))[1].tolist())  # type: ignore[arg-type]
        assert h == len(px ^ py)  # the branches on exactly one of the two paths


def test_distance_charge_is_rate_times_branches(cigre: object) -> None:
    o = make_orders(["b", "s"], ["p", "q"], [True, False], 1.0, [0.5, 0.0],
                    bus=["Bus R18", "Bus C20"])  # fmt: skip
    m = match(o, NetworkCharge("distance", 0.01), cigre)  # type: ignore[arg-type]
    f = cigre
    hops = len(
        set(path_to_substation(f, "Bus R18")[1]) ^ set(path_to_substation(f, "Bus C20")[1])  # type: ignore[arg-type]
    )
    assert m.charge[0] == pytest.approx(0.01 * hops)
    with pytest.raises(InvalidInputError, match="needs a feeder"):
        match(o, NetworkCharge("distance", 0.01))


def big_trades(f: object) -> Orders:
    buses = ["Bus R18", "Bus R15", "Bus C14", "Bus I2", "Bus C20"]
    sec = feeder_sections(f).section_of_bus[[f.bus_index(b) for b in buses]]  # type: ignore[attr-defined,arg-type]
    return make_orders(["s1", "s2", "b1", "b2", "b3"], ["p1", "p2", "p3", "p4", "p5"],
                       [False, False, True, True, True], [150, 60, 120, 80, 40],
                       [0.05, 0.06, 0.3, 0.25, 0.2], bus=buses, section=sec)  # fmt: skip


def ac_violations(f: object, o: Orders, tr: object, limits: Limits) -> int:
    """Independent AC check of a trades table: injections by bus name, power flow, limits."""
    p = np.zeros((1, f.n_bus))  # type: ignore[attr-defined]
    for r in tr.itertuples():  # type: ignore[attr-defined]
        p[0, f.bus_index(r.buyer_bus)] += r.kwh  # type: ignore[attr-defined]
        p[0, f.bus_index(r.seller_bus)] -= r.kwh  # type: ignore[attr-defined]
    res = PowerFlow(f).run(Injections(p, np.zeros_like(p)))  # type: ignore[arg-type]
    return len(check_limits(f, res, limits))  # type: ignore[arg-type]


def test_dso_curtails_an_infeasible_trade_set_to_feasibility(cigre: object) -> None:
    f, limits = cigre, Limits()
    o = big_trades(f)
    free = clear_p2p(o, NetworkCharge("flat", 0.01))
    assert ac_violations(f, o, free.trades, limits) > 0  # the unchecked trades violate
    r = clear_p2p(o, NetworkCharge("flat", 0.01), f, limits)  # type: ignore[arg-type]
    assert r.dso is not None and r.dso.feasible and len(r.dso.violations) == 0
    assert ac_violations(f, o, r.trades[r.trades["kwh"] > 0], limits) == 0
    assert r.welfare < r.welfare_unconstrained == pytest.approx(free.welfare)
    cut = r.trades[r.trades["status"] != "matched"]
    assert len(cut) and (cut["reason"].str.contains("voltage|overload")).all()
    assert (r.trades["buyer_price"].dropna() <= 0.3 + 1e-9).all()


def test_dso_leaves_a_feasible_set_alone(cigre: object) -> None:
    f = cigre
    o = make_orders(["b", "s"], ["p", "q"], [True, False], 3.0, [0.3, 0.1],
                    bus=["Bus R11", "Bus R15"], section=0)  # fmt: skip
    r = clear_p2p(o, NetworkCharge("flat", 0.0), f)  # type: ignore[arg-type]
    assert r.dso is not None and r.dso.feasible and r.dso.rounds == 0
    assert (r.trades["status"] == "matched").all() and r.trades["kwh"].sum() == 3.0


# -- order files -------------------------------------------------------------------------
HEADER = "order_id,participant,side,kwh,price,bus,local_only,green_only,green,counterparty\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "orders.csv"
    p.write_text(header + body)
    return p


def test_read_example_orders() -> None:
    path = Path(__file__).parents[2] / "examples" / "p2p" / "orders.csv"
    o = read_orders(path)
    assert o.n == 12 and o.interval_start is not None and len(o.interval_start) == 2
    assert o.green[2 - 2] and o.green_only[4] and o.counterparty[7] == "home-r18"


@pytest.mark.parametrize(
    ("body", "header", "where"),
    [
        ("o1,p,hold,1,0.1,,,,,\n", HEADER, r"orders.csv:2: column 'side'"),
        ("o1,p,buy,-1,0.1,,,,,\n", HEADER, r"orders.csv:2: column 'kwh'"),
        ("o1,p,buy,1,x,,,,,\n", HEADER, r"orders.csv:2: column 'price'"),
        ("o1,p,buy,1,0.1,,,,,\no1,q,sell,1,0.1,,,,,\n", HEADER, r"orders.csv:3: column 'order_id'"),
        ("o1,p,sell,1,0.1,,,true,,\n", HEADER, r"orders.csv:2: column 'green_only'"),
        ("o1,p,buy,1,0.1,,,,maybe,\n", HEADER, r"orders.csv:2: column 'green'"),
        ("o1,p,buy,1,0.1,,,,,p\n", HEADER, r"orders.csv:2: column 'counterparty'"),
        ("o1,p,buy,1,0.1,,true,,,\n", HEADER, r"orders.csv:2: column 'local_only'"),
        ("o1,p,buy,1\n", HEADER, r"orders.csv:2: 4 fields"),
        (
            "o1,p,buy,1,0.1\n",
            "order_id,participant,side,kwh,cost\n",
            r"orders.csv:1: column 'cost'",
        ),
    ],
)
def test_bad_order_rows_name_line_and_column(
    tmp_path: Path, body: str, header: str, where: str
) -> None:
    with pytest.raises(InvalidInputError, match=where):
        read_orders(write(tmp_path, body, header))


def test_unknown_bus_on_the_feeder(tmp_path: Path, cigre: object) -> None:
    p = write(tmp_path, "o1,p,buy,1,0.1,Bus R1,,,,\no2,q,sell,1,0.1,Bus X9,,,,\n")
    with pytest.raises(InvalidInputError, match=r"orders.csv:3: column 'bus': unknown bus"):
        read_orders(p, cigre)  # type: ignore[arg-type]


def test_feeder_sets_sections(tmp_path: Path, cigre: object) -> None:
    p = write(tmp_path, "b,p,buy,1,0.3,Bus R11,true,,,\ns,q,sell,1,0.1,Bus C12,,,,\n")
    o = read_orders(p, cigre)  # type: ignore[arg-type]
    assert o.section[0] != o.section[1]
    assert match(o).welfare == 0.0  # local_only: different sections never trade


@pytest.mark.parametrize("text", ["flat", "flat:x", "distance:-1", "zonal:0.1", "flat:nan"])
def test_bad_network_charge(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_network_charge(text)


def test_make_orders_errors() -> None:
    with pytest.raises(InvalidInputError, match=r"'o2'.*duplicate"):
        make_orders(["o1", "o2", "o2"], "p", True, 1.0, 0.1)
    with pytest.raises(InvalidInputError, match="names itself"):
        make_orders(["o1"], "p", True, 1.0, 0.1, counterparty="p")


@settings(max_examples=30)
@given(books(min_orders=6, max_orders=9))
def test_matching_is_order_independent(o: Orders) -> None:
    """A call market: shuffling the book does not change the welfare."""
    perm = np.random.default_rng(0).permutation(o.n)
    shuffled = make_orders(o.order_id[perm], o.participant[perm], o.buy[perm], o.kwh[perm],
                           o.price[perm], bus=o.bus[perm], section=o.section[perm],
                           local_only=o.local_only[perm], green_only=o.green_only[perm],
                           green=o.green[perm], counterparty=o.counterparty[perm],
                           interval=o.interval[perm])  # fmt: skip
    assert match(shuffled).welfare == pytest.approx(match(o).welfare, abs=1e-9)
