"""Network-constrained clearing: DLMPs and their decomposition, an independent LP, AC
verification, infeasible cases, storage over a horizon and the clear-network command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest
from scipy.optimize import linprog
from typer.testing import CliRunner

from transactive.cli import app
from transactive.core.curves import concat, curves_from_arrays, ramp_curves
from transactive.errors import InvalidBidError, InvalidInputError, NetworkTopologyError
from transactive.grid import Feeder, Limits, load_feeder, profile_injections
from transactive.grid.feeders import feeder_from_pandapower
from transactive.grid.lindistflow import Verification, radial, verify
from transactive.market import network as nw
from transactive.market._network_problem import _segments
from transactive.market.auction import Book, book_from_blocks, book_from_curves
from transactive.market.network import (
    INFEASIBLE,
    OPTIMAL,
    SHED,
    NetworkClearing,
    StorageFleet,
    clear_network,
)

SIMBENCH = "simbench:1-LV-rural1--0-sw"
#: AC-verification tolerances: voltage band (pu) and loading (%) beyond the limits. The loss
#: iteration stops when LinDistFlow and AC voltages agree within tol_pu = 1e-4 pu; loading
#: is current-based in the AC power flow and the LP limit is 1.9 % inside the circle.
V_TOL = 2e-4
LOADING_TOL = 0.5


@pytest.fixture(scope="module", autouse=True)
def feeder_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh feeder cache directory, so the tests work on a clean machine."""
    old = os.environ.get("TRANSACTIVE_CACHE_DIR")
    os.environ["TRANSACTIVE_CACHE_DIR"] = str(tmp_path_factory.mktemp("network-cache"))
    yield
    if old is None:
        os.environ.pop("TRANSACTIVE_CACHE_DIR", None)
    else:
        os.environ["TRANSACTIVE_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def case33() -> Feeder:
    return load_feeder("pandapower:case33bw")


def toy_feeder(
    parents: list[int],
    r_ohm: float = 0.05,
    x_ohm: float = 0.03,
    max_i_ka: float | list[float] = 0.2,
    vm_pu: float = 1.0,
) -> Feeder:
    """A 0.4 kV radial feeder: bus i hangs below bus ``parents[i]`` (parents[0] is ignored;
    bus 0 is the source)."""
    net = pp.create_empty_network()
    for i in range(len(parents)):
        pp.create_bus(net, 0.4, name=f"b{i}")
    pp.create_ext_grid(net, 0, vm_pu=vm_pu)
    imax = max_i_ka if isinstance(max_i_ka, list) else [max_i_ka] * len(parents)
    for i in range(1, len(parents)):
        pp.create_line_from_parameters(
            net, parents[i], i, 1.0, r_ohm, x_ohm, 0.0, imax[i], name=f"l{i}"
        )
    return feeder_from_pandapower(net, "toy")


TOY = [0, 0, 1, 2, 3, 2, 5, 1]  # main line 0-1-2-3-4, lateral 2-5-6, spur 1-7


def block_book(
    rng: np.random.Generator, n_bus: int, n_bids: int, scale: float, buy_share: float = 0.7
) -> tuple[object, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random block bids at non-source buses: (book, bus, side, price, quantity)."""
    bus = rng.integers(1, n_bus, n_bids)
    side = np.where(rng.random(n_bids) < buy_share, "buy", "sell")
    price = rng.uniform(0.02, 0.6, n_bids)
    qty = rng.uniform(0.2, 1.0, n_bids) * scale
    book = book_from_blocks([f"b{i}" for i in range(n_bids)], side, price, qty)
    return book, bus, side, price, qty


# --- an independent formulation: the branch-flow LP with dense matrices -------------------


def dense_branch_flow_lp(
    feeder: Feeder,
    bus: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    wholesale: float,
    limits: Limits,
    power_factor: float = 1.0,
    fixed: np.ndarray | None = None,
    sides: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Lossless LinDistFlow with explicit per-bus balances, written bus by bus and solved
    with scipy's linprog; returns (DLMP per bus, award per bid). ``fixed``: fixed active
    load per bus (kW)."""
    n = feeder.n_bus
    src = int(feeder.source_buses[0])
    parent = feeder.topology.parent
    branch = feeder.topology.parent_branch
    br = feeder.branches
    nb = len(bus)
    tan = np.sqrt(1 / power_factor**2 - 1)
    # variables: x (bids), P_i, Q_i (flow from the parent into bus i; import at the source),
    # v_i (squared voltage)
    ix = np.arange(nb)
    iP = nb + np.arange(n)
    iQ = nb + n + np.arange(n)
    iv = nb + 2 * n + np.arange(n)
    nv = nb + 3 * n
    c = np.zeros(nv)
    sign = np.where(side == "buy", 1.0, -1.0)  # + consumption
    c[ix] = -sign * price  # buyers' utility, sellers' cost
    c[iP[src]] = wholesale
    A_eq, b_eq = [], []
    fixed = np.zeros(n) if fixed is None else fixed
    for i in range(n):  # active and reactive balance: inflow − outflow − net load = fixed
        for flow, qfac, rhs in ((iP, 1.0, fixed[i]), (iQ, tan, 0.0)):
            row = np.zeros(nv)
            row[flow[i]] = 1.0
            for ch in np.flatnonzero(parent == i):
                row[flow[ch]] = -1.0
            for k in np.flatnonzero(bus == i):
                row[ix[k]] = -sign[k] * qfac
            A_eq.append(row)
            b_eq.append(rhs)
    for i in range(n):  # voltage drop
        row = np.zeros(nv)
        row[iv[i]] = 1.0
        if i == src:
            A_eq.append(row)
            b_eq.append(float(feeder.sources["vm_pu"].iloc[0]) ** 2)
            continue
        b = branch[i]
        row[iv[parent[i]]] = -1.0
        row[iP[i]] = 2 * br["r_pu"].iloc[b] / feeder.base_kva
        row[iQ[i]] = 2 * br["x_pu"].iloc[b] / feeder.base_kva
        A_eq.append(row)
        b_eq.append(0.0)
    A_ub, b_ub = [], []
    theta = 2 * np.pi * np.arange(sides // 2) / sides
    for i in range(n):  # thermal polygon
        if i == src:
            continue
        s = br["rating_kva"].iloc[branch[i]] * limits.max_line_loading_percent / 100
        for th in theta:
            for sgn in (1.0, -1.0):
                row = np.zeros(nv)
                row[iP[i]] = sgn * np.cos(th)
                row[iQ[i]] = sgn * np.sin(th)
                A_ub.append(row)
                b_ub.append(s * np.cos(np.pi / sides))
    bounds = [(0.0, q) for q in qty] + [(None, None)] * (2 * n)
    bounds += [(limits.v_min_pu**2, limits.v_max_pu**2)] * n
    export = limits.max_reverse_flow_kw
    bounds[iP[src]] = (None if export is None else -export, None)
    bounds[iv[src]] = (None, None)
    res = linprog(c, A_ub=np.array(A_ub), b_ub=b_ub, A_eq=np.array(A_eq), b_eq=b_eq, bounds=bounds)
    assert res.status == 0, res.message
    # Marginal of the active balance of bus i w.r.t. a fixed load there (right-hand side).
    dlmp = np.asarray(res.eqlin.marginals)[0 : 2 * n : 2]
    return dlmp, res.x[ix] * sign


CROSS_CASES = [
    (1, Limits(max_reverse_flow_kw=None), 1.0),
    (2, Limits(max_reverse_flow_kw=0.0), 1.0),
    (3, Limits(v_min_pu=0.97, max_reverse_flow_kw=None), 0.95),
    (4, Limits(v_max_pu=1.02, max_reverse_flow_kw=5.0), 0.9),
    (5, Limits(max_line_loading_percent=60.0, max_reverse_flow_kw=None), 1.0),
    (6, Limits(max_reverse_flow_kw=10.0), 1.0),
]
TOY_IMAX = [0.2, 0.2, 0.15, 0.1, 0.08, 0.1, 0.08, 0.1]


def cross_case(seed: int, limits: Limits, pf: float) -> tuple[NetworkClearing, tuple]:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    feeder = toy_feeder(TOY, max_i_ka=TOY_IMAX)
    book, bus, side, price, qty = block_book(rng, feeder.n_bus, 24, 40.0, 0.7 if seed < 6 else 0.2)
    # a small fixed load everywhere keeps the duals unique (no two buses at one voltage)
    fixed = np.r_[0.0, rng.uniform(0.5, 1.5, feeder.n_bus - 1)]
    wholesale = 0.08 if seed < 6 else 0.5  # case 6 exports
    res = clear_network(
        feeder,
        book,
        bus,
        wholesale,
        limits=limits,
        power_factor=pf,
        fixed_load_kw=fixed,
        losses="none",
        loss_iterations=5,
    )
    return res, (feeder, bus, side, price, qty, wholesale, limits, pf, fixed)


@pytest.mark.parametrize(("seed", "limits", "pf"), CROSS_CASES)
def test_dlmps_match_an_independent_branch_flow_lp(seed: int, limits: Limits, pf: float) -> None:
    res, args = cross_case(seed, limits, pf)
    assert res.status[0] == OPTIMAL
    dlmp, awards = dense_branch_flow_lp(*args)
    np.testing.assert_allclose(res.dlmp[0], dlmp, atol=1e-6)
    np.testing.assert_allclose(res.awards, awards, atol=1e-6)
    total = res.energy + res.loss + res.congestion + res.voltage
    np.testing.assert_allclose(total, res.dlmp, atol=1e-9)
    assert np.all(res.loss == 0) and np.all(res.energy == args[5])


def test_the_cross_check_cases_bind_the_network() -> None:
    """The cases above are not trivial: voltage, thermal and export limits bind."""
    seen = set()
    for case in CROSS_CASES:
        res, _ = cross_case(*case)
        if np.abs(res.voltage).max() > 1e-6:
            seen.add("voltage")
        src_congestion = res.congestion[0, 0]
        if abs(src_congestion) > 1e-6:
            seen.add("export")
        if np.abs(res.congestion[0, 1:] - src_congestion).max() > 1e-6:
            seen.add("thermal")
    assert seen == {"voltage", "export", "thermal"}


def test_no_binding_constraint_prices_every_bus_at_the_substation(case33: Feeder) -> None:
    loads = case33.loads
    book = book_from_blocks(
        [f"L{i}" for i in range(len(loads))],
        ["buy"] * len(loads),
        np.full(len(loads), 0.3),
        loads["p_kw"].to_numpy() * 0.3,
    )
    lossless = clear_network(
        case33,
        book,
        loads["bus"].to_numpy(),
        0.07,
        losses="none",
        limits=Limits(),
        loss_iterations=5,
    )
    assert lossless.status[0] == OPTIMAL
    np.testing.assert_allclose(lossless.dlmp, 0.07, atol=1e-12)
    for part in (lossless.loss, lossless.congestion, lossless.voltage):
        np.testing.assert_allclose(part, 0.0, atol=1e-12)

    lossy = clear_network(
        case33, book, loads["bus"].to_numpy(), 0.07, limits=Limits(), loss_iterations=5
    )
    assert lossy.converged and lossy.status[0] == OPTIMAL
    np.testing.assert_allclose(lossy.energy, 0.07)
    np.testing.assert_allclose(lossy.congestion, 0.0, atol=1e-12)
    np.testing.assert_allclose(lossy.voltage, 0.0, atol=1e-12)
    np.testing.assert_allclose(lossy.dlmp, lossy.energy + lossy.loss, atol=1e-12)
    src = int(case33.source_buses[0])
    assert lossy.loss[0, src] == 0 and (np.delete(lossy.loss[0], src) > 0).all()
    # the end of the long main feeder pays the most for losses
    assert np.argmax(lossy.loss[0]) in (16, 17)
    # and the LP's losses match the AC losses of the dispatch
    check = verify(case33, lossy.net_load_kw, lossy.net_load_kvar, lossy.voltage_pu, Limits())
    assert lossy.losses_kw[0] == pytest.approx(check.ac.losses_kw[0], rel=1e-3)
    # the loss iteration's own gap is the one an independent AC check measures
    assert lossy.voltage_error_pu is not None
    np.testing.assert_allclose(lossy.voltage_error_pu, check.voltage_error_pu, atol=1e-12)


def _check_ac(feeder: Feeder, res: NetworkClearing, limits: Limits) -> Verification:
    """No AC voltage or thermal violation beyond the documented tolerances."""
    assert res.converged
    check = verify(feeder, res.net_load_kw, res.net_load_kvar, res.voltage_pu, limits)
    v = check.violations
    volt = v[v["kind"].isin(["undervoltage", "overvoltage"])]
    therm = v[v["kind"].isin(["line_overload", "trafo_overload"])]
    assert (volt["magnitude"] <= V_TOL).all(), volt
    assert (therm["magnitude"] <= LOADING_TOL).all(), therm
    assert res.max_voltage_error_pu <= 1e-4
    assert check.max_voltage_error_pu <= 1e-4
    return check


def case33_book(case33: Feeder) -> tuple[Book, np.ndarray]:
    """Price-responsive ramps at every load (1.4× nominal) and four PV sellers."""
    rng = np.random.default_rng(7)
    loads = case33.loads
    n = len(loads)
    ramps = ramp_curves(rng.uniform(0.05, 0.2, n), rng.uniform(0.3, 0.8, n), loads["p_kw"] * 1.4)
    pv = curves_from_arrays(np.tile([0.0, 0.04], (4, 1)), np.tile([0.0, -300.0], (4, 1)))
    book = book_from_curves(
        [f"L{i}" for i in range(n)] + [f"PV{i}" for i in range(4)], concat([ramps, pv])
    )
    return book, np.concatenate([loads["bus"].to_numpy(), [12, 17, 24, 32]])


def test_marginal_bids_set_the_dlmp_and_ac_confirms_on_case33bw(case33: Feeder) -> None:
    book, bus = case33_book(case33)
    limits = Limits(max_reverse_flow_kw=None)
    res = clear_network(case33, book, bus, 0.06, limits=limits, ramp_steps=6, loss_iterations=5)
    assert res.status[0] == OPTIMAL
    assert np.abs(res.voltage).max() > 1e-3  # the voltage band binds
    _check_ac(case33, res, limits)
    # Every LP segment strictly inside its bounds is priced exactly at its bus's DLMP.
    seg_bid, seg_price, seg_ub, base = _segments(book.curves, 6)
    dlmp = res.dlmp[0, bus]
    marginal = 0
    for i in range(len(book)):
        s = seg_bid == i
        # segments are taken from the highest price down: find the one holding the rest
        order = np.argsort(-seg_price[s])
        left = res.awards[i] - base[i]
        for price, ub in zip(seg_price[s][order], seg_ub[s][order], strict=True):
            y = min(max(left, 0.0), ub)
            left -= y
            if 1e-6 < y < ub - 1e-6:
                assert price == pytest.approx(dlmp[i], abs=1e-7)
                marginal += 1
            elif y >= ub - 1e-6:
                assert price >= dlmp[i] - 1e-7
            else:
                assert price <= dlmp[i] + 1e-7
    assert marginal > 0


def test_the_skeleton_lp_agrees_with_the_whole_feeder_model(
    case33: Feeder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LP keeps LinDistFlow variables only on the monitored skeleton: they equal the
    whole-feeder LinDistFlow state of the dispatch, and their balance duals equal the DLMPs
    computed from the adjoint."""
    solutions = []
    solve = nw._solve

    def spy(*args: object, **kwargs: object) -> object:
        solutions.append(solve(*args, **kwargs))  # type: ignore[arg-type]
        return solutions[-1]

    monkeypatch.setattr(nw, "_solve", spy)
    book, bus = case33_book(case33)
    res = clear_network(
        case33, book, bus, 0.06, limits=Limits(max_reverse_flow_kw=None), loss_iterations=5
    )
    sol = solutions[-1]
    sk, lay = sol.sk, sol.lay
    assert sk.node_t.size > 1  # buses were added to the skeleton
    at = (sk.node_t, sk.node_e)
    for k, state in enumerate((sol.P, sol.Q, sol.v)):
        np.testing.assert_allclose(sol.x[lay.node_col + k], state[at], atol=1e-6)
    feeder_bus = radial(case33).bus[sk.node_e]
    np.testing.assert_allclose(sol.row_dual[lay.node_row], res.dlmp[0, feeder_bus], atol=1e-9)


def test_areas_below_different_sources_clear_alone_as_together() -> None:
    """Two sources: cleared per area (fixed price) equals the joint LP (flat wholesale curve,
    which couples the areas through one balance)."""
    net = pp.create_empty_network()
    for i in range(8):
        pp.create_bus(net, 0.4, name=f"b{i}")
    pp.create_ext_grid(net, 0)
    pp.create_ext_grid(net, 4, vm_pu=1.02)
    for a, b in ((0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (5, 7)):
        pp.create_line_from_parameters(net, a, b, 1.0, 0.06, 0.03, 0.0, 0.09)
    feeder = feeder_from_pandapower(net, "two-areas")
    T = 3
    rng = np.random.default_rng(5)
    n = 20
    iv = rng.integers(0, T, n)
    book = book_from_blocks(
        [f"b{i}" for i in range(n)],
        np.where(rng.random(n) < 0.7, "buy", "sell"),
        rng.uniform(0.02, 0.5, n),
        rng.uniform(5, 40, n),
        iv,
        T,
    )
    bus = rng.choice([1, 2, 3, 5, 6, 7], n)
    fleet = StorageFleet(bus=[3, 7], charge_kw=[20.0, 20.0], capacity_kwh=[30, 30], soc_kwh=[0, 0])
    price = np.array([0.05, 0.3, 0.1])
    flat = curves_from_arrays(
        np.column_stack([price, price]), np.tile([1e5, -1e5], (T, 1))
    )  # buys or sells anything at the price
    kw = {"limits": Limits(max_reverse_flow_kw=10.0), "storage": fleet, "loss_iterations": 5}
    split = clear_network(feeder, book, bus, price, **kw)  # type: ignore[arg-type]
    joint = clear_network(feeder, book, bus, flat, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(split.dlmp, joint.dlmp, atol=1e-6)
    np.testing.assert_allclose(split.awards, joint.awards, atol=1e-6)
    np.testing.assert_allclose(split.storage_soc_kwh, joint.storage_soc_kwh, atol=1e-6)
    ac = [
        verify(feeder, r.net_load_kw, r.net_load_kvar, r.voltage_pu, kw["limits"]).ac  # type: ignore[arg-type]
        for r in (split, joint)
    ]
    np.testing.assert_allclose(ac[0].vm_pu, ac[1].vm_pu, atol=1e-9)
    np.testing.assert_allclose(split.voltage_pu, joint.voltage_pu, atol=1e-9)
    assert np.abs(split.congestion).max() > 1e-3 or np.abs(split.voltage).max() > 1e-3


@pytest.mark.slow
def test_simbench_lv_transformer_congestion_is_priced_and_verified() -> None:
    feeder = load_feeder(SIMBENCH)
    base = profile_injections(feeder, start=4 * 19, steps=1)  # 19:00 on 1 January
    load_buses = np.unique(feeder.loads["bus"].to_numpy())
    n = load_buses.size
    rng = np.random.default_rng(3)
    book = book_from_blocks(
        [f"ev{i}" for i in range(n)], ["buy"] * n, rng.uniform(0.1, 0.5, n), np.full(n, 11.0)
    )
    limits = Limits(max_reverse_flow_kw=None)
    res = clear_network(
        feeder,
        book,
        load_buses,
        0.05,
        limits=limits,
        fixed_load_kw=base.p_kw,
        fixed_load_kvar=base.q_kvar,
        loss_iterations=5,
    )
    assert res.status[0] == OPTIMAL
    check = _check_ac(feeder, res, limits)
    # The 160 kVA transformer binds: every LV bus carries the same congestion price, and the
    # partially served EV at the margin sets it.
    assert np.nanmax(check.ac.loading_percent) > 95
    lv = np.flatnonzero(feeder.buses["vn_kv"].to_numpy() < 1)
    assert (res.congestion[0, lv] > 0.05).all()
    partial = (res.awards > 1e-6) & (res.awards < 11 - 1e-6)
    assert partial.sum() >= 1
    prices = np.asarray(book.curves.price[::2])
    np.testing.assert_allclose(res.dlmp[0, load_buses[partial]], prices[partial], atol=1e-7)


# --- infeasible cases ---------------------------------------------------------------------


def test_load_that_cannot_be_served_is_shed_at_the_value_of_lost_load(case33: Feeder) -> None:
    fixed = np.zeros((1, case33.n_bus))
    np.add.at(fixed[0], case33.loads["bus"].to_numpy(), case33.loads["p_kw"].to_numpy() * 2)
    empty = book_from_blocks(np.zeros(0, dtype=str), np.zeros(0, dtype=str), [], [])
    limits = Limits(max_reverse_flow_kw=None)
    res = clear_network(
        case33,
        empty,
        np.zeros(0, dtype=int),
        0.05,
        limits=limits,
        fixed_load_kw=fixed,
        voll=8.0,
        loss_iterations=5,
    )
    assert res.status[0] == SHED
    shed = res.shed_kw[0]
    assert shed.sum() > 100 and (shed <= fixed[0] + 1e-9).all()
    # a partially shed bus is priced at VOLL; nothing is shed where the price is below it
    partial = (shed > 1e-6) & (shed < fixed[0] - 1e-6)
    assert partial.any()
    np.testing.assert_allclose(res.dlmp[0, partial], 8.0, atol=1e-7)
    assert (shed[res.dlmp[0] < 8.0 - 1e-7] < 1e-6).all()
    _check_ac(case33, res, limits)


def test_voltage_band_out_of_reach_is_reported_not_raised() -> None:
    feeder = toy_feeder(TOY, vm_pu=0.9)  # the source itself is below the band
    book, bus, *_ = block_book(np.random.default_rng(0), feeder.n_bus, 6, 5.0)
    res = clear_network(feeder, book, bus, 0.05, losses="none", limits=Limits(), loss_iterations=5)
    assert res.status[0] == INFEASIBLE
    assert np.isnan(res.dlmp).all()


def test_price_taking_bids_are_shed_only_at_voll() -> None:
    feeder = toy_feeder([0, 0, 1], max_i_ka=0.05)  # 34.6 kVA lines
    book = book_from_blocks(["a", "b"], ["buy", "buy"], [5.0, 0.3], [30.0, 30.0])
    bus = np.array([2, 2])
    res = clear_network(
        feeder,
        book,
        bus,
        0.05,
        price_taking=[True, False],
        losses="none",
        limits=Limits(),
        loss_iterations=5,
    )
    assert res.status[0] == OPTIMAL
    assert res.awards[0] == pytest.approx(30.0)  # the price taker is served first
    assert 0 < res.awards[1] < 30.0 and res.dlmp[0, 2] == pytest.approx(0.3)
    book = book_from_blocks(["a"], ["buy"], [5.0], [60.0])
    res = clear_network(
        feeder,
        book,
        bus[:1],
        0.05,
        price_taking=[True],
        losses="none",
        limits=Limits(),
        loss_iterations=5,
    )
    assert res.status[0] == SHED and res.shed_kw[0, 2] == pytest.approx(60 - res.awards[0])
    assert res.dlmp[0, 2] == pytest.approx(10.0)


# --- input errors -------------------------------------------------------------------------


def test_bad_input_is_reported_by_bid() -> None:
    feeder = toy_feeder(TOY)
    book = book_from_blocks(["a", "b"], ["buy", "sell"], [0.1, 0.1], [1.0, 1.0])
    with pytest.raises(InvalidBidError, match=r"bid 'b'.*no bus 'nope'"):
        clear_network(feeder, book, ["b1", "nope"], 0.05, limits=Limits(), loss_iterations=5)
    with pytest.raises(InvalidBidError, match=r"bid 'a'.*no bus 99"):
        clear_network(feeder, book, [99, 1], 0.05, limits=Limits(), loss_iterations=5)
    with pytest.raises(InvalidInputError, match="wholesale_price"):
        clear_network(feeder, book, [1, 2], [0.05, 0.06], limits=Limits(), loss_iterations=5)
    with pytest.raises(InvalidInputError, match="loss_iterations must be ≥ 1, got 0"):
        clear_network(feeder, book, [1, 2], 0.05, limits=Limits(), loss_iterations=0)
    with pytest.raises(InvalidBidError, match="power factor"):
        clear_network(
            feeder, book, [1, 2], 0.05, power_factor=[1.0, 0.0], limits=Limits(), loss_iterations=5
        )
    net = pp.create_empty_network()
    for _ in range(3):
        pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, 0)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        pp.create_line_from_parameters(net, a, b, 1.0, 0.1, 0.05, 0.0, 0.2)
    with pytest.raises(NetworkTopologyError, match="meshed"):
        clear_network(
            feeder_from_pandapower(net, "ring"),
            book,
            [1, 2],
            0.05,
            limits=Limits(),
            loss_iterations=5,
        )


def test_wholesale_curve_limits_the_import() -> None:
    feeder = toy_feeder(TOY)
    book = book_from_blocks(["a", "b"], ["buy", "buy"], [0.5, 0.2], [10.0, 10.0])
    # the upstream sells 12 kW at 0.05 and 100 kW more at 0.3
    ws = curves_from_arrays([[0.05, 0.05, 0.3, 0.3]], [[0.0, -12.0, -12.0, -112.0]])
    res = clear_network(
        feeder,
        book,
        [3, 4],
        ws,
        limits=Limits(max_reverse_flow_kw=None),
        losses="none",
        loss_iterations=5,
    )
    np.testing.assert_allclose(res.awards, [10.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(res.energy[0], 0.2)  # the marginal bid sets the energy price
    assert res.substation_import_kw[0] == pytest.approx(12.0)


# --- storage over a horizon ---------------------------------------------------------------


def test_battery_arbitrage_and_ev_energy_need() -> None:
    feeder = toy_feeder(TOY)
    T = 4
    empty = book_from_blocks(
        np.zeros(0, dtype=str), np.zeros(0, dtype=str), [], [], np.zeros(0, dtype=int), T
    )
    prices = np.array([0.05, 0.30, 0.10, 0.40])
    fleet = StorageFleet(
        bus=["b4", "b6"],
        charge_kw=[5.0, 7.0],
        discharge_kw=[5.0, 0.0],
        capacity_kwh=[10.0, 40.0],
        soc_kwh=[0.0, 10.0],
        eta_charge=0.9,
        eta_discharge=0.9,
        available=np.array([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=bool),
        soc_target_kwh=np.array([[np.nan, np.nan]] * 2 + [[np.nan, 25.0], [np.nan, np.nan]]),
        cost_per_kwh=0.005,
    )
    limits = Limits(max_reverse_flow_kw=None)
    res = clear_network(
        feeder,
        empty,
        np.zeros(0, dtype=int),
        prices,
        limits=limits,
        storage=fleet,
        interval_hours=2.0,
        losses="none",
        loss_iterations=5,
    )
    ch, dis, soc = res.storage_charge_kw, res.storage_discharge_kw, res.storage_soc_kwh
    # energy balance of every device in every interval
    prev = np.vstack([[0.0, 10.0], soc[:-1]])
    np.testing.assert_allclose(soc, prev + 2.0 * (0.9 * ch - dis / 0.9), atol=1e-9)
    # the battery buys at 0.05 and 0.10 and sells at 0.30 and 0.40
    assert ch[0, 0] == pytest.approx(5.0) and dis[1, 0] > 0 and dis[3, 0] > 0
    # the EV gets its 15 kWh by interval 2, in the cheapest intervals (0 and 2)
    assert soc[2, 1] == pytest.approx(25.0) and ch[1, 1] == pytest.approx(0.0, abs=1e-9)
    assert ch[3, 1] == 0 and (res.status == OPTIMAL).all()
    # an unreachable need is left unmet at VOLL and flagged
    short = StorageFleet(
        bus=["b6"],
        charge_kw=[7.0],
        capacity_kwh=[40.0],
        soc_kwh=[10.0],
        soc_target_kwh=np.array([[np.nan], [39.0], [np.nan], [np.nan]]),
    )
    res = clear_network(
        feeder,
        empty,
        np.zeros(0, dtype=int),
        prices,
        limits=limits,
        storage=short,
        interval_hours=2.0,
        losses="none",
        loss_iterations=5,
    )
    assert res.status[1] == SHED and res.storage_unmet_kwh[1, 0] == pytest.approx(
        39.0 - 10.0 - 2 * 2.0 * 0.95 * 7.0
    )


def test_storage_relieves_congestion_across_intervals() -> None:
    feeder = toy_feeder([0, 0, 1, 2], max_i_ka=0.06)  # 41.6 kVA lines
    T = 2
    fixed = np.zeros((T, feeder.n_bus))
    fixed[1, 3] = 50.0  # an evening peak the line cannot carry
    empty = book_from_blocks(
        np.zeros(0, dtype=str), np.zeros(0, dtype=str), [], [], np.zeros(0, dtype=int), T
    )
    limits = Limits(max_reverse_flow_kw=None)
    alone = clear_network(
        feeder,
        empty,
        np.zeros(0, dtype=int),
        0.1,
        limits=limits,
        fixed_load_kw=fixed,
        loss_iterations=5,
    )
    assert alone.status[1] == SHED
    fleet = StorageFleet(bus=[3], charge_kw=[20.0], capacity_kwh=[20.0], soc_kwh=[0.0])
    res = clear_network(
        feeder,
        empty,
        np.zeros(0, dtype=int),
        0.1,
        limits=limits,
        fixed_load_kw=fixed,
        storage=fleet,
        loss_iterations=5,
    )
    assert (res.status == OPTIMAL).all()
    assert res.storage_discharge_kw[1, 0] > 5 and res.congestion[1, 3] > 0
    _check_ac(feeder, res, limits)


# --- the clear-network command ------------------------------------------------------------


runner = CliRunner()


def test_clear_network_command_json(tmp_path: Path, case33: Feeder) -> None:
    path = tmp_path / "bids.csv"
    path.write_text(
        "bid_id,side,price,quantity,bus,interval\n"
        "far,buy,0.40,900,17,2026-07-01T17:00:00Z\n"
        "near,buy,0.20,300,2,2026-07-01T17:00:00Z\n"
        "base,buy,,200,5,2026-07-01T17:00:00Z\n"
        "pv,sell,0.01,150,17,2026-07-01T18:00:00Z\n"
        "far,buy,0.40,100,17,2026-07-01T18:00:00Z\n"
    )
    res = runner.invoke(
        app,
        ["clear-network", "pandapower:case33bw", str(path), "--json", "--wholesale-price", "0.06"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["intervals"]
    assert [r["interval"] for r in out] == [
        "2026-07-01T17:00:00+00:00",
        "2026-07-01T18:00:00+00:00",
    ]
    first, second = out
    assert first["status"] == "optimal" and set(first["awards"]) == {"far", "near", "base"}
    d = first["dlmp"]["17"]
    assert d["total"] == pytest.approx(d["energy"] + d["loss"] + d["congestion"] + d["voltage"])
    assert d["energy"] == pytest.approx(0.06) and first["dlmp"]["0"]["total"] == pytest.approx(0.06)
    assert 0 < first["awards"]["far"] < 900 and d["total"] == pytest.approx(0.40, abs=1e-7)
    assert first["awards"]["base"] == pytest.approx(200.0)
    assert min(first["voltage_pu"].values()) >= 0.95 - 1e-9
    assert second["awards"]["pv"] == pytest.approx(-150.0) and second["substation_import_kw"] < 0
    table = runner.invoke(app, ["clear-network", "pandapower:case33bw", str(path)])
    assert table.exit_code == 0 and "congestion" in table.stdout


def test_clear_network_command_reports_the_line_of_an_unknown_bus(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_text("bid_id,side,price,quantity,bus\na,buy,0.1,5,3\nb,buy,0.1,5,330\n")
    res = runner.invoke(app, ["clear-network", "pandapower:case33bw", str(path)])
    assert res.exit_code == 2 and "bids.csv:3" in res.stderr and "unknown bus '330'" in res.stderr
    path.write_text("bid_id,side,price,quantity\na,buy,0.1,5\n")
    res = runner.invoke(app, ["clear-network", "pandapower:case33bw", str(path)])
    assert res.exit_code == 2 and "missing column 'bus'" in res.stderr


def test_an_area_without_branches() -> None:
    net = pp.create_empty_network()
    for _ in range(3):
        pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, 0)
    pp.create_ext_grid(net, 2)  # a source with nothing below it but its own bus
    pp.create_line_from_parameters(net, 0, 1, 1.0, 0.05, 0.03, 0.0, 0.2)
    feeder = feeder_from_pandapower(net, "lonely")
    book = book_from_blocks(["a", "b"], ["buy", "buy"], [0.3, 0.3], [5.0, 5.0])
    res = clear_network(feeder, book, [1, 2], 0.1, limits=Limits(), loss_iterations=5)
    assert (res.status == OPTIMAL).all() and res.converged
    np.testing.assert_allclose(res.awards, [5.0, 5.0])
    assert res.dlmp[0, 2] == pytest.approx(0.1) and res.dlmp[0, 1] > 0.1


# --- nothing from HiGHS reaches file descriptor 1 -----------------------------------------

_SILENT_SCRIPT = """
import numpy as np
from transactive.grid import Limits, load_feeder
from transactive.market.auction import book_from_blocks
from transactive.market.network import clear_network

feeder = load_feeder("pandapower:case33bw")
book = book_from_blocks(["a", "b"], ["buy", "sell"], [0.3, 0.01], [50.0, 20.0])
res = clear_network(
    feeder, book, [17, 5], 0.05, limits=Limits(max_reverse_flow_kw=None), loss_iterations=2
)
assert res.status[0] == "optimal"
print("done")
"""


def test_highs_writes_nothing_to_stdout(tmp_path: Path) -> None:
    """The HiGHS banner is written by C code straight to file descriptor 1, which only a real
    subprocess sees: its stdout must be exactly what the script printed."""
    env = {**os.environ, "TRANSACTIVE_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-c", _SILENT_SCRIPT], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "done\n"


def test_clear_network_json_stdout_is_json(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_text("bid_id,side,price,quantity,bus\nfar,buy,0.40,90,17\npv,sell,0.01,15,5\n")
    env = {**os.environ, "TRANSACTIVE_CACHE_DIR": str(tmp_path / "cache")}
    cmd = ["clear-network", "pandapower:case33bw", str(path), "--json"]
    run = subprocess.run(
        [sys.executable, "-c", "from transactive.cli import app; app()", *cmd],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["intervals"][0]["status"] == "optimal"
