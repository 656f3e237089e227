"""Hosting capacity: feasibility at the reported figure, monotonicity, and an independent
bisection with pandapower."""

from __future__ import annotations

import json

import numpy as np
import pandapower as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from transactive.cli import app
from transactive.errors import InvalidInputError, NetworkTopologyError
from transactive.grid import (
    Injections,
    Limits,
    check_limits,
    hosting_capacity,
    load_feeder,
    run_powerflow,
    worst_case_snapshot,
)
from transactive.grid.feeders import pandapower_net
from transactive.grid.hosting import MIN_LOAD_FACTOR

SMALL = "pandapower:kerber_landnetz_kabel_1"
ALLOW_EXPORT = Limits(max_reverse_flow_kw=None)


def _violations_with(feeder, snap, bus: int, add_kw: float, limits: Limits):  # type: ignore[no-untyped-def]
    p = snap.p_kw.copy()
    p[0, bus] += add_kw
    res = run_powerflow(feeder, Injections(p, snap.q_kvar))
    return check_limits(feeder, res, limits)


@pytest.mark.parametrize("der", ["pv", "ev"])
def test_reported_capacity_is_feasible_and_one_step_more_is_not(der: str) -> None:
    feeder = load_feeder(SMALL)
    hc = hosting_capacity(feeder, der, tol_kw=0.5, limits=ALLOW_EXPORT)  # type: ignore[arg-type]
    snap = worst_case_snapshot(feeder, der)  # type: ignore[arg-type]
    limits = Limits(max_reverse_flow_kw=None)
    sign = -1.0 if der == "pv" else 1.0
    assert hc.snapshot_violations.empty
    rows = hc.per_bus[~hc.per_bus["capped"]].iloc[::4]
    assert len(rows) >= 3
    for row in rows.itertuples():
        bus = feeder.bus_index(row.bus)
        assert _violations_with(feeder, snap, bus, sign * row.hosting_kw, limits).empty
        above = _violations_with(feeder, snap, bus, sign * (row.hosting_kw + 0.5), limits)
        assert row.limit in set(above["kind"])
    assert hc.feeder_min_kw == pytest.approx(hc.per_bus["hosting_kw"].min())
    assert hc.feeder_uniform_kw >= hc.feeder_min_kw


def test_uniform_feeder_figure_is_feasible() -> None:
    feeder = load_feeder(SMALL)
    hc = hosting_capacity(feeder, "pv", tol_kw=0.5, limits=ALLOW_EXPORT)
    snap = worst_case_snapshot(feeder, "pv")
    cand = [feeder.bus_index(b) for b in hc.per_bus["bus"]]
    limits = Limits(max_reverse_flow_kw=None)

    def spread(total: float):  # type: ignore[no-untyped-def]
        p = snap.p_kw.copy()
        p[0, cand] -= total / len(cand)
        return check_limits(feeder, run_powerflow(feeder, Injections(p, snap.q_kvar)), limits)

    assert spread(hc.feeder_uniform_kw).empty
    assert not spread(hc.feeder_uniform_kw + 1.0).empty


@settings(max_examples=8, deadline=None)
@given(
    bus=st.integers(min_value=1, max_value=17),
    extra_kw=st.floats(min_value=0.5, max_value=15.0),
)
def test_pv_capacity_is_monotone_in_load(bus: int, extra_kw: float) -> None:
    feeder = load_feeder(SMALL)
    snap = worst_case_snapshot(feeder, "pv")
    base = hosting_capacity(feeder, "pv", tol_kw=0.25, snapshot=snap, limits=ALLOW_EXPORT)
    p = snap.p_kw.copy()
    p[0, bus] += extra_kw
    more = hosting_capacity(
        feeder, "pv", tol_kw=0.25, snapshot=Injections(p, snap.q_kvar), limits=ALLOW_EXPORT
    )
    assert more.snapshot_violations.empty
    hc0 = base.per_bus["hosting_kw"].to_numpy()
    diff = more.per_bus["hosting_kw"].to_numpy() - hc0
    # Voltage- and transformer-limited capacity never drops (up to the bisection
    # resolution). Line loading is a current limit: extra load lowers the voltage, so the
    # same PV export needs slightly more current (I = S / V): allow that 1 % effect there.
    thermal = (base.per_bus["limit"] == "line_overload").to_numpy() | (
        more.per_bus["limit"] == "line_overload"
    ).to_numpy()
    allowed = 0.25 + np.where(thermal, 0.01 * hc0, 0.0)
    assert (diff >= -allowed).all()
    assert (diff[~thermal] >= -0.25).all()


