"""Settlement lines of P2P trades: integer amounts, buyer pays seller and DSO, zero sum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError, InvalidInputError
from transactive.market.p2p import NetworkCharge, clear_p2p, make_orders
from transactive.settlement.p2p import p2p_balance, p2p_lines

START = pd.Timestamp("2026-07-01T10:00Z")


def trades_of(kwh: list[float], price: list[float], charge: list[float]) -> pd.DataFrame:
    n = len(kwh)
    return pd.DataFrame(
        {
            "interval_start": pd.DatetimeIndex([START] * n),
            "buyer": [f"b{i % 3}" for i in range(n)],
            "seller": [f"s{i % 2}" for i in range(n)],
            "buyer_order": [f"o{i}" for i in range(n)],
            "buyer_bus": ["bus-1"] * n,
            "kwh": kwh,
            "price": price,
            "network_charge": charge,
        }
    )


@given(
    st.lists(
        st.tuples(st.floats(0.001, 50), st.floats(0.0, 0.5), st.sampled_from([0.0, 0.013, 0.05])),
        min_size=1,
        max_size=20,
    )
)
def test_lines_balance_per_trade_and_in_total(rows: list[tuple[float, float, float]]) -> None:
    kwh, price, charge = (list(x) for x in zip(*rows, strict=True))
    lines = p2p_lines(trades_of(kwh, price, charge), dso="dso", currency="EUR", duration_h=1.0)
    SETTLEMENT.check(lines)
    assert str(lines["amount"].dtype) == "int64"
    net = p2p_balance(lines)
    assert sum(net.values()) == 0
    energy = lines[lines["charge"] == "p2p_energy"]
    network = lines[lines["charge"] == "p2p_network"]
    assert len(energy) == len(rows) and len(network) == sum(c > 0 for c in charge)
    # each amount is its own kWh × price, rounded half-even once to the cent
    want = np.rint(np.array(kwh) * np.array(price) * 100).astype(np.int64)
    assert energy["amount"].tolist() == want.tolist()
    assert net.get("dso", 0) == int(network["amount"].sum())
    assert (energy["counterparty_id"].astype(str) == [f"s{i % 2}" for i in range(len(rows))]).all()


def test_lines_of_a_matching_pay_what_the_trades_say() -> None:
    o = make_orders(["b1", "b2", "s1", "s2"], ["h1", "h2", "h3", "h4"],
                    [True, True, False, False], [5, 3, 4, 6], [0.30, 0.25, 0.10, 0.20])  # fmt: skip
    r = clear_p2p(o, NetworkCharge("flat", 0.02))
    lines = p2p_lines(r.trades, dso="dso", currency="EUR", duration_h=0.25)
    net = p2p_balance(lines)
    # 8 kWh at 0.20 to the sellers, 8 kWh at 0.02 to the DSO
    assert net == {"h1": -110, "h2": -66, "h3": 80, "h4": 80, "dso": 16}
    assert (lines["duration_h"] == 0.25).all() and (lines["stage"] == "p2p").all()


def test_rejected_trades_make_no_lines_and_bad_trades_are_named() -> None:
    t = trades_of([0.0, 2.0], [np.nan, 0.1], [0.01, 0.01])
    lines = p2p_lines(t, dso="dso", currency="EUR", duration_h=1.0)
    assert len(lines) == 2 and (lines["quantity_kwh"] == 2.0).all()
    with pytest.raises(InvalidInputError, match=r"o1.*non-finite price"):
        p2p_lines(trades_of([1.0, 2.0], [0.1, np.inf], [0.0, 0.0]), dso="d", currency="EUR",
                  duration_h=1.0)  # fmt: skip
    with pytest.raises(InvalidInputError, match="lack columns"):
        p2p_lines(t.drop(columns=["price"]), dso="d", currency="EUR", duration_h=1.0)


def test_balance_detects_a_line_off_its_audit_trail() -> None:
    lines = p2p_lines(trades_of([1.0, 3.0], [0.1, 0.2], [0.01, 0.0]), dso="d", currency="EUR",
                      duration_h=1.0)  # fmt: skip
    assert p2p_balance(lines) == {"b0": -11, "b1": -60, "s0": 10, "s1": 60, "d": 1}
    lines.loc[1, "amount"] = 61
    with pytest.raises(BalanceError, match=r"p2p_energy line of b1 → s1 is 61, not 3\.0 kWh"):
        p2p_balance(lines)


def test_period_lines_keep_small_trades_charges() -> None:
    """A day of 96 quarter-hour trades of 50 Wh at a 0.02 charge: per trade every network
    line rounds to 0 cents; one line per period keeps the 9.6 cents (to 10)."""
    n = 96
    t = trades_of([0.05] * n, [0.1] * n, [0.02] * n).assign(
        buyer="b0", seller="s0", buyer_order="meter-b0",
        interval_start=pd.date_range("2026-07-01", periods=n, freq="15min", tz="UTC"),
    )  # fmt: skip
    per_trade = p2p_lines(t, dso="d", currency="EUR", duration_h=0.25)
    assert int(per_trade[per_trade["charge"] == "p2p_network"]["amount"].sum()) == 0
    day = p2p_lines(t, dso="d", currency="EUR", duration_h=0.25, period="day")
    net = day[day["charge"] == "p2p_network"]
    assert len(net) == 1 and int(net["amount"].iloc[0]) == 10
    assert net["duration_h"].iloc[0] == 24.0 and net["quantity_kwh"].iloc[0] == pytest.approx(4.8)
    assert p2p_balance(day) == {"b0": -58, "s0": 48, "d": 10}
    SETTLEMENT.check(day)
