"""Lean power flow (``keep="summary"``): chunk-by-chunk summaries, extremes and per-element
violation summaries must equal what the full result gives."""

from __future__ import annotations

import dataclasses
import tracemalloc
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from transactive.errors import BalanceError, InvalidInputError
from transactive.grid import (
    Feeder,
    Injections,
    Limits,
    PowerFlow,
    PowerFlowResult,
    PowerFlowSummary,
    SummaryOnlyError,
    check_limits,
    load_feeder,
    profile_injections,
    run_powerflow,
)
from transactive.grid import powerflow as pf_module
from transactive.grid.feeders import feeder_from_pandapower, pandapower_net
from transactive.grid.limits import VIOLATION_SUMMARY_COLUMNS, step_hours, summarise_violations
from transactive.grid.powerflow import check_energy_balance

STEPS = 300
CHUNK = 37  # does not divide STEPS: the last chunk is short
EVERY_KIND = Limits(
    v_min_pu=1.012,
    v_max_pu=1.033,
    max_line_loading_percent=40.0,
    max_trafo_loading_percent=30.0,
    max_reverse_flow_kw=10.0,
)
WIDE = Limits(v_min_pu=0.5, v_max_pu=1.5, max_reverse_flow_kw=None)
KINDS = {"undervoltage", "overvoltage", "line_overload", "trafo_overload", "reverse_flow"}


def _with_pv(feeder: Feeder) -> Injections:
    """SimBench profiles plus 40 kW of midday PV at each sgen bus (reverse flow, high V)."""
    inj = profile_injections(feeder, start=0, steps=STEPS)
    step = np.arange(STEPS)
    pv = np.clip(np.sin((step % 96 - 28) / 40 * np.pi), 0, None)
    p = inj.p_kw.copy()
    p[:, feeder.sgens["bus"].to_numpy()] -= 40.0 * pv[:, None]
    return Injections(p, inj.q_kvar, inj.time)


def _assert_same(full: PowerFlowResult, lean: PowerFlowSummary) -> None:
    pd.testing.assert_frame_equal(full.summary(), lean.summary(), check_exact=True)
    pd.testing.assert_frame_equal(full.bus_extremes(), lean.bus_extremes(), check_exact=True)
    pd.testing.assert_frame_equal(full.branch_extremes(), lean.branch_extremes(), check_exact=True)
    for a, b in zip(
        dataclasses.astuple(full.extremes()), dataclasses.astuple(lean.extremes()), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.substation_p_kw, lean.substation_p_kw)
    np.testing.assert_array_equal(full.source_q_kvar, lean.source_q_kvar)
    np.testing.assert_array_equal(full.losses_kw, lean.losses_kw)
    assert lean.n_step == full.n_step and lean.time.equals(full.time)


@pytest.fixture(scope="module")
def pv_case(simbench_feeder: Feeder) -> tuple[Feeder, Injections, PowerFlowResult]:
    inj = _with_pv(simbench_feeder)
    return simbench_feeder, inj, run_powerflow(simbench_feeder, inj)


@pytest.mark.parametrize(
    "limits",
    [
        EVERY_KIND,
        Limits(),
        Limits(v_max_pu=1.02, check_source_voltage=True, max_reverse_flow_kw=None),
    ],
    ids=["every-kind", "default", "source-voltage"],
)
def test_lean_equals_full(pv_case: tuple[Feeder, Injections, PowerFlowResult], limits) -> None:  # type: ignore[no-untyped-def]
    feeder, inj, full = pv_case
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK, limits=limits)
    assert isinstance(lean, PowerFlowSummary) and lean.keep == "summary"
    _assert_same(full, lean)
    rows = check_limits(feeder, full, limits)
    expected = summarise_violations(rows, full.time)
    pd.testing.assert_frame_equal(lean.violation_summary, expected, check_exact=True)
    assert list(expected.columns) == VIOLATION_SUMMARY_COLUMNS
    assert expected["n_steps"].sum() == len(rows)
    assert np.allclose(expected["hours"], expected["n_steps"] * 0.25)  # 15-minute steps
    if limits is EVERY_KIND:
        assert set(expected["kind"]) == KINDS
        assert rows["time"].nunique() > CHUNK  # violations span several chunks
        spans = expected["last_time"] > expected["first_time"]
        assert spans.any() and (expected["worst_step"] > CHUNK).any()


