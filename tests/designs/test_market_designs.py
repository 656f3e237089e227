"""The market designs on a small feeder whose wholesale schedule it cannot carry: a price
dip makes every EV and battery charge at once. Grand central lets the wholesale market
schedule them and the DSO unwinds the overload in real time (intervention, tier-bypass
cost); total DSO offers a network-feasible curve and never overloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.sim.results import SimResults
from transactive.sim.scenario import parse_scenario


def dip_scenario(tmp: Path, **over: Any) -> dict[str, Any]:
    prices = tmp / "dip.csv"
    prices.write_text(
        "start,price\n2016-07-01T00:00:00Z,300\n2016-07-12T22:00:00Z,5\n2016-07-13T00:00:00Z,300\n"
    )
    raw: dict[str, Any] = {
        "name": "dip",
        "feeder": "pandapower:kerber_landnetz_kabel_1",  # 8 load points, 100 kVA
        "start": "2016-07-12T20:00:00Z",
        "end": "2016-07-13T02:00:00Z",
        "warmup_days": 0,
        "region": "us",  # amounts in $: the price file is the user's
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "designs": ["grand-central", "total-dso"],
        "seed": 3,
        "homes_per_load": 4,
        "der": {"penetration": {"ev": 100, "hvac": 50, "battery": 50}},
        "market": {"floor": 0.0, "cap": 2.0},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def dip(tmp_path_factory: pytest.TempPathFactory) -> SimResults:
    return runner.run(parse_scenario(dip_scenario(tmp_path_factory.mktemp("dip"))))


def test_grand_central_intervenes_where_the_wholesale_schedule_overloads(
    dip: SimResults,
) -> None:
    m = dip.market
    gc = m[m["design"] == "grand-central"]
    assert gc["intervention_kwh"].sum() > 10.0  # the DSO unwound the schedule
    # It intervenes in the dip (cheap energy: everything charges), not before it.
    during = gc["time"] >= pd.Timestamp("2016-07-12T22:00Z")
    assert gc.loc[during, "intervention_kwh"].sum() > 0.9 * gc["intervention_kwh"].sum()
    assert (m[m["design"] == "total-dso"]["intervention_kwh"] == 0).all()
    k = dip.kpis
    assert k.loc["intervention_kwh", "grand-central"] == pytest.approx(gc["intervention_kwh"].sum())
    assert k.loc["tier_bypass_cost_usd", "grand-central"] > 0
    assert k.loc["tier_bypass_cost_usd", "total-dso"] == 0
    # Grand central's day-ahead schedule at the dip is beyond the transformer (100 kVA).
    a = dip.awards
    tso = a[(a["node_id"] == "tso") & (a["design"] == "grand-central")]
    da = tso[tso["stage"] == "day-ahead"].set_index("interval_start")["quantity_kw"]
    assert da.max() > 100.0


def test_total_dso_keeps_the_network_within_its_limits(dip: SimResults) -> None:
    g = dip.grid
    tdso = g[g["design"] == "total-dso"]
    assert (tdso["trafo_loading_pct"] <= 100.5).all()
    assert (tdso["max_line_loading_pct"] <= 100.5).all()
    # The network binds: inside the area the DLMP rises above the substation price.
    d = dip.dlmp[dip.dlmp["time"] >= pd.Timestamp("2016-07-12T22:00Z")]
    assert (d["congestion"] > 1e-6).any()
    a = dip.awards
    tso = a[(a["node_id"] == "tso") & (a["design"] == "total-dso")]
    assert (tso["quantity_kw"] <= 101.0).all()  # day-ahead and real time: feasible


def test_total_dso_clears_a_merit_order_with_network_feasible_area_curves(
    tmp_path: Path,
) -> None:
    raw = dip_scenario(
        tmp_path,
        designs=["total-dso"],
        end="2016-07-12T21:00:00Z",
        wholesale={"source": "merit-order", "system_scale": 2.0},
    )
    res = runner.run(parse_scenario(raw))
    a = res.awards
    rt = a[a["stage"] == "real-time"]
    tso = rt[rt["node_id"] == "tso"]["quantity_kw"].to_numpy()
    dso = rt[rt["node_id"].astype(str).str.startswith("dso:")]["quantity_kw"].to_numpy()
    np.testing.assert_allclose(tso, dso)  # one area: the TSO takes what the DSO imports
    assert (res.grid["trafo_loading_pct"] <= 100.5).all()
    assert res.market["wholesale_price"].gt(0).all()
