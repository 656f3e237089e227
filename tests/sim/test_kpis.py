"""KPIs (transactive.sim.kpis) on hand-made tables with known answers: violation durations
independent of the power-flow sampling, ramp / peak-to-average / rebound, the warm-up left
out, comfort deviation from a known temperature path, a direction for every KPI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from transactive.core.records import AWARDS, BIDS, DISPATCH, METER, SETTLEMENT
from transactive.der import HVAC, hvac, make_context
from transactive.der.base import WeatherSample
from transactive.sim.kpis import (
    KPI_BETTER,
    KPI_DOCS,
    STAGE_KPIS,
    compute_kpis,
    kpi_better,
    kpi_category,
    kpi_names,
    max_ramp_kw,
    peak_to_average,
    rebound_kw,
    run_kpi_names,
)
from transactive.sim.results import SimResults

DAY = pd.Timestamp("2024-06-03T00:00Z")
PARTICIPANTS = pd.DataFrame(
    {
        "participant_id": ["dso-north", "dso-south", "home-1", "home-2"],
        "role": ["dso", "dso", "home", "home"],
        "area": ["north", "south", "north", "south"],
    }
)


def _results(
    grid: pd.DataFrame | None = None,
    violations: pd.DataFrame | None = None,
    meter: pd.DataFrame | None = None,
    market: pd.DataFrame | None = None,
    dispatch: pd.DataFrame | None = None,
    kpi_start: pd.Timestamp | None = None,
) -> SimResults:
    """A one-design run (design ``"d"``) from the given tables; the others empty."""
    return SimResults(
        scenario="test",
        areas=("north=f1", "south=f2"),
        designs=("d",),
        bids=BIDS.empty(),
        awards=AWARDS.empty(),
        dispatch=DISPATCH.empty() if dispatch is None else dispatch,
        meter=METER.empty() if meter is None else meter,
        settlement=SETTLEMENT.empty(),
        participants=PARTICIPANTS,
        market=pd.DataFrame(columns=["design", "area", "time", "price"])
        if market is None
        else market,
        grid=pd.DataFrame(
            columns=["design", "area", "time", "substation_kw", "losses_kw", "v_min_pu", "v_max_pu"]
        )
        if grid is None
        else grid,
        bills=pd.DataFrame(),
        violations=pd.DataFrame(columns=["design", "area", "time", "element", "kind"])
        if violations is None
        else violations,
        kpis=pd.DataFrame(),
        dlmp=pd.DataFrame(),
        currency="EUR",
        kpi_start=kpi_start,
    )


# --- violation durations ------------------------------------------------------------------

#: The physical situation (UTC hours of the day): which element is outside its limit when.
EPISODES = (
    ("north", "line-1", "line_overload", 17.0, 18.5),
    ("north", "line-2", "line_overload", 17.5, 19.0),  # overlaps line-1: counted once
    ("north", "trafo-1", "trafo_overload", 18.0, 18.25),
    ("south", "bus-7", "undervoltage", 12.0, 13.0),
    ("south", "bus-8", "undervoltage", 12.5, 13.5),
    ("north", "bus-3", "undervoltage", 12.0, 12.5),  # another area: summed
)
#: South exports 11:00–14:00 (kW at the substation, + import).
EXPORT_H = (11.0, 14.0)


def _grid_and_violations(step_min: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Power-flow summaries and violation rows of the same day at ``step_min`` steps."""
    times = pd.date_range(DAY, periods=24 * 60 // step_min, freq=f"{step_min}min")
    hour = (times - DAY) / pd.Timedelta(hours=1)
    grid = []
    for area in ("north", "south"):
        export = (hour >= EXPORT_H[0]) & (hour < EXPORT_H[1]) & (area == "south")
        grid.append(
            pd.DataFrame(
                {
                    "design": "d",
                    "area": area,
                    "time": times,
                    "substation_kw": np.where(export, -20.0, 50.0),
                    "losses_kw": 1.0,
                    "v_min_pu": 0.97,
                    "v_max_pu": 1.03,
                }
            )
        )
    rows = [
        {"design": "d", "area": area, "time": t, "element": el, "kind": kind}
        for area, el, kind, h0, h1 in EPISODES
        for t, h in zip(times, hour, strict=True)
        if h0 <= h < h1
    ]
    return pd.concat(grid, ignore_index=True), pd.DataFrame(rows)


def test_violation_durations_do_not_depend_on_the_powerflow_step() -> None:
    out = {}
    for step in (15, 5):
        grid, viol = _grid_and_violations(step)
        out[step] = compute_kpis(_results(grid, viol), pf_hours=step / 60)["d"]
        assert len(viol) == {15: 23, 5: 69}[step]  # the samples do grow with the rate
    for k in ("line_overload_h", "trafo_overload_h", "undervoltage_h", "overvoltage_h"):
        assert out[15][k] == pytest.approx(out[5][k], abs=1e-12), k
    assert out[15]["line_overload_h"] == pytest.approx(2.0)  # 17:00–19:00, lines united
    assert out[15]["trafo_overload_h"] == pytest.approx(0.25)
    assert out[15]["undervoltage_h"] == pytest.approx(1.5 + 0.5)  # south 12–13:30, north 0.5
    # Export is information unless the scenario limits it (no reverse-flow rows here).
    assert out[5]["reverse_flow_h"] == pytest.approx(3.0) == out[15]["reverse_flow_h"]
    assert out[5]["reverse_flow_violation_h"] == 0.0
    assert out[5]["energy_export_kwh"] == pytest.approx(60.0) == out[15]["energy_export_kwh"]
    assert out[5]["losses_kwh"] == pytest.approx(48.0) == out[15]["losses_kwh"]


def test_reverse_flow_is_a_violation_only_with_rows_for_it() -> None:
    grid, viol = _grid_and_violations(15)
    times = grid.loc[grid["substation_kw"] < 0, "time"]
    rev = pd.DataFrame(
        {"design": "d", "area": "south", "time": times, "element": "ext", "kind": "reverse_flow"}
    )
    k = compute_kpis(_results(grid, pd.concat([viol, rev])), pf_hours=0.25)["d"]
    assert k["reverse_flow_violation_h"] == pytest.approx(3.0)
    assert KPI_BETTER["reverse_flow_h"] is None
    assert KPI_BETTER["reverse_flow_violation_h"] == "lower"


# --- synchronisation ----------------------------------------------------------------------


def _series(values: Sequence[float], step_min: int = 15) -> pd.Series:
    idx = pd.date_range(DAY, periods=len(values), freq=f"{step_min}min")
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def test_ramp_and_peak_to_average_on_a_known_series() -> None:
    x = np.array([100.0, 120.0, 90.0, 400.0, 380.0, 50.0])
    assert max_ramp_kw(x) == pytest.approx(330.0)  # 380 → 50
    assert peak_to_average(x) == pytest.approx(400.0 / x.mean())
    assert max_ramp_kw(np.array([5.0])) == 0.0
    assert np.isnan(peak_to_average(np.array([-10.0, 5.0])))  # net exporter: undefined


def _rebound_case() -> tuple[pd.Series, pd.Series]:
    """15-minute load and price: 80–140 kW (mean 110 kW in the last hour) under 0.30 €/kWh,
    the price steps down to 0.10 at interval 8 and the load jumps to 400 kW, decaying; a
    0.01 wiggle at interval 16 (under 10 % of the 0.21 range) is followed by a spike that is
    not a rebound; a rise at 20 is no fall."""
    load = (
        [100.0] * 4
        + [80.0, 100.0, 120.0, 140.0]
        + [400.0, 300.0, 200.0, 100.0]
        + [100.0] * 4
        + [700.0]
        + [100.0] * 7
    )
    price = [0.30] * 8 + [0.10] * 8 + [0.09] * 4 + [0.30] * 4
    return _series(load), _series(price)


def test_rebound_is_the_peak_after_a_price_fall_over_the_hour_before() -> None:
    load, price = _rebound_case()
    assert rebound_kw(load, price) == pytest.approx(400.0 - 110.0)
    # The wiggle becomes a price fall once it exceeds 10 % of the range: then its spike counts
    # (600 kW over the hour before it, whose mean is 100 kW).
    deeper = price.copy()
    deeper.iloc[16:20] = 0.07
    assert rebound_kw(load, deeper) == pytest.approx(600.0)
    # A flat price has no falls: no rebound, however the load moves.
    assert rebound_kw(load, price * 0 + 0.3) == 0.0
    # A fall whose hour before is not inside the series is skipped.
    assert rebound_kw(load.iloc[5:], price.iloc[5:]) == 0.0
    # Five-minute data of the same hours: the same answer (the windows are hours).
    fine_load = (
        load.resample("5min")
        .ffill()
        .reindex(pd.date_range(DAY, periods=3 * len(load), freq="5min"), method="ffill")
    )
    fine_price = price.resample("5min").ffill().reindex(fine_load.index, method="ffill")
    assert rebound_kw(fine_load, fine_price) == pytest.approx(290.0)


def _substation_meters(load: pd.Series, share_north: float = 0.4) -> pd.DataFrame:
    """Meter records: the two substations split ``load`` (kW); a home meter that must not
    count towards the substation import."""
    parts = []
    for pid, share in (("dso-north", share_north), ("dso-south", 1 - share_north), ("home-1", 3)):
        kwh = load.to_numpy() * share * 0.25
        parts.append(
            METER.frame(
                {
                    "design": "d",
                    "market_id": "tso",
                    "stage": "real-time",
                    "interval_start": load.index,
                    "duration_h": 0.25,
                    "participant_id": pid,
                    "resource_id": f"meter:{pid}",
                    "node_id": pid,
                    "import_kwh": np.clip(kwh, 0, None),
                    "export_kwh": np.clip(-kwh, 0, None),
                    "quality": "measured",
                }
            )
        )
    return METER.concat(parts)


def _market(price: pd.Series) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"design": "d", "area": a, "time": price.index, "price": price.values})
            for a in ("north", "south")
        ],
        ignore_index=True,
    )