def test_violation_summary_by_hand(pv_case: tuple[Feeder, Injections, PowerFlowResult]) -> None:
    """Each summary row recomputed directly from the full arrays."""
    feeder, inj, full = pv_case
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK, limits=EVERY_KIND)
    s = lean.violation_summary.set_index(["kind", "element"])
    row = s.loc[("undervoltage", s.loc["undervoltage"].index[0])]
    b = full.bus_names.index(s.loc["undervoltage"].index[0])
    under = np.flatnonzero(full.vm_pu[:, b] < EVERY_KIND.v_min_pu)
    worst = int(np.argmin(full.vm_pu[:, b]))
    assert row["n_steps"] == under.size and row["hours"] == under.size / 4
    assert row["first_time"] == full.time[under[0]] and row["last_time"] == full.time[under[-1]]
    assert row["worst_step"] == worst and row["worst_time"] == full.time[worst]
    assert row["value"] == full.vm_pu[worst, b] and row["limit"] == EVERY_KIND.v_min_pu
    assert row["magnitude"] == EVERY_KIND.v_min_pu - full.vm_pu[worst, b]


def test_step_hours() -> None:
    t = pd.date_range("2024-01-01", periods=4, freq="15min")
    assert step_hours(t) == 0.25
    assert np.isnan(step_hours(pd.RangeIndex(4)))
    assert np.isnan(step_hours(t[:1]))
    assert np.isnan(step_hours(t[[0, 1, 3]]))  # irregular


def test_summarise_violations_rejects_foreign_rows(
    pv_case: tuple[Feeder, Injections, PowerFlowResult],
) -> None:
    feeder, _, full = pv_case
    rows = check_limits(feeder, full, EVERY_KIND)
    with pytest.raises(InvalidInputError, match="not a step"):
        summarise_violations(rows, full.time.drop(rows["time"].iloc[0]))
    with pytest.raises(InvalidInputError, match="check_limits table"):
        summarise_violations(rows.drop(columns="magnitude"), full.time)


def test_summary_needs_limits_and_keeps_them(
    pv_case: tuple[Feeder, Injections, PowerFlowResult],
) -> None:
    feeder, inj, full = pv_case
    with pytest.raises(InvalidInputError, match="pass limits"):
        run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK)  # type: ignore[call-overload]
    with pytest.raises(InvalidInputError, match="pass limits"):
        PowerFlow(feeder).run(inj, keep="summary")  # type: ignore[call-overload]
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK, limits=Limits())
    assert lean.limits == Limits()
    expected = summarise_violations(check_limits(feeder, full, Limits()), full.time)
    pd.testing.assert_frame_equal(lean.violation_summary, expected, check_exact=True)


def test_summary_names_where_the_extremes_occur(
    pv_case: tuple[Feeder, Injections, PowerFlowResult],
) -> None:
    _, _, full = pv_case
    s = full.summary()
    t = int(np.argmax(s["vm_max_pu"].to_numpy()))
    bus = full.bus_names[int(np.nanargmax(full.vm_pu[t]))]
    assert s["vm_max_bus"].iloc[t] == bus
    br = full.branch_extremes()
    k = int(np.nanargmax(full.loading_percent.max(axis=0)))
    step = int(np.nanargmax(full.loading_percent[:, k]))
    assert br["max_loading_time"].iloc[k] == full.time[step]


def _nan_feeder() -> Feeder:
    """CIGRE LV with switches, an isolated bus and a line open at both ends."""
    net = pandapower_net("pandapower:cigre_lv")
    lv = int(net.bus.index[net.bus.vn_kv == 0.4][3])
    lonely = pp.create_bus(net, vn_kv=0.4, name="lonely")
    pp.create_load(net, lonely, p_mw=0.01)
    cut = pp.create_bus(net, vn_kv=0.4, name="cut")
    line = pp.create_line_from_parameters(
        net, lv, cut, length_km=0.1, r_ohm_per_km=0.1, x_ohm_per_km=0.05,
        c_nf_per_km=0.0, max_i_ka=0.1, name="cut_line",
    )  # fmt: skip
    pp.create_switch(net, lv, line, et="l", closed=False)
    pp.create_switch(net, cut, line, et="l", closed=False)
    return feeder_from_pandapower(net, "nan-paths")


def test_dead_buses_switches_and_open_lines_without_time_stamps() -> None:
    feeder = _nan_feeder()
    base = feeder.loads["p_kw"].to_numpy() @ feeder.load_incidence
    base_q = feeder.loads["q_kvar"].to_numpy() @ feeder.load_incidence
    scale = np.linspace(0.2, 1.3, 11)[:, None]
    inj = Injections(scale * base, scale * base_q)  # no time stamps: steps are numbered
    full = run_powerflow(feeder, inj, chunk_size=4)
    limits = Limits(v_min_pu=0.93, max_trafo_loading_percent=60.0)
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=4, limits=limits)
    _assert_same(full, lean)
    rows = check_limits(feeder, full, limits)
    assert not rows.empty
    expected = summarise_violations(rows, full.time)
    pd.testing.assert_frame_equal(lean.violation_summary, expected, check_exact=True)
    s = lean.violation_summary
    assert s["hours"].isna().all()  # no time stamps: no step length
    assert s["first_time"].dtype == "Int64" and s["worst_step"].dtype == "int64"
    bus = lean.bus_extremes().set_index("bus")
    assert np.isnan(bus.loc["lonely", "vm_min_pu"]) and pd.isna(bus.loc["cut", "vm_max_time"])
    br = lean.branch_extremes().set_index("branch")
    assert np.isnan(br.loc["cut_line", "max_loading_percent"])
    assert br["max_loading_time"].dtype == "Int64"


