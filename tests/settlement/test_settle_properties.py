"""Property: for any positions, prices and meter readings, money sums to zero in every
design, every DSO nets its business-as-usual margin, and energy is settled exactly once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from settlement_helpers import DT, NODES, T0, award_frame, meter_frame, small_tree

from transactive.settlement import dso_net_receipts, participant_totals, settle

kwh = st.floats(-20, 20, allow_nan=False)
price = st.floats(-0.5, 2.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    data=st.data(),
)
def test_money_balances_and_the_dso_recovers_its_requirement(n: int, data: st.DataObject) -> None:
    shape = (n, len(NODES))
    net = {d: data.draw(arrays(float, shape, elements=kwh), label=d) for d in ("bau", "mkt")}
    tariff = data.draw(arrays(float, shape, elements=price), label="tariff")
    p_da = data.draw(arrays(float, shape, elements=price), label="p_da")
    p_rt = data.draw(arrays(float, shape, elements=price), label="p_rt")
    q_da = data.draw(arrays(float, shape, elements=st.floats(-80, 80)), label="q_da")
    meters, awards = [], []
    for t in range(n):
        start = T0 + pd.Timedelta(minutes=15 * t)
        meters += [
            meter_frame("bau", "tariff", net["bau"][t], start),
            meter_frame("mkt", "real-time", net["mkt"][t], start),
        ]
        awards += [
            award_frame("bau", "tariff", net["bau"][t] / DT, tariff[t], start),
            award_frame("mkt", "day-ahead", q_da[t], p_da[t], start),
            award_frame("mkt", "real-time", net["mkt"][t] / DT, p_rt[t], start),
        ]
    tree = small_tree()
    lines = settle(pd.concat(meters), pd.concat(awards), tree, "EUR", baseline="bau")

    totals = participant_totals(lines)
    assert totals.groupby("design", observed=True)["net"].sum().abs().max() == 0
    # The DSO (column 0) keeps the retail revenue of the homes and the portfolio minus
    # what it pays for its substation meter, computed here from the inputs: every line
    # rounded to the cent once (half to even), then summed as integers.
    amount = np.array([[round(x * 100) for x in row] for row in (net["bau"] * tariff).tolist()])
    requirement = int(amount[:, 1:].sum() - amount[:, 0].sum())
    got = dso_net_receipts(lines, tree)["dso:a"]
    assert got["bau"] == requirement
    assert got["mkt"] == requirement
    e = lines[lines["charge"] != "network"]
    kwh_by_meter = e.groupby([e["design"].astype(str), e["node_id"].astype(str)])[
        "quantity_kwh"
    ].sum()
    for d in ("bau", "mkt"):
        got_kwh = kwh_by_meter.loc[d].reindex(list(NODES)).to_numpy()
        np.testing.assert_allclose(got_kwh, net[d].sum(axis=0), atol=1e-9)
    fixed = lines[(lines["charge"] == "network") & (lines["design"] == "mkt")]
    assert len(fixed) == 2 and np.ptp(fixed["amount"].to_numpy()) <= 1  # largest remainder
    assert (fixed["duration_h"] == n * DT).all()
