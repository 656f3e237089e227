"""The simulation end to end on a small feeder: design behaviour with known answers, records
with identity, energy and money balances, the v1 engine's results, a design added as one
class, and computation failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import transactive.nodes.tree as tree_module
import transactive.sim.runner as runner
from transactive.core.curves import Curves, FloatArray, quantity_at
from transactive.core.records import AWARDS, BIDS, DISPATCH, IDENTITY, METER, SETTLEMENT
from transactive.designs import register, registry
from transactive.designs.base import Clearing, Design, Stage
from transactive.designs.total_dso import check_area_balance
from transactive.errors import BalanceError, PowerFlowError
from transactive.nodes.tree import roll_up
from transactive.sim.kpis import kpi_names
from transactive.sim.results import SimResults
from transactive.sim.scenario import ScenarioError, parse_scenario

WHOLESALE = 40.0  # $/MWh, flat
DESIGNS = ["bau-flat", "bau-tou", "tou-responsive", "grand-central", "total-dso"]


def scenario(tmp_path: Path, **over: Any) -> dict[str, Any]:
    prices = tmp_path / "prices.csv"
    prices.write_text(f"start,price\n2016-07-01T00:00:00Z,{WHOLESALE}\n")
    raw: dict[str, Any] = {
        "name": "small",
        "region": "us",  # the US bundle: merit order/prices in $, ANSI band, New York clock
        "feeder": "pandapower:kerber_landnetz_kabel_1",  # 8 load points, 100 kVA
        "start": "2016-07-12T20:00:00Z",
        "end": "2016-07-13T02:00:00Z",  # evening: EVs arrive, PV gone
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "designs": DESIGNS,
        "warmup_days": 0,
        "seed": 3,
        "homes_per_load": 4,
        "der": {"penetration": {"ev": 100, "hvac": 50, "battery": 25}},
        "market": {"floor": 0.0, "cap": 2.0},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> SimResults:
    tmp = tmp_path_factory.mktemp("sim")
    return runner.run(parse_scenario(scenario(tmp)))


def test_every_design_reports_every_kpi(results: SimResults) -> None:
    assert list(results.kpis.columns) == DESIGNS
    assert list(results.kpis.index) == [
        k
        for k in kpi_names("USD")
        if not k.startswith(("capacity", "deferral", "p2p", "flex_"))
        and k not in ("violations_avoided_h", "flagged_offers")
    ]  # no optional stage in this run: their rows are left out
    assert len(results.market) == 5 * 24 and len(results.grid) == 5 * 12
    assert results.kpis.notna().all().all()


def test_records_carry_identity_on_every_row(results: SimResults) -> None:
    for schema in (BIDS, AWARDS, DISPATCH, METER, SETTLEMENT):
        table = getattr(results, schema.name)
        schema.check(table)
        assert len(table)
        for c in IDENTITY:
            assert table[c.name].notna().all(), (schema.name, c.name)
    # Every bid, award and meter reading is keyed by design, market, node and interval.
    a = results.awards
    assert not a.duplicated(["design", "stage", "node_id", "interval_start"]).any()
    assert set(a["design"]) == set(DESIGNS)
    homes = a[a["node_id"].astype(str).str.startswith("home:")]
    assert (homes["market_id"].astype(str).str.startswith(("dso:", "feeder:"))).all()
    # Devices that bid the wholesale market directly still sit at their own node.
    b = results.bids[results.bids["design"] == "grand-central"]
    assert set(b["market_id"].astype(str)) == {"tso"}
    assert b["node_id"].astype(str).str.startswith(("home:", "agg:")).all()
    # The substation meters carry the stage of their design, as every other record.
    m = results.meter
    assert set(m[m["design"] == "total-dso"]["stage"].astype(str)) == {"real-time"}
    assert set(m[m["design"] == "bau-flat"]["stage"].astype(str)) == {"tariff"}


def test_market_designs_hold_a_day_ahead_position_for_every_node(results: SimResults) -> None:
    a = results.awards
    for d in ("grand-central", "total-dso"):
        mine = a[a["design"] == d]
        da = mine[mine["stage"] == "day-ahead"].set_index(["node_id", "interval_start"])
        rt = mine[mine["stage"] == "real-time"].set_index(["node_id", "interval_start"])
        assert da.index.sort_values().equals(rt.index.sort_values())
        # Day-ahead positions come from forecasts: close to, but not the same as, real time.
        tso = mine[mine["node_id"] == "tso"]
        q = tso.pivot(index="interval_start", columns="stage", values="quantity_kw")
        assert not np.allclose(q["day-ahead"], q["real-time"])
        assert q["day-ahead"].sum() == pytest.approx(q["real-time"].sum(), rel=0.3)
    # The day-ahead stage of a price series prices at the series; real time deviates.
    gc = a[(a["design"] == "grand-central") & (a["node_id"] == "tso")]
    np.testing.assert_allclose(gc[gc["stage"] == "day-ahead"]["price"], WHOLESALE / 1000)
    assert gc[gc["stage"] == "real-time"]["price"].std() > 0


def test_tariff_designs_see_the_tariff(results: SimResults) -> None:
    m = results.market
    np.testing.assert_allclose(m[m.design == "bau-flat"]["price"], 0.16)
    for d in ("bau-tou", "tou-responsive"):
        tou = m[m.design == d].set_index("time")["price"]
        # 16–21 h local in New York summer time (UTC−4) is 20:00–01:00 UTC: the run (20:00–02:00
        # UTC) is at the peak price until 01:00 and off-peak after.
        np.testing.assert_allclose(tou.iloc[:20], 0.34)
        np.testing.assert_allclose(tou.iloc[20:], 0.11)
    # bau-tou: the tariff changes, the devices do not react.
    d = results.dispatch
    flat = d[d["design"] == "bau-flat"]["power_kw"].to_numpy()
    np.testing.assert_allclose(d[d["design"] == "bau-tou"]["power_kw"].to_numpy(), flat)
    assert not np.allclose(d[d["design"] == "tou-responsive"]["power_kw"].to_numpy(), flat)


def test_total_dso_prices_every_bus_and_keeps_the_network(results: SimResults) -> None:
    d = results.dlmp
    assert set(d["design"]) == {"total-dso"}
    assert d.groupby("time").size().min() > 1  # one price per energised bus
    parts = d["energy"] + d["loss"] + d["congestion"] + d["voltage"]
    np.testing.assert_allclose(parts, d["dlmp"], atol=1e-9)
    g = results.grid
    assert (g[g.design == "total-dso"]["trafo_loading_pct"] <= 100.5).all()
    assert (g[g.design == "bau-flat"]["trafo_loading_pct"] > 100.5).any()


def test_money_balances_and_the_dso_recovers_the_same_revenue_in_every_design(
    results: SimResults,
) -> None:
    """Revenue neutrality: every DSO nets what it kept in business as usual, in every design,
    to the cent; every design's payments between stakeholders sum to zero to the cent; the
    energy lines are metered energy × the award price of their node, two-settled in the
    market designs."""
    k = results.kpis
    dso = k.loc["dso_revenue_usd"]
    assert (dso - dso["bau-flat"]).abs().max() < 0.005
    for d in DESIGNS:
        assert k.loc["total_cost_usd", d] == pytest.approx(
            k.loc["dso_revenue_usd", d] + k.loc["wholesale_purchases_usd", d]
        )
    v = results.value
    for d in DESIGNS:
        rows = v[v["design"] == d]
        assert abs(float((rows["members"] * rows["amount"]).sum())) < 0.005
    s = results.settlement
    for charge in ("energy", "day_ahead", "real_time"):
        part = s[s["charge"] == charge]  # cents, each line rounded once (half to even)
        np.testing.assert_array_equal(
            part["amount"], np.rint(part["quantity_kwh"] * part["price"] * 100).astype(np.int64)
        )
    assert set(s[s["design"] == "total-dso"]["charge"]) == {"day_ahead", "real_time", "network"}
    flat = s[s["design"] == "bau-flat"]
    assert set(flat["charge"]) == {"energy", "network"}
    assert (flat[flat["charge"] == "network"]["amount"] == 0).all()  # R − R = 0
    # The market designs recover the requirement with a fixed charge per home connection.
    net = s[(s["charge"] == "network") & (s["design"] == "total-dso")]
    assert net["participant_id"].astype(str).str.startswith("home:").all()
    assert np.ptp(net["amount"]) <= 1 and float(net["amount"].min()) > 0  # to the cent


def test_bills_are_price_times_energy(results: SimResults) -> None:
    b = results.bills[results.bills.design == "bau-flat"]
    # Each interval's line is rounded to the cent once (half to even), then summed exactly.
    m = results.evaluated(results.meter)
    m = m[(m["design"] == "bau-flat").to_numpy()]
    cents = np.rint((m["import_kwh"] - m["export_kwh"]).to_numpy() * 0.16 * 100).astype(np.int64)
    want = pd.Series(cents).groupby(m["participant_id"].astype(str).to_numpy()).sum() / 100
    np.testing.assert_array_equal(b["bill"], want.reindex(b["home"]).to_numpy())
    n = m.groupby(m["participant_id"].astype(str))["import_kwh"].size().max()
    kwh = b["import_kwh"] - b["export_kwh"]
    assert (b["bill"] - 0.16 * kwh).abs().max() <= 0.005 * n
    assert set(b["group"]) <= {
        "none",
        "ev",
        "battery",
        "battery+ev",
        "hp",
        "ev+hp",
        "battery+hp",
        "battery+ev+hp",
    }


def test_energy_balances_at_every_substation_meter(results: SimResults) -> None:
    """Per design and power-flow step: the substation meter = the participants' meters +
    the AC power flow's losses, to the meters' resolution (1 Wh, half of it per meter)."""
    m = results.meter
    sub = m["node_id"].astype(str).str.startswith("dso:")
    net = (
        (m["import_kwh"] - m["export_kwh"])
        .groupby([m["design"].astype(str), m["interval_start"], sub])
        .sum()
        .unstack()
    )
    g = results.grid.set_index(["design", "time"])["losses_kw"]
    step = net.index.get_level_values(1).floor("30min")
    losses_kwh = g.reindex(list(zip(net.index.get_level_values(0), step, strict=True))).to_numpy()
    resolution_kwh = 0.0005 * m["resource_id"].nunique()  # every reading rounded to 1 Wh
    np.testing.assert_allclose(net[True], net[False] + losses_kwh * 0.25, atol=resolution_kwh)
    assert (m["import_kwh"] * 1000).round(9).mod(1).eq(0).all()  # whole Wh: the signed values


def test_grid_results_are_the_ac_power_flow(results: SimResults) -> None:
    g = results.grid
    assert (g["losses_kw"] >= 0).all() and g["v_min_pu"].between(0.8, 1.1).all()
    k = results.kpis
    for d in DESIGNS:
        sub = g[g.design == d]["substation_kw"]
        assert k.loc["peak_import_kw", d] == pytest.approx(sub.max())
        assert k.loc["energy_import_kwh", d] == pytest.approx(sub.clip(lower=0).sum() * 0.5)


def test_dispatch_is_the_award_where_the_devices_can(results: SimResults) -> None:
    d = results.dispatch[results.dispatch["design"] == "total-dso"]
    assert (d["power_kw"] - d["setpoint_kw"]).abs().max() < 1e-6


def test_designs_match_the_v1_engine() -> None:
    """The time-of-use design keeps the v1 engine's results: on the summer demo (8 h, one
    home per load point, no warm-up) ``tou-responsive`` equals what the v1 engine computed for
    ``tou`` (tests/sim/data). The market designs changed on purpose (day-ahead stage,
    network-feasible area curves, the DSO's intervention)."""
    golden = json.loads((Path(__file__).parent / "data" / "engine_v1_summer_8h.json").read_text())
    raw = {
        "feeder": "simbench:1-LV-semiurb4--0-sw",
        "start": "2016-07-12T14:00:00Z",
        "end": "2016-07-12T22:00:00Z",
        "designs": ["tou-responsive"],
        "warmup_days": 0,
        "seed": 7,
        "der": {"stage": 3},
        "aggregator": {"devices": ["battery"]},
        "region": "us",
        "timezone": "Etc/GMT+5",  # the v1 engine's clock: UTC−5 without daylight saving
    }
    res = runner.run(parse_scenario(raw))
    for kpi, want in golden["kpis"]["tou"].items():
        if kpi in res.kpis.index and not kpi.endswith("_usd"):
            assert res.kpis.loc[kpi, "tou-responsive"] == pytest.approx(want, rel=1e-9, abs=1e-9), (
                kpi
            )


class RealTimePricing(Design):
    """A design added as one class: homes see the wholesale forecast of the interval as
    their retail price (real-time pricing) and buy as price-takers."""

    name = "rtp-test"
    summary = "real-time pricing at the wholesale forecast"

    def forecast(self, t: int) -> FloatArray:
        return self.setting.forecast[t : t + self.setting.horizon]

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        price = float(self.setting.forecast[t])
        kw = quantity_at(bids, price)
        return Clearing(
            stage="real-time",
            device_kw=kw,
            device_price=np.full(bids.n, price),
            node_kw=roll_up(self.setting.plan, kw),
            node_price=self._full(price),
            status="cleared",
            wholesale_price=price,
        )


def test_a_new_design_is_one_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone afterwards
    register(RealTimePricing)
    raw = scenario(tmp_path, designs=["rtp-test", "bau-flat"], end="2016-07-12T22:00:00Z")
    res = runner.run(parse_scenario(raw))
    assert list(res.kpis.columns) == ["rtp-test", "bau-flat"]
    m = res.market[res.market.design == "rtp-test"]
    np.testing.assert_allclose(m["price"], WHOLESALE / 1000)
    assert set(res.settlement["design"]) == {"rtp-test", "bau-flat"}


def test_broken_energy_balance_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = parse_scenario(scenario(tmp_path, designs=["total-dso"], end="2016-07-12T21:00:00Z"))
    real = tree_module.layer_pass_down

    def leaky(layer: Any, children: Any, award: Any, *args: Any, **kwargs: Any) -> Any:
        internal, child = real(layer, children, award, *args, **kwargs)
        return internal, child * 0.9  # children take 10 % less than the node was awarded

    monkeypatch.setattr(tree_module, "layer_pass_down", leaky)
    with pytest.raises(BalanceError):
        runner.run(sc)


def test_area_balance_check_catches_a_mismatch() -> None:
    check_area_balance(np.array([5.0, 5.0]), 10.5, 0.5)  # balanced: no error
    with pytest.raises(BalanceError, match="area market"):
        check_area_balance(np.array([5.0, 5.0]), 11.0, 0.0)


def test_bad_device_parameter_is_rejected_at_the_edge(tmp_path: Path) -> None:
    bad = {"penetration": {"pv": 50}, "config": {"pv": {"capacity_kw": -3.0}}}
    with pytest.raises(ScenarioError, match=r"der\.config\.pv\.capacity_kw"):
        parse_scenario(scenario(tmp_path, der=bad))


def test_a_failed_power_flow_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def diverge(*args: Any, **kwargs: Any) -> Any:
        raise PowerFlowError("power flow did not converge at 2016-07-12T20:15Z")

    monkeypatch.setattr(runner.PowerFlow, "run", diverge)
    with pytest.raises(PowerFlowError, match="did not converge"):
        runner.run(parse_scenario(scenario(tmp_path, designs=["bau-flat"])))


def test_results_tables_are_tidy(results: SimResults) -> None:
    assert isinstance(results.participants, pd.DataFrame)
    roles = dict(
        zip(results.participants["participant_id"], results.participants["role"], strict=True)
    )
    assert roles["tso"] == "tso" and roles["agg:vpp"] == "aggregator"
    assert sum(r == "home" for r in roles.values()) == 32


def test_the_voltage_band_comes_from_the_scenario(tmp_path: Path) -> None:
    raw = scenario(tmp_path, designs=["bau-flat"], end="2016-07-12T22:00:00Z")
    wide = runner.run(parse_scenario(raw))
    tight = runner.run(parse_scenario({**raw, "grid": {"v_min_pu": 0.995, "v_max_pu": 1.1}}))
    assert (tight.v_min_pu, tight.v_max_pu) == (0.995, 1.1) and wide.v_min_pu == 0.95
    under = tight.violations[tight.violations["kind"] == "undervoltage"]
    assert len(under) > len(wide.violations[wide.violations["kind"] == "undervoltage"])
    assert (under["limit"] == 0.995).all()


def test_value_table_partitions_everyone_with_levies_and_vat(tmp_path: Path) -> None:
    """The levy and VAT payee is a stakeholder: the rows still sum to 0 in every design."""
    raw = scenario(
        tmp_path,
        designs=["bau-flat", "total-dso"],
        settlement={
            "levies": [{"name": "surcharge", "per_kwh": 0.05, "payee": "state"}],
            "vat_percent": 19.0,
        },
    )
    res = runner.run(parse_scenario(raw))
    v = res.value
    assert set(v.loc[v["stakeholder"] == "state", "design"]) == {"bau-flat", "total-dso"}
    assert (v.loc[v["stakeholder"] == "state", "amount"] < 0).all()  # it receives
    total = (v["members"] * v["amount"]).groupby(v["design"]).sum()
    np.testing.assert_allclose(total.to_numpy(), 0.0, atol=1e-6)
    assert "payee" in set(res.participants["role"])
