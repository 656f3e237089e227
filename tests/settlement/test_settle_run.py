"""Settlement of a real run (small feeder, the runner's records): every DSO nets the same
revenue in every design, home connections share the true-up equally, and the value table's
stakeholders balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.settlement import dso_net_receipts, value_table
from transactive.sim.results import SimResults
from transactive.sim.scenario import parse_scenario
from transactive.sim.world import World, build_world

DESIGNS = ["bau-flat", "tou-responsive", "total-dso", "grand-central"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimResults, World]:
    prices = tmp_path_factory.mktemp("money") / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n2016-07-12T22:00:00Z,90\n")
    sc = parse_scenario(
        {
            "name": "money",
            "feeder": "pandapower:kerber_landnetz_kabel_1",  # 8 load points, 100 kVA
            "start": "2016-07-12T20:00:00Z",
            "end": "2016-07-13T00:00:00Z",
            "market_interval_min": 15,
            "powerflow_interval_min": 30,
            "designs": DESIGNS,
            "seed": 3,
            "homes_per_load": 3,
            "der": {"penetration": {"ev": 60, "hvac": 50, "battery": 30}},
            "aggregator": {"devices": ["battery"]},
            "wholesale": {"source": "prices", "prices": str(prices)},
        }
    )
    return runner.run(sc), build_world(sc)


def test_every_dso_nets_its_baseline_margin_in_every_design(
    run: tuple[SimResults, World],
) -> None:
    res, world = run
    s = res.settlement
    tree_dsos = res.participants[res.participants["role"] == "dso"]["participant_id"]
    energy = s[s["charge"] != "network"]
    # From the lines alone: the DSO's baseline margin = retail receipts − substation cost.
    base = energy[energy["design"] == "bau-flat"]
    dso = str(tree_dsos.iloc[0])
    margin = int(
        base.loc[base["counterparty_id"] == dso, "amount"].sum()
        - base.loc[base["participant_id"] == dso, "amount"].sum()
    )
    assert margin > 0  # a flat retail tariff above wholesale: the DSO keeps money
    received = s.groupby([s["design"].astype(str), s["counterparty_id"].astype(str)])[
        "amount"
    ].sum()
    paid = s.groupby([s["design"].astype(str), s["participant_id"].astype(str)])["amount"].sum()
    for d in DESIGNS:
        assert received[(d, dso)] - paid[(d, dso)] == margin  # to the cent
    got = dso_net_receipts(s, world.plan.tree)[dso]
    np.testing.assert_array_equal(got.reindex(DESIGNS), margin)
    net = s[s["charge"] == "network"]
    assert set(net["design"].astype(str)) == set(DESIGNS)
    per_design = net.groupby(net["design"].astype(str))["amount"]
    # One charge per connection, the cents left over by the largest remainder.
    assert (per_design.max() - per_design.min()).max() <= 1
    assert per_design.sum()["bau-flat"] == 0
    assert len(net) == len(DESIGNS) * int((res.participants["role"] == "home").sum())


def test_value_table_balances_and_the_dso_change_is_zero(
    run: tuple[SimResults, World],
) -> None:
    res, world = run
    groups = dict(zip(world.home_id.astype(str), world.home_group, strict=True))
    v = value_table(
        res.settlement,
        res.participants,
        groups,
        res.dispatch,
        baseline="bau-flat",
        storage_price=0.05,
    )
    total = (v["members"] * v["amount"]).groupby(v["design"]).sum()
    assert total.abs().max() < 1e-9
    dso = v[v["stakeholder"].str.startswith("dso:")]
    np.testing.assert_allclose(dso["change_vs_bau"], 0.0, atol=1e-12)
    homes = v[v["stakeholder"].str.startswith("homes: ")]
    assert homes.groupby("design")["members"].sum().eq(len(groups)).all()
    # Plausible money: a home pays cents to a few € over four evening hours.
    bau = homes[homes["design"] == "bau-flat"]
    assert ((bau["amount"] > 0) & (bau["amount"] < 10)).all()
    assert pd.Series(bau["all_in_price"]).dropna().between(0.05, 0.5).all()
