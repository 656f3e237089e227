"""The p2p design end to end on a small sunny feeder: homes trade PV surplus within their
limits and preferences, the retailer settles only the rest, money balances, KPIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.grid import load_feeder
from transactive.grid.model import feeder_sections
from transactive.sim.results import SimResults
from transactive.sim.scenario import parse_scenario

DESIGNS = ["bau-flat", "bau-p2p"]
FLAT, FEED_IN, CHARGE = 0.16, 0.05, 0.02


def raw(tmp_path: Path) -> dict[str, Any]:
    prices = tmp_path / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40.0\n")
    return {
        "name": "sunny",
        "region": "us",
        "feeder": "pandapower:kerber_landnetz_kabel_1",  # 8 load points, 100 kVA
        "start": "2016-07-12T15:00:00Z",  # 11:00 … 14:00 New York time: PV surplus
        "end": "2016-07-12T18:00:00Z",
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "designs": DESIGNS,
        "warmup_days": 0,
        "seed": 5,
        "homes_per_load": 3,
        "der": {"penetration": {"pv": 50, "ev": 30, "hvac": 50}},
        "tariff": {"flat": FLAT},
        "p2p": {"feed_in": FEED_IN, "network_charge": CHARGE, "local_only_percent": 40,
                "green_only_percent": 30},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }  # fmt: skip


@pytest.fixture(scope="module")
def res(tmp_path_factory: pytest.TempPathFactory) -> SimResults:
    return runner.run(parse_scenario(raw(tmp_path_factory.mktemp("p2p"))))


def test_homes_trade_within_their_limits(res: SimResults) -> None:
    tr = res.trades
    assert len(tr) and (tr["design"] == "bau-p2p").all()
    ok = tr[tr["kwh"] > 0]
    assert ok["kwh"].sum() > 1.0
    assert (ok["price"] >= FEED_IN - 1e-9).all()  # no seller below its limit (≥ feed-in)
    assert (ok["buyer_price"] <= FLAT + 1e-9).all()  # no buyer above the tariff
    np.testing.assert_allclose(ok["buyer_price"], ok["price"] + CHARGE)
    assert (ok["buyer"] != ok["seller"]).all()


def test_trades_never_exceed_what_homes_metered(res: SimResults) -> None:
    tr = res.trades
    m = res.meter[(res.meter["design"] == "bau-p2p").to_numpy()]
    key = m["node_id"].astype(str) + "|" + m["interval_start"].astype(str)
    net = pd.Series((m["import_kwh"] - m["export_kwh"]).to_numpy(), index=key.to_numpy())
    bought = tr.groupby(tr["buyer_node"] + "|" + tr["interval_start"].astype(str))["kwh"].sum()
    sold = tr.groupby(tr["seller_node"] + "|" + tr["interval_start"].astype(str))["kwh"].sum()
    wh = 5e-4  # the meters read whole Wh
    assert (bought <= net.reindex(bought.index) + wh).all()
    assert (sold <= -net.reindex(sold.index) + wh).all()


def test_preferences_are_honoured(res: SimResults, tmp_path: Path) -> None:
    """The design's own draws (same seed): a trade with a local_only home stays in its feeder
    section; a green_only buyer buys from homes with a surplus (PV) only."""
    from transactive.designs.p2p import P2PTariff
    from transactive.sim.world import build_world

    design = P2PTariff(runner.make_setting(build_world(parse_scenario(raw(tmp_path)))))
    tree = design.setting.plan.tree
    at = {str(tree.id[h]): i for i, h in enumerate(design.homes)}
    tr = res.trades[res.trades["kwh"] > 0]
    b = np.array([at[x] for x in tr["buyer_node"]])
    s = np.array([at[x] for x in tr["seller_node"]])
    local = design.local_only[b] | design.local_only[s]
    assert local.any() and (~local).any()
    assert (design.section[b][local] == design.section[s][local]).all()
    assert (design.section[b] >= 0).all()
    f = load_feeder("pandapower:kerber_landnetz_kabel_1")
    sec = feeder_sections(f).section_of_bus
    np.testing.assert_array_equal(design.section, sec[tree.bus[design.homes]])
    assert design.green_only[b].any()  # green-only buyers did trade, with sellers of surplus
    meter = res.meter[(res.meter["design"] == "bau-p2p").to_numpy()]
    exporters = set(meter[meter["export_kwh"] > 0]["node_id"].astype(str))
    assert set(tr["seller_node"]) <= exporters


def test_retailer_settles_only_what_was_not_traded(res: SimResults) -> None:
    s = res.settlement
    p = s[(s["design"] == "bau-p2p").to_numpy()]
    energy = p[(p["charge"] == "energy") & p["node_id"].astype(str).str.startswith("home")]
    tr = res.trades[res.trades["kwh"] > 0]
    m = res.meter[(res.meter["design"] == "bau-p2p").to_numpy()]
    m = m[m["node_id"].astype(str).str.startswith("home")]
    key_m = m["node_id"].astype(str) + "|" + m["interval_start"].astype(str)
    traded = (
        pd.concat(
            [
                tr["kwh"].groupby(tr["buyer_node"] + "|" + tr["interval_start"].astype(str)).sum(),
                -tr["kwh"]
                .groupby(tr["seller_node"] + "|" + tr["interval_start"].astype(str))
                .sum(),
            ]
        )
        .groupby(level=0)
        .sum()
    )
    want = (m["import_kwh"] - m["export_kwh"]).to_numpy() - traded.reindex(key_m).fillna(
        0
    ).to_numpy()
    key_e = energy["node_id"].astype(str) + "|" + energy["interval_start"].astype(str)
    got = pd.Series(energy["quantity_kwh"].to_numpy(), index=key_e.to_numpy())
    np.testing.assert_allclose(got.reindex(key_m).to_numpy(), want, atol=1e-9)
    # exports the retailer buys are paid the feed-in price, imports the tariff
    assert set(np.round(energy["price"], 6)) <= {FEED_IN, FLAT}
    # one line per buyer, payee and price over the settlement period: no charge lost to
    # rounding thousands of few-Wh trades to the cent
    for charge, cents in (("p2p_energy", tr["kwh"] * tr["price"] * 100),
                          ("p2p_network", tr["kwh"] * CHARGE * 100)):  # fmt: skip
        lines = p[p["charge"] == charge]
        assert len(lines) < len(tr)
        assert abs(int(lines["amount"].sum()) - float(cents.sum())) <= 0.5 * len(lines)
        np.testing.assert_allclose(lines["quantity_kwh"].sum(), tr["kwh"].sum())


def test_money_balances_and_the_dso_keeps_its_requirement(res: SimResults) -> None:
    s = res.settlement
    for d in DESIGNS:
        x = s[s["design"] == d]
        paid = x.groupby("participant_id", observed=True)["amount"].sum()
        got = x.groupby("counterparty_id", observed=True)["amount"].sum()
        assert int(paid.sum()) == int(got.sum())
    k = res.kpis
    network = s[(s["design"] == "bau-p2p") & (s["charge"] == "p2p_network")]["amount"].sum()
    assert network / 100 == pytest.approx(CHARGE * res.trades["kwh"].sum(), abs=0.05)
    # the DSO recovers its requirement through its tariff lines and keeps the P2P network
    # charges on top
    assert k.loc["dso_revenue_usd", "bau-p2p"] == pytest.approx(
        k.loc["dso_revenue_usd", "bau-flat"] + network / 100, abs=0.011
    )


def test_kpis(res: SimResults) -> None:
    k = res.kpis
    assert k.loc["p2p_volume_kwh", "bau-flat"] == 0.0
    assert k.loc["p2p_mean_price_usd_per_kwh", "bau-flat"] == 0.0
    vol = k.loc["p2p_volume_kwh", "bau-p2p"]
    assert vol == pytest.approx(res.trades["kwh"].sum())
    assert FEED_IN <= k.loc["p2p_mean_price_usd_per_kwh", "bau-p2p"] <= FLAT - CHARGE


def test_settling_the_written_records_again_gives_the_same_lines(
    res: SimResults, tmp_path: Path
) -> None:
    """The trades are written with the records; settling them again from the signed meter
    readings reproduces the simulator's lines, P2P lines and retail credit included."""
    from transactive.sim.results import write_tables
    from transactive.sim.settle_records import load_records, settle_records

    out = tmp_path / "out"
    write_tables(res, out)
    settled = settle_records(load_records(out))
    assert settled.matches_simulation is True
    assert {"p2p_energy", "p2p_network"} <= set(settled.lines["charge"].astype(str))