def test_synchronisation_kpis_read_the_substation_meters() -> None:
    load, price = _rebound_case()
    load.iloc[2] = -40.0  # an interval of export at the substations
    res = _results(meter=_substation_meters(load), market=_market(price))
    k = compute_kpis(res, pf_hours=0.25)["d"]
    assert k["max_ramp_kw"] == pytest.approx(600.0)  # 100 → 700 kW, the home meter ignored
    assert k["peak_to_average"] == pytest.approx(700.0 / load.mean())
    assert k["rebound_kw"] == pytest.approx(290.0)
    assert kpi_category("rebound_kw") == "synchronisation"


# --- warm-up --------------------------------------------------------------------------------


def _dispatch(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Dispatch records from rows giving interval_start, resource_id, device_kind and any of
    the report columns (the rest 0)."""
    cols = {c: [r.get(c, 0.0) for r in rows] for c in DISPATCH.names}
    for c in ("design", "market_id", "stage", "participant_id", "node_id"):
        cols[c] = ["d" if c == "design" else "x"] * len(rows)
    cols["duration_h"] = [1.0] * len(rows)
    return DISPATCH.frame(cols)


def test_the_warm_up_is_left_out_of_every_kpi() -> None:
    grid, viol = _grid_and_violations(15)
    load, price = _rebound_case()  # 00:00–06:00
    warm = {"interval_start": DAY + pd.Timedelta(hours=1), "resource_id": "ev-1"}
    later = {"interval_start": DAY + pd.Timedelta(hours=20), "resource_id": "ev-1"}
    dispatch = _dispatch(
        [
            {**warm, "device_kind": "ev", "unmet_kwh": 7.0},
            {**later, "device_kind": "ev", "unmet_kwh": 2.0},
            {**warm, "device_kind": "pv", "resource_id": "pv-1", "curtailed_kwh": 3.0},
        ]
    )
    grid.loc[(grid["time"] == DAY) & (grid["area"] == "north"), "substation_kw"] = 900.0
    args = (grid, viol, _substation_meters(load), _market(price), dispatch)
    full = compute_kpis(_results(*args), pf_hours=0.25)["d"]
    # Evaluated from 12:15: the peak, the price step and the first hour's records are gone,
    # and only the part of each episode from 12:15 on counts.
    late = compute_kpis(_results(*args, kpi_start=DAY + pd.Timedelta(hours=12.25)), 0.25)["d"]
    assert full["peak_import_kw"] == pytest.approx(950.0) and late["peak_import_kw"] == 100.0
    assert full["rebound_kw"] == pytest.approx(290.0) and late["rebound_kw"] == 0.0
    assert full["unmet_ev_kwh"] == 9.0 and late["unmet_ev_kwh"] == 2.0
    assert full["curtailed_pv_kwh"] == 3.0 and late["curtailed_pv_kwh"] == 0.0
    assert late["line_overload_h"] == pytest.approx(2.0)
    assert late["undervoltage_h"] == pytest.approx(2.0 - 0.25 - 0.25)  # south and north
    assert np.isnan(late["mean_price_eur_per_kwh"])  # the priced hours were all warm-up
    assert full["mean_price_eur_per_kwh"] == pytest.approx(price.mean())
    assert late["energy_export_kwh"] == pytest.approx(full["energy_export_kwh"] - 20 * 0.25 * 5)


# --- comfort ------------------------------------------------------------------------------


def test_comfort_deviation_from_a_known_temperature_path() -> None:
    """Two houses whose temperature stays 1 K and 2 K above the preferred setpoint (their
    free-running equilibrium, unit off) for 8 hours: 8 and 16 K·h, 12 K·h per house; the
    water heater is kept apart; nothing is outside the comfort band."""
    model = HVAC()
    sp = np.array([21.0, 22.0])
    p = model.make_params(setpoint_c=sp, range_high=2.5, internal_gain_kw=0.5, ua_kw_per_k=0.25)
    weather = WeatherSample(temp_air=21.0, ghi=0.0)  # T_free = 21 + 0.5/0.25 = 23 °C
    state = hvac.HVACState(np.full(2, 23.0), sp.copy(), np.zeros(2, bool))
    rows = []
    for k in range(8):
        start = DAY + pd.Timedelta(hours=k)
        ctx = make_context(start, 1.0, [0.1], floor=0.0, cap=1.0, weather=weather)
        state, rep = model.step(p, state, np.zeros(2), ctx)
        for i in range(2):
            rows.append(
                {
                    "interval_start": start,
                    "resource_id": f"hvac-{i}",
                    "device_kind": "hvac",
                    "comfort_dev_kh": rep.extra["comfort_dev_kh"][i],
                    "discomfort_kh": rep.extra["discomfort_kh"][i],
                }
            )
        rows.append(
            {"interval_start": start, "resource_id": "wh-0", "device_kind": "water_heater",
             "comfort_dev_kh": 3.0, "discomfort_kh": 0.5}
        )  # fmt: skip
    np.testing.assert_allclose(state.temp_c, 23.0)
    k = compute_kpis(_results(dispatch=_dispatch(rows)), pf_hours=1.0)["d"]
    assert k["comfort_dev_kh"] == pytest.approx((8.0 + 16.0) / 2)
    assert k["hot_water_dev_kh"] == pytest.approx(24.0)
    assert k["discomfort_kh"] == pytest.approx(4.0)  # only the tank's rows


# --- the table and its directions ---------------------------------------------------------


def test_every_kpi_has_a_direction_and_a_category_and_the_table_its_shape() -> None:
    assert set(KPI_BETTER) == set(KPI_DOCS)
    assert all(v in ("lower", "higher", None) for v in KPI_BETTER.values())
    cats = {name: kpi_category(name) for name in kpi_names("EUR")}
    assert set(cats.values()) == {
        "grid",
        "synchronisation",
        "comfort",
        "money",
        "info",
        "market power",
    }
    for name, cat in cats.items():
        info_money = name.endswith("revenue_eur") or name.startswith(("mean_price", "max_price"))
        assert (kpi_better(name) is None) == (cat == "info" or info_money)
    assert kpi_better("total_cost_eur") == "lower" and kpi_category("mean_bill_usd") == "money"
    assert kpi_better("worst_v_min_pu") == "higher"
    with pytest.raises(KeyError, match="not a KPI"):
        kpi_category("thermal_overloads")
    grid, viol = _grid_and_violations(15)
    res = _results(grid, viol)
    table = compute_kpis(res, pf_hours=0.25)
    stage_rows = {k.format(cur="eur") for keys in STAGE_KPIS.values() for k in keys}
    assert list(table.index) == [k for k in kpi_names("EUR") if k not in stage_rows]
    assert list(table.columns) == ["d"]
    flex = replace(res, designs=("d", "d+flex"))  # a flexibility variant brings its rows
    assert "flex_cost_eur" in run_kpi_names(flex) and "p2p_volume_kwh" not in run_kpi_names(flex)
