"""Settlement from records: tariff and two-settlement prices from awards, counterparties
from the tree, the revenue-neutral network charge and the balance checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from settlement_helpers import T0, award_frame, meter_frame, small_tree, two_designs

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.settlement import (
    check_balance,
    dso_net_receipts,
    participant_totals,
    revenue_requirement,
    settle,
)


def amounts(lines: pd.DataFrame, design: str, charge: str) -> dict[str, int]:
    """Amount per participant of one design's lines of one charge (minor units)."""
    sel = lines[(lines["design"] == design) & (lines["charge"] == charge)]
    return sel.groupby(sel["participant_id"].astype(str))["amount"].sum().to_dict()


def test_tariff_lines_price_net_energy_at_the_award_and_pay_the_parent_owner() -> None:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    SETTLEMENT.check(lines)
    bau = lines[(lines["design"] == "bau") & (lines["charge"] == "energy")]
    e = bau.set_index(bau["participant_id"].astype(str))
    assert e.loc["home:a/0", "amount"] == 60  # cents
    assert e.loc["home:a/1", "amount"] == -30  # export: received
    assert e.loc["agg:x", "amount"] == 12
    assert e.loc["dso:a", "amount"] == 15
    assert e.loc["home:a/0", "counterparty_id"] == "dso:a"  # through its DSO's feeder
    assert e.loc["agg:x", "counterparty_id"] == "dso:a"
    assert e.loc["dso:a", "counterparty_id"] == "tso"
    assert set(lines["currency"].astype(str)) == {"EUR"}
    assert not len(lines[(lines["design"] == "mkt") & (lines["charge"] == "energy")])


def test_two_settlement_amounts_by_hand() -> None:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    da, rt = amounts(lines, "mkt", "day_ahead"), amounts(lines, "mkt", "real_time")
    # Positions kW × 0.25 h at the day-ahead price, deviations at the real-time price.
    assert da["home:a/0"] == 18  # 6.0 × 0.25 × 0.12 €
    assert rt["home:a/0"] == 10  # (2.0 − 1.5) × 0.20
    assert da["agg:x"] == 6
    assert rt["agg:x"] == -2  # (0.4 − 0.5) × 0.20: under-delivered buy sold back
    assert da["dso:a"] == 11
    assert rt["dso:a"] == 6
    mkt = lines[lines["design"] == "mkt"]
    assert set(mkt.loc[mkt["charge"] == "day_ahead", "stage"].astype(str)) == {"day-ahead"}
    assert set(mkt.loc[mkt["charge"] == "real_time", "stage"].astype(str)) == {"real-time"}
    # Energy balances per meter: day-ahead + real-time kWh = metered net.
    e = mkt[mkt["charge"] != "network"]
    kwh = e.groupby(e["resource_id"].astype(str))["quantity_kwh"].sum()
    assert kwh.to_dict() == pytest.approx(
        {"meter:dso:a": 1.5, "meter:home:a/0": 2.0, "meter:home:a/1": -1.0, "meter:agg:x/a/b1": 0.4}
    )


def test_a_position_exactly_delivered_pays_only_the_day_ahead_price() -> None:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    h1 = lines[(lines["design"] == "mkt") & (lines["participant_id"] == "home:a/1")]
    rt = h1[h1["charge"] == "real_time"]
    assert float(rt["quantity_kwh"].iloc[0]) == 0.0 and float(rt["amount"].iloc[0]) == 0.0
    da = h1[h1["charge"] == "day_ahead"]
    assert int(da["amount"].iloc[0]) == -12


def test_every_dso_recovers_the_bau_margin_through_a_fixed_charge_per_home() -> None:
    meter, awards = two_designs()
    tree = small_tree()
    lines = settle(meter, awards, tree, "EUR", baseline="bau")
    r = 60 - 30 + 12 - 15  # bau: retail revenue − wholesale cost, cents
    assert int(revenue_requirement(lines, tree, "bau")["dso:a"]) == r
    margin_mkt = (18 + 10) + (-12 + 0) + (6 - 2) - (11 + 6)  # = 3: 24 to recover, 12 per home
    net = lines[lines["charge"] == "network"]
    by = net.set_index([net["design"].astype(str), net["participant_id"].astype(str)])
    assert by.loc[("mkt", "home:a/0"), "amount"] == (r - margin_mkt) // 2
    assert by.loc[("mkt", "home:a/1"), "amount"] == (r - margin_mkt) // 2
    assert by.loc[("bau", "home:a/0"), "amount"] == 0
    assert set(net["counterparty_id"].astype(str)) == {"dso:a"}
    assert "agg:x" not in set(net["participant_id"].astype(str))  # sub-meters pay none
    assert np.isnan(net["price"]).all() and (net["quantity_kwh"] == 0).all()
    assert (net["interval_start"] == T0).all() and (net["duration_h"] == 0.25).all()
    got = dso_net_receipts(lines, tree)["dso:a"]
    assert got.to_dict() == {"bau": r, "mkt": r}
    totals = participant_totals(lines)
    assert totals.groupby("design", observed=True)["net"].sum().abs().max() == 0