@pytest.mark.slow
def test_matches_a_pandapower_bisection_on_one_bus() -> None:
    feeder = load_feeder(SMALL)
    bus_pos = 12
    hc = hosting_capacity(feeder, "pv", tol_kw=0.01, buses=[bus_pos], limits=ALLOW_EXPORT)
    net = pandapower_net(SMALL)
    net.load["scaling"] = MIN_LOAD_FACTOR
    pp_bus = net.bus.index[bus_pos]
    sgen = pp.create_sgen(net, pp_bus, p_mw=0.0)
    src = net.ext_grid.bus.to_numpy()

    def violates(kw: float) -> bool:
        net.sgen.loc[sgen, "p_mw"] = kw / 1e3
        pp.runpp(net, trafo_model="pi", tolerance_mva=1e-11)
        vm = net.res_bus.vm_pu.drop(index=src).to_numpy()
        return bool(
            (vm > 1.05).any()
            or (vm < 0.95).any()
            or (net.res_line.loading_percent > 100).any()
            or (net.res_trafo.loading_percent > 100).any()
        )

    lo, hi = 0.0, hc.max_kw
    assert violates(hi) and not violates(lo)
    while hi - lo > 0.01:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if violates(mid) else (mid, hi)
    assert hc.per_bus["hosting_kw"].iloc[0] == pytest.approx(lo, abs=0.02)


def test_simbench_snapshot_uses_yearly_extremes(simbench_feeder) -> None:  # type: ignore[no-untyped-def]
    prof = simbench_feeder.profiles
    pv = worst_case_snapshot(simbench_feeder, "pv")
    ev = worst_case_snapshot(simbench_feeder, "ev")
    assert pv.p_kw.sum() == pytest.approx(
        prof.load_p_kw.min(axis=0).sum() - prof.sgen_p_kw.max(axis=0).sum()
    )
    assert ev.p_kw.sum() == pytest.approx(prof.load_p_kw.max(axis=0).sum())
    hc = hosting_capacity(simbench_feeder, "ev", tol_kw=1.0, limits=ALLOW_EXPORT)
    assert (hc.per_bus["hosting_kw"] > 0).all()


def test_snapshot_violation_reported_and_capacity_zero() -> None:
    feeder = load_feeder("pandapower:case33bw")  # peak load is already below 0.95 pu
    hc = hosting_capacity(feeder, "ev", limits=ALLOW_EXPORT)
    assert (hc.snapshot_violations["kind"] == "undervoltage").any()
    assert hc.per_bus.loc[hc.per_bus["bus"] == "17", "hosting_kw"].iloc[0] < 1.0


def test_bad_arguments() -> None:
    feeder = load_feeder(SMALL)
    with pytest.raises(InvalidInputError, match="unknown DER type 'wind'"):
        hosting_capacity(feeder, "wind", limits=ALLOW_EXPORT)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="power_factor"):
        hosting_capacity(feeder, power_factor=1.5, limits=ALLOW_EXPORT)
    with pytest.raises(NetworkTopologyError, match="no bus named"):
        hosting_capacity(feeder, buses=["nope"], limits=ALLOW_EXPORT)


def test_cli_hosting_capacity_json_and_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = tmp_path / "hc.csv"
    res = runner.invoke(app, ["hosting-capacity", SMALL, "--json", "--csv", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["der"] == "pv" and len(payload["per_bus"]) == 17
    lines = out.read_text().splitlines()
    assert lines[0] == "bus,vn_kv,hosting_kw,capped,limit,limit_element" and len(lines) == 18
    table = runner.invoke(app, ["hosting-capacity", SMALL, "--der", "ev"])
    assert table.exit_code == 0 and "EV hosting capacity" in table.stdout


def test_cli_unknown_feeder_exits_2() -> None:
    res = CliRunner().invoke(app, ["hosting-capacity", "pandapower:nope"])
    assert res.exit_code == 2
    assert "unknown feeder 'pandapower:nope'" in res.stderr
