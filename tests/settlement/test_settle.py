"""Settlement from records: prices from awards, counterparties from the tree, balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transactive.core.records import AWARDS, METER, SETTLEMENT
from transactive.errors import BalanceError
from transactive.nodes.tree import Kind, TreeBuilder
from transactive.settlement import Rules, participant_totals, settle

T0 = pd.Timestamp("2026-07-01T12:00Z")


def small_tree():
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    b.add("dso:a", Kind.DSO, "tso", "dso:a", area=0)
    b.add("feeder:a/1", Kind.FEEDER, "dso:a", "dso:a", area=0)
    b.add("home:a/0", Kind.HOME, "feeder:a/1", "home:a/0", area=0)
    b.add("home:a/1", Kind.HOME, "feeder:a/1", "home:a/1", area=0)
    return b.build()


def records(price_home: float = 0.2, price_dso: float = 0.1):
    ident = {"design": "d", "stage": "real-time", "interval_start": T0, "duration_h": 0.25}
    nodes = np.array(["dso:a", "home:a/0", "home:a/1"], dtype=object)
    meter = METER.frame(
        {
            **ident,
            "market_id": np.array(["tso", "feeder:a/1", "feeder:a/1"], dtype=object),
            "participant_id": nodes,
            "resource_id": np.char.add("meter:", nodes.astype(str)),
            "node_id": nodes,
            "import_kwh": np.array([1.1, 2.0, 0.0]),
            "export_kwh": np.array([0.0, 0.0, 1.0]),
            "quality": "measured",
        }
    )
    awards = AWARDS.frame(
        {
            **ident,
            "market_id": np.array(["tso", "feeder:a/1", "feeder:a/1"], dtype=object),
            "participant_id": nodes,
            "resource_id": nodes,
            "node_id": nodes,
            "quantity_kw": np.array([4.4, 8.0, -4.0]),
            "price": np.array([price_dso, price_home, price_home]),
            "status": "cleared",
        }
    )
    return meter, awards


def test_lines_prices_counterparties_and_network_charge() -> None:
    tree = small_tree()
    meter, awards = records()
    lines = settle(meter, awards, tree, {"d": Rules(network_charge=0.04, currency="EUR")})
    SETTLEMENT.check(lines)
    e = lines[lines["charge"] == "energy"]
    energy = e.set_index(e["participant_id"].astype(str))
    assert energy.loc["home:a/0", "amount"] == pytest.approx(2.0 * 0.2)
    assert energy.loc["home:a/1", "amount"] == pytest.approx(-1.0 * 0.2)
    assert energy.loc["dso:a", "amount"] == pytest.approx(1.1 * 0.1)
    assert energy.loc["home:a/0", "counterparty_id"] == "dso:a"  # through its DSO's feeder
    assert energy.loc["dso:a", "counterparty_id"] == "tso"
    net = lines[lines["charge"] == "network_charge"]
    # Only the importing home pays the network charge; the DSO's own meter never does.
    assert list(net["participant_id"].astype(str)) == ["home:a/0"]
    assert float(net["amount"].iloc[0]) == pytest.approx(2.0 * 0.04)
    totals = participant_totals(lines)
    assert totals["net"].sum() == pytest.approx(0.0, abs=1e-12)
    dso = totals[totals["participant_id"] == "dso:a"]["net"].iloc[0]
    assert -dso == pytest.approx(0.4 - 0.2 + 0.08 - 0.11)  # what the DSO keeps
    assert set(lines["currency"].astype(str)) == {"EUR"}


def test_a_meter_without_award_price_is_an_error() -> None:
    tree = small_tree()
    meter, awards = records(price_home=np.nan)
    with pytest.raises(BalanceError, match="no award price"):
        settle(meter, awards, tree, {"d": Rules(0.0, "USD")})