def test_without_the_baseline_only_energy_is_settled() -> None:
    meter, awards = two_designs()
    keep = meter["design"] == "mkt"
    lines = settle(meter[keep], awards[awards["design"] == "mkt"], small_tree(), "EUR", "bau")
    assert set(lines["charge"].astype(str)) == {"day_ahead", "real_time"}
    lines = settle(meter, awards, small_tree(), "EUR", baseline=None)
    assert "network" not in set(lines["charge"].astype(str))


def test_a_meter_without_award_price_is_an_error() -> None:
    meter = meter_frame("bau", "tariff", [1.0, 1.0, 0.0, 0.0])
    awards = award_frame("bau", "tariff", [4, 4, 0, 0], [0.1, np.nan, 0.3, 0.3])
    with pytest.raises(BalanceError, match=r"meter:home:a/0 .* has no award price"):
        settle(meter, awards, small_tree(), "EUR", baseline="bau")


def test_a_day_ahead_award_without_price_is_an_error() -> None:
    meter, awards = two_designs()
    bad = (awards["stage"] == "day-ahead") & (awards["node_id"] == "agg:x/a/b1")
    awards.loc[bad, "price"] = np.nan
    with pytest.raises(BalanceError, match=r"meter:agg:x/a/b1 .* has no day-ahead award price"):
        settle(meter, awards, small_tree(), "EUR", baseline="bau")


def test_two_awards_of_one_stage_are_an_error() -> None:
    meter, awards = two_designs()
    with pytest.raises(BalanceError, match="more than one award"):
        settle(meter, pd.concat([awards, awards.iloc[:1]]), small_tree(), "EUR", "bau")


def settled() -> tuple[pd.DataFrame, pd.Series]:
    meter, awards = two_designs()
    tree = small_tree()
    lines = settle(meter, awards, tree, "EUR", baseline="bau")
    return lines, revenue_requirement(lines[lines["charge"] != "network"], tree, "bau")


def test_the_zero_sum_check_raises_on_a_line_without_counterparty() -> None:
    lines, req = settled()
    check_balance(lines, small_tree(), req)
    lines.loc[3, "counterparty_id"] = np.nan
    with pytest.raises(BalanceError, match=r"the payers pay \d+ but the payees receive"):
        check_balance(lines, small_tree(), req)


def test_a_line_paid_to_an_unknown_participant_is_an_error() -> None:
    lines, req = settled()
    lines["counterparty_id"] = lines["counterparty_id"].cat.add_categories("nobody")
    lines.loc[0, "counterparty_id"] = "nobody"
    with pytest.raises(BalanceError, match="'nobody' is not a participant"):
        check_balance(lines, small_tree(), req)


def test_the_requirement_check_raises_when_a_dso_is_short() -> None:
    lines, req = settled()
    net = lines.index[(lines["charge"] == "network") & (lines["design"] == "mkt")]
    lines.loc[net[0], "amount"] -= 1  # one cent
    with pytest.raises(BalanceError, match=r"dso:a nets .* in design mkt, not its revenue"):
        check_balance(lines, small_tree(), req)
    # Redirected money (a home paying the TSO instead of its DSO) balances but is caught.
    lines, req = settled()
    e = lines.index[(lines["charge"] == "energy") & (lines["participant_id"] == "home:a/0")]
    lines.loc[e[0], "counterparty_id"] = "tso"
    with pytest.raises(BalanceError, match=r"dso:a nets .* in design bau"):
        check_balance(lines, small_tree(), req)


def test_labels_in_a_different_category_order_settle_the_same() -> None:
    """Records from different tables rarely share one category order; the lookup must go by
    label, not by code."""
    meter, awards = two_designs()
    want = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    for c in ("design", "node_id"):
        col = awards[c].astype("category")
        awards[c] = col.cat.reorder_categories(list(col.cat.categories)[::-1])
        meter[c] = meter[c].astype("category")
    got = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    np.testing.assert_array_equal(got["amount"], want["amount"])
    np.testing.assert_allclose(got["price"], want["price"])


def test_a_requirement_without_home_connections_is_an_error() -> None:
    meter, awards = two_designs()
    homes = meter["node_id"].astype(str).str.startswith("home:") & (meter["design"] == "mkt")
    with pytest.raises(BalanceError, match=r"dso:a must recover .* in design mkt but has no"):
        settle(meter[~homes], awards, small_tree(), "EUR", baseline="bau")
