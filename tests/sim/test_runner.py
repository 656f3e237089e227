"""The simulation end to end on small feeders: paradigm behaviour with known answers,
balances, KPI arithmetic and bad scenarios."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import transactive.sim.runner as runner
from transactive.cli import app
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes import paradigms
from transactive.sim.kpis import KPI_DOCS, compute_kpis
from transactive.sim.results import SimResults, write_tables
from transactive.sim.scenario import load_scenario, parse_scenario

WHOLESALE = 40.0  # $/MWh, flat


def scenario(tmp_path: Path, **over: Any) -> dict[str, Any]:
    prices = tmp_path / "prices.csv"
    prices.write_text(f"start,price\n2016-07-12T00:00:00Z,{WHOLESALE}\n")
    raw: dict[str, Any] = {
        "name": "small",
        "feeder": "pandapower:kerber_landnetz_kabel_1",  # 8 load points, 100 kVA
        "start": "2016-07-12T20:00:00Z",
        "end": "2016-07-13T02:00:00Z",  # evening: EVs arrive, PV gone
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "paradigms": ["baseline", "tou", "layered", "layered-network", "grand-central"],
        "seed": 3,
        "homes_per_load": 4,
        "der": {"penetration": {"ev": 100, "hvac": 50}},
        "market": {"floor": 0.0, "cap": 2.0, "network_charge": 0.03},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> SimResults:
    tmp = tmp_path_factory.mktemp("sim")
    sc = parse_scenario(scenario(tmp, dso={"substation_limit_kw": 30.0}))
    return runner.run(sc)


def test_every_paradigm_reports_every_kpi(results: SimResults) -> None:
    names = ["baseline", "tou", "layered", "layered-network", "grand-central"]
    assert list(results.kpis.columns) == names
    assert list(results.kpis.index) == list(KPI_DOCS)
    assert len(results.market) == 5 * 24 and len(results.grid) == 5 * 12


def test_tariff_paradigms_see_the_tariff(results: SimResults) -> None:
    m = results.market
    assert (m[m.paradigm == "baseline"]["price"] == 0.16).all()
    tou = m[m.paradigm == "tou"].set_index("time")["price"]
    # 16–21 h local (UTC−5) is 21:00–02:00 UTC: off-peak at 20:00 UTC, peak from 21:00.
    assert tou.iloc[0] == 0.11 and (tou.iloc[4:] == 0.34).all()


def test_layered_dso_keeps_the_substation_limit_and_prices_the_congestion(
    results: SimResults,
) -> None:
    m = results.market
    layered = m[m.paradigm == "layered"]
    central = m[m.paradigm == "grand-central"]
    assert (layered["area_kw"] <= 30.0 + 1e-6).all()
    assert (central["area_kw"] > 30.0).any()  # without the DSO the evening peak passes
    # Where the limit binds, the area price rises above the wholesale price; elsewhere equal.
    binding = layered["area_kw"] >= 30.0 - 1e-6
    assert binding.any()
    assert (layered["price"][binding] > WHOLESALE / 1000).all()
    np.testing.assert_allclose(layered["price"][~binding], WHOLESALE / 1000)
    np.testing.assert_allclose(central["price"], WHOLESALE / 1000)


def test_network_clearing_prices_every_bus_and_keeps_the_substation(
    results: SimResults,
) -> None:
    d = results.dlmp
    assert set(d["paradigm"]) == {"layered-network"}
    assert d.groupby("time").size().min() > 1  # one price per energised bus
    parts = d["energy"] + d["loss"] + d["congestion"] + d["voltage"]
    np.testing.assert_allclose(parts, d["dlmp"], atol=1e-9)
    np.testing.assert_allclose(d["energy"], WHOLESALE / 1000, atol=1e-9)
    # The 100 kVA transformer is a thermal limit of the network model: no overload in AC.
    v = results.violations
    net = v[(v.paradigm == "layered-network") & (v.kind == "trafo_overload")]
    central = v[(v.paradigm == "grand-central") & (v.kind == "trafo_overload")]
    assert len(net) <= len(central)
    assert (
        results.grid[results.grid.paradigm == "layered-network"]["trafo_loading_pct"] <= 100.5
    ).all()


def test_dso_clearing_network_makes_layered_clear_on_the_feeder(tmp_path: Path) -> None:
    raw = scenario(tmp_path, paradigms=["layered"], end="2016-07-12T22:00:00Z")
    uniform = runner.run(parse_scenario(raw))
    network = runner.run(parse_scenario({**raw, "dso": {"clearing": "network"}}))
    assert uniform.dlmp.empty and not network.dlmp.empty
    assert set(network.dlmp["paradigm"]) == {"layered"}


def test_money_adds_up_in_a_run(results: SimResults) -> None:
    """What homes and the aggregator pay = what the DSO keeps + what it pays upstream; and
    under a uniform price with every interval its own power-flow step or not, the energy
    part of the bills follows the market table."""
    k = results.kpis
    for p in results.paradigms:
        assert k.loc["total_cost_usd", p] == pytest.approx(
            k.loc["dso_revenue_usd", p] + k.loc["wholesale_purchases_usd", p]
        )
        # Purchases are at least the wholesale value of the area's energy at market level.
        m = results.market[results.market.paradigm == p]
        assert k.loc["wholesale_purchases_usd", p] == pytest.approx(
            (m["wholesale_price"] * m["area_kw"]).sum() * 0.25, rel=0.15
        )


def test_bills_are_price_times_energy(results: SimResults) -> None:
    b = results.bills[results.bills.paradigm == "baseline"]
    np.testing.assert_allclose(b["bill_usd"], 0.16 * (b["import_kwh"] - b["export_kwh"]))
    assert set(b["group"]) <= {"none", "ev"}


def test_grid_results_are_the_ac_power_flow(results: SimResults) -> None:
    g = results.grid
    assert (g["losses_kw"] >= 0).all() and g["v_min_pu"].between(0.8, 1.1).all()
    k = results.kpis
    pf_h = 0.5
    for p in results.paradigms:
        sub = g[g.paradigm == p]["substation_kw"]
        assert k.loc["peak_import_kw", p] == pytest.approx(sub.max())
        assert k.loc["energy_import_kwh", p] == pytest.approx(sub.clip(lower=0).sum() * pf_h)


def test_kpi_arithmetic_on_a_hand_made_run() -> None:
    t = pd.date_range("2026-07-01", periods=2, freq="1h", tz="UTC")
    res = SimResults(
        scenario="s",
        feeder="f",
        paradigms=("a",),
        market=pd.DataFrame(
            {
                "paradigm": "a",
                "time": t,
                "price": [0.1, 0.3],
                "wholesale_price": 0.05,
                "area_kw": [10, -5],
            }
        ),
        grid=pd.DataFrame(
            {
                "paradigm": "a",
                "time": t,
                "substation_kw": [10.0, -4.0],
                "losses_kw": [1.0, 0.5],
                "v_min_pu": [0.96, 0.94],
                "v_max_pu": [1.0, 1.06],
                "max_line_loading_pct": [50, 120],
                "trafo_loading_pct": [20, 30],
            }
        ),
        bills=pd.DataFrame(
            {
                "paradigm": "a",
                "home": [0, 1],
                "group": ["none", "pv"],
                "import_kwh": [2, 1],
                "export_kwh": [0, 3],
                "bill_usd": [1.0, 3.0],
            }
        ),
        violations=pd.DataFrame(
            {
                "paradigm": "a",
                "time": [t[1]] * 3,
                "element": ["b1", "b2", "l1"],
                "kind": ["undervoltage", "overvoltage", "line_overload"],
                "magnitude": [0.01, 0.01, 20.0],
            }
        ),
        kpis=pd.DataFrame(),
    )
    totals = {
        "a": {
            "pv_curtailed_kwh": 1.5,
            "ev_unmet_kwh": 0.0,
            "comfort_violation_kh": 2.0,
            "wholesale_purchases_usd": 0.5,
            "aggregator_revenue_usd": 0.0,
            "dso_revenue_usd": 3.5,
            "participant_cost_usd": 4.0,
        }
    }
    k = compute_kpis(res, totals, pf_hours=1.0)["a"]
    assert k["peak_import_kw"] == 10 and k["energy_import_kwh"] == 10
    assert k["energy_export_kwh"] == 4 and k["losses_kwh"] == 1.5
    assert k["voltage_violations"] == 2 and k["thermal_overloads"] == 1
    assert k["reverse_flow_h"] == 1 and k["worst_v_min_pu"] == 0.94
    assert k["mean_price_usd_per_kwh"] == pytest.approx(0.2) and k["max_price_usd_per_kwh"] == 0.3
    assert k["mean_bill_usd"] == 2.0 and k["pv_curtailed_kwh"] == 1.5
    assert k["total_cost_usd"] == 4.0 and k["wholesale_purchases_usd"] == 0.5


def test_broken_energy_balance_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = parse_scenario(scenario(tmp_path, paradigms=["layered"]))
    real = paradigms.pass_down

    def leaky(layer: Any, children: Any, award: Any, *args: Any) -> Any:
        internal, child = real(layer, children, award, *args)
        return internal, child * 0.9  # children take 10 % less than the node was awarded

    monkeypatch.setattr(paradigms, "pass_down", leaky)
    with pytest.raises(BalanceError):
        runner.run(sc)


def test_area_balance_check_catches_a_mismatch() -> None:
    paradigms.check_area_balance(np.array([5.0, 5.0]), 10.5, 0.5)  # balanced: no error
    with pytest.raises(BalanceError, match="area market"):
        paradigms.check_area_balance(np.array([5.0, 5.0]), 11.0, 0.0)


def test_bad_device_parameter_names_the_field(tmp_path: Path) -> None:
    sc = parse_scenario(
        scenario(tmp_path, der={"penetration": {"pv": 50}, "config": {"pv": {"capacity_kw": -3.0}}})
    )
    with pytest.raises(InvalidInputError, match="capacity_kw"):
        runner.run(sc)


def test_cli_json_report_and_missing_file(tmp_path: Path) -> None:
    raw = scenario(tmp_path, paradigms=["baseline", "layered"], end="2016-07-12T22:00:00Z")
    path = tmp_path / "s.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for table in ("der", "market", "wholesale"):
        lines.append(f"[{table}]")
        for k, v in raw[table].items():
            if isinstance(v, dict):
                v = "{ " + ", ".join(f"{a} = {b}" for a, b in v.items()) + " }"
                lines.append(f"{k} = {v}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    assert load_scenario(path).name == "small"
    cli = CliRunner()
    res = cli.invoke(app, ["simulate", str(path), "--json", "--report", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    kpis = json.loads(res.stdout)["paradigms"]
    assert set(kpis) == {"baseline", "layered"} and "peak_import_kw" in kpis["layered"]
    assert (tmp_path / "rep" / "index.html").is_file()
    assert (tmp_path / "rep" / "tables" / "kpis.parquet").is_file()
    res = cli.invoke(app, ["simulate", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "no such scenario file" in res.stderr
    res = cli.invoke(app, ["simulate", str(path), "--paradigm", "central"])
    assert res.exit_code == 2 and "unknown 'central'" in res.stderr


def test_failed_table_write_leaves_nothing_behind(results: SimResults, tmp_path: Path) -> None:
    broken = replace(results, kpis=pd.DataFrame({"x": [object()]}))  # parquet cannot write it
    with pytest.raises(Exception):  # noqa: B017 — whatever pyarrow raises
        write_tables(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_computation_exits_1_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transactive.errors import PowerFlowError

    def diverge(*args: Any, **kwargs: Any) -> Any:
        raise PowerFlowError("power flow did not converge at 2016-07-12T20:15Z")

    monkeypatch.setattr(runner, "run_powerflow", diverge)
    path = tmp_path / "s.toml"
    path.write_text(
        'feeder = "pandapower:kerber_landnetz_kabel_1"\n'
        'start = "2016-07-12T20:00:00Z"\nend = "2016-07-12T21:00:00Z"\n'
        'paradigms = ["baseline"]\n'
    )
    res = CliRunner().invoke(app, ["simulate", str(path)])
    assert res.exit_code == 1 and "did not converge" in res.stderr


def test_error_messages_show_user_text_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'feeder = "pandapower:kerber_landnetz_kabel_1"\n'
        'start = "2016-07-12T20:00:00Z"\nend = "2016-07-12T21:00:00Z"\n'
        "[der.config.pv]\ncapacity_kw = { weibull = [1, 2] }\n"
    )
    res = CliRunner().invoke(app, ["simulate", str(path)])
    assert res.exit_code == 2
    assert "{ uniform = [lo, hi] }" in res.stderr and "[bold" not in res.stderr