def test_full_arrays_raise_a_clear_error(
    pv_case: tuple[Feeder, Injections, PowerFlowResult],
) -> None:
    feeder, inj, _ = pv_case
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK, limits=Limits())
    for name in ("vm_pu", "va_degree", "p_from_kw", "q_to_kvar", "loading_percent"):
        with pytest.raises(SummaryOnlyError, match=f"{name}.*keep='full'"):
            getattr(lean, name)
        assert not hasattr(lean, name)  # an AttributeError: honest about what it holds
    with pytest.raises(SummaryOnlyError, match="keep='full'"):
        lean.vm_frame()
    with pytest.raises(SummaryOnlyError, match="keep='full'"):
        lean.loading_frame()


def test_lean_violation_rows_are_refused(
    pv_case: tuple[Feeder, Injections, PowerFlowResult],
) -> None:
    feeder, inj, _ = pv_case
    lean = run_powerflow(feeder, inj, keep="summary", limits=EVERY_KIND)
    with pytest.raises(InvalidInputError, match=r"violation_summary.*keep='full'"):
        check_limits(feeder, lean, EVERY_KIND)
    with pytest.raises(SummaryOnlyError, match=r"violation_summary.*keep='full'"):
        lean.violations  # noqa: B018
    assert not hasattr(lean, "violations")


def test_bad_keep_and_limits_without_summary_are_rejected(simbench_feeder: Feeder) -> None:
    inj = profile_injections(simbench_feeder, start=0, steps=2)
    with pytest.raises(InvalidInputError, match="keep must be"):
        run_powerflow(simbench_feeder, inj, keep="lean")  # type: ignore[call-overload]
    with pytest.raises(InvalidInputError, match="keep='summary' only"):
        run_powerflow(simbench_feeder, inj, limits=Limits())  # type: ignore[call-overload]


def test_energy_balance_is_checked_in_lean_mode(
    pv_case: tuple[Feeder, Injections, PowerFlowResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    feeder, inj, _ = pv_case
    seen: list[Any] = []
    real = pf_module.check_energy_balance

    def spy(*args: Any, **kwargs: Any) -> None:
        seen.append(args[2])
        real(*args, **kwargs)

    monkeypatch.setattr(pf_module, "check_energy_balance", spy)
    lean = run_powerflow(feeder, inj, keep="summary", chunk_size=CHUNK, limits=Limits())
    assert seen == [lean]
    run_powerflow(feeder, inj, keep="summary", check_balance=False, limits=Limits())
    assert len(seen) == 1
    broken = dataclasses.replace(lean, losses_kw=lean.losses_kw + 5.0)
    with pytest.raises(BalanceError, match="mismatch"):
        check_energy_balance(feeder, inj, broken)


def test_lean_memory_is_bounded_by_the_chunk() -> None:
    feeder = load_feeder("pandapower:cigre_lv")
    base = feeder.loads["p_kw"].to_numpy() @ feeder.load_incidence
    scale = 0.5 + 0.5 * np.sin(np.arange(2000) / 96 * 2 * np.pi)[:, None]
    inj = Injections(scale * base, 0.3 * scale * base)
    everywhere = Limits(v_min_pu=1.2, v_max_pu=1.3, max_line_loading_percent=1e-6)
    peaks, results = {}, {}
    for case, limits in (("full", None), ("wide", WIDE), ("everywhere", everywhere)):
        tracemalloc.start()
        if limits is None:
            run_powerflow(feeder, inj, chunk_size=100)
        else:
            results[case] = run_powerflow(
                feeder, inj, keep="summary", chunk_size=100, limits=limits
            )
        peaks[case] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # full: 7 time × element float64 arrays; summary: a chunk plus a few values per step,
    # and per element, however many violations there are
    assert results["wide"].violation_summary.empty
    s = results["everywhere"].violation_summary
    assert (s["kind"] == "undervoltage").sum() == int(feeder.topology.energized.sum()) - 1
    assert s["n_steps"].sum() > 2000 * feeder.n_bus // 2  # ~100k violating element-steps
    assert peaks["wide"] < 0.3 * peaks["full"], peaks
    assert peaks["everywhere"] < 0.3 * peaks["full"], peaks
    assert peaks["everywhere"] < 1.5 * peaks["wide"] + 2**20, peaks
