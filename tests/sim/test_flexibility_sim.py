"""Flexibility ask-bid-commit in the simulator, end to end on a congested SimBench LV grid (a
winter evening overloads the transformer): asks are found, the aggregator's batteries are
committed and deliver, realised violations fall, the commitments are settled against the
baseline with money balancing, and the strategic aggregator costs the DSO more and is flagged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cli_run import cli
from transactive.core.records import COMMITMENTS, FLEX_ASKS, FLEX_OFFERS
from transactive.settlement import check_balance
from transactive.settlement.totals import MINOR
from transactive.sim import runner
from transactive.sim.results import SimResults, write_tables
from transactive.sim.scenario import ScenarioError, parse_scenario

FLEX, STRATEGIC = "bau-flat+flex", "bau-flat+flex-strategic"


def raw(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "congested",
        "feeder": "simbench:1-LV-rural2--0-sw",  # 99 load points, 250 kVA
        "start": "2018-02-26T12:00:00+01:00",  # Monday afternoon: the evening peak …
        "end": "2018-02-27T06:00:00+01:00",  # … and the night after, room for the rebound
        "warmup_days": 0,
        "market_interval_min": 60,
        "designs": ["bau-flat"],
        "seed": 1,
        "homes_per_load": 2,
        "der": {
            "stage": 3,
            "penetration": {"battery": 50},
            "config": {"battery": {"soc0": {"uniform": [0.8, 0.95]}}},
        },
        "aggregator": {"name": "vpp", "devices": ["battery"]},
        "flexibility": {"designs": ["bau-flat"], "strategic": {"markup": 0.8}},
    }
    out.update(over)
    return out


@pytest.fixture(scope="module")
def res() -> SimResults:
    return runner.run(parse_scenario(raw()))


def kpi(res: SimResults, name: str, design: str) -> float:
    return float(res.kpis.loc[name, design])


@pytest.mark.slow
def test_the_scenario_adds_the_variants_and_the_records_have_their_schemas(
    res: SimResults,
) -> None:
    assert res.designs == ("bau-flat", FLEX, STRATEGIC)
    FLEX_ASKS.check(res.flex_asks)
    FLEX_OFFERS.check(res.flex_offers)
    COMMITMENTS.check(res.commitments)
    assert set(res.flex_asks["design"].astype(str)) == {FLEX, STRATEGIC}
    assert res.commitments["resource_id"].astype(str).str.startswith("meter:agg:vpp/").all()
    assert (res.commitments["buyer"].astype(str) == "dso:area").all()
    assert not (res.flex_offers["kw"] < 0).any()


@pytest.mark.slow
def test_asks_are_committed_and_realised_violations_fall(res: SimResults) -> None:
    ev = res.evaluated
    asks = ev(res.flex_asks)
    assert (asks["reason"].astype(str).str.contains("overload")).any()
    orders = res.flex_orders[res.flex_orders["design"] == FLEX]
    assert "committed" in set(orders["status"])
    assert kpi(res, "flex_committed_kwh", FLEX) > 20.0
    bau = kpi(res, "trafo_overload_h", "bau-flat")
    assert bau >= 1.0  # the grid is congested under business as usual
    assert kpi(res, "trafo_overload_h", FLEX) < bau
    assert kpi(res, "violations_avoided_h", FLEX) > 0
    assert kpi(res, "violations_avoided_h", "bau-flat") == 0.0
    # the batteries really moved: the flex design's aggregator meters discharge at the peak
    com = ev(res.commitments[res.commitments["design"] == FLEX])
    d = res.dispatch
    agg = d[(d["design"] == FLEX) & d["participant_id"].astype(str).str.startswith("agg:")]
    t = pd.DatetimeIndex(com["interval_start"]).unique()
    at_peak = agg[agg["interval_start"].isin(t)]["power_kw"].sum()
    assert at_peak < -0.8 * com["committed_kw"].sum()


@pytest.mark.slow
def test_commitments_are_settled_against_the_baseline_and_money_balances(
    res: SimResults,
) -> None:
    lines = res.settlement
    flex = lines[lines["charge"].astype(str).str.startswith("flex_")]
    assert {"flex_availability", "flex_utilisation"} <= set(flex["charge"].astype(str))
    assert set(flex["design"].astype(str)) == {FLEX, STRATEGIC}
    pays = flex[flex["charge"] != "flex_penalty"]
    assert (pays["participant_id"].astype(str) == "dso:area").all()
    assert (pays["counterparty_id"].astype(str) == "agg:vpp").all()
    # money balances: payers pay what payees receive, per design
    from transactive.sim.world import build_world

    check_balance(lines, build_world(parse_scenario(raw())).plan.tree, None)
    # the KPI is the DSO's net payment in the settlement lines
    mine = flex[flex["design"] == FLEX]
    net = mine["amount"][mine["charge"] != "flex_penalty"].sum()
    net -= mine["amount"][mine["charge"] == "flex_penalty"].sum()
    assert kpi(res, "flex_cost_eur", FLEX) == pytest.approx(net / MINOR)
    # delivery: the batteries delivered what they committed, measured against the baseline
    committed, delivered = (
        kpi(res, "flex_committed_kwh", FLEX),
        kpi(res, "flex_delivered_kwh", FLEX),
    )
    assert 0.9 * committed <= delivered <= committed + 1e-6
    assert 0.0 < kpi(res, "flex_cost_per_kwh_eur", FLEX) < 0.3  # € per kWh of relief


@pytest.mark.slow
def test_the_baseline_is_the_meter_before_the_event(res: SimResults) -> None:
    """Independent check of one utilisation line: baseline = mean of the meter's 4 readings
    before the event window (meter-before-meter-after), delivered = baseline − net."""
    com = res.evaluated(res.commitments[res.commitments["design"] == FLEX])
    row = com.sort_values("committed_kw").iloc[-1]
    m = res.meter[
        (res.meter["design"] == FLEX) & (res.meter["resource_id"] == row["resource_id"])
    ].set_index("interval_start")
    net = (m["import_kwh"] - m["export_kwh"]).sort_index()
    window = pd.DatetimeIndex(
        com[com["resource_id"] == row["resource_id"]]["interval_start"]
    ).sort_values()
    start = window[0]
    while start - pd.Timedelta(hours=1) in window:
        start -= pd.Timedelta(hours=1)
    before = net[(net.index < start) & (net.index >= start - pd.Timedelta(hours=4))]
    delivered = before.mean() - net[row["interval_start"]]
    lines = res.settlement
    u = lines[
        (lines["design"] == FLEX)
        & (lines["charge"] == "flex_utilisation")
        & (lines["resource_id"] == row["resource_id"])
        & (lines["interval_start"] == row["interval_start"])
    ]
    assert float(u["quantity_kwh"].iloc[0]) == pytest.approx(
        min(max(delivered, 0.0), row["committed_kw"] * row["duration_h"]), abs=1e-6
    )


@pytest.mark.slow
def test_the_strategic_aggregator_costs_the_dso_more_and_is_flagged(res: SimResults) -> None:
    truthful, strategic = kpi(res, "flex_cost_eur", FLEX), kpi(res, "flex_cost_eur", STRATEGIC)
    assert strategic > 3 * truthful > 0
    assert kpi(res, "flex_cost_per_kwh_eur", STRATEGIC) > kpi(res, "flex_cost_per_kwh_eur", FLEX)
    assert kpi(res, "flex_pivotal_share", STRATEGIC) > 0  # the only provider: pivotal
    assert kpi(res, "flagged_offers", STRATEGIC) > 0
    assert kpi(res, "flagged_offers", FLEX) == 0
    offers = res.flex_offers
    price = offers.groupby("design", observed=True)["price"].mean()
    assert price[STRATEGIC] > price[FLEX]
    assert (offers["price"] <= 1.0 + 1e-9).all()  # never above the ask's ceiling


@pytest.mark.slow
def test_the_flex_tables_are_written(res: SimResults, tmp_path: Path) -> None:
    write_tables(res, tmp_path)
    for name in ("flex_asks", "flex_offers", "commitments", "flex_orders"):
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert len(back) == len(getattr(res, name)) > 0


def test_bad_flexibility_sections_name_the_key() -> None:
    with pytest.raises(ScenarioError, match=r"'flexibility\.designs\.0': unknown inner design"):
        parse_scenario(raw(flexibility={"designs": ["nope"]}))
    with pytest.raises(ScenarioError, match=r"'designs\.1'.*needs its inner design"):
        parse_scenario(raw(designs=["bau-flat", "bau-tou+flex"]))
    with pytest.raises(ScenarioError, match=r"'flexibility\.baseline': unknown baseline"):
        parse_scenario(raw(flexibility={"baseline": "yesterday"}))
    with pytest.raises(ScenarioError, match=r"'designs\.1': unknown design 'nope\+flex'"):
        parse_scenario(raw(designs=["bau-flat", "nope+flex"], flexibility=None))


def test_the_cli_refuses_a_bad_flexibility_section(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(
        'feeder = "simbench:1-LV-rural2--0-sw"\nstart = "2018-02-26T00:00:00+01:00"\n'
        'end = "2018-02-27T00:00:00+01:00"\ndesigns = ["bau-flat"]\n'
        '[flexibility]\ndesigns = ["bau-flat"]\npenalty_factor = -1\n'
    )
    r = cli("simulate", p)
    assert r.returncode == 2
    assert "'flexibility.penalty_factor'" in r.stderr and "bad.toml" in r.stderr


@pytest.mark.slow
def test_the_cli_simulates_the_flexibility_variant(tmp_path: Path) -> None:
    body = raw()
    lines = [f"{k} = {json.dumps(v)}" for k, v in body.items() if not isinstance(v, dict)]
    lines += [
        "[der]\nstage = 3\npenetration = { battery = 50 }",
        '[aggregator]\nname = "vpp"\ndevices = ["battery"]',
        '[flexibility]\ndesigns = ["bau-flat"]',
    ]
    p = tmp_path / "flex.toml"
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = cli("simulate", p, "--design", "bau-flat", "--design", FLEX, "--json", "--out", out)
    assert r.returncode == 0, r.stderr  # incl. settling the records again to the same lines
    assert (out / "commitments.parquet").is_file()
    doc = json.loads(r.stdout)
    text = json.dumps(doc)
    for name in ("flex_committed_kwh", "flex_cost_eur", "violations_avoided_h", "flex_hhi_max"):
        assert name in text
