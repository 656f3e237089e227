"""Value per stakeholder: means per member, end-state valuation, change against BAU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from settlement_helpers import T0, small_tree, two_designs

from transactive.core.records import DISPATCH
from transactive.errors import InvalidInputError
from transactive.settlement import settle, value_table

PARTICIPANTS = pd.DataFrame(
    {
        "participant_id": ["agg:x", "dso:a", "home:a/0", "home:a/1", "tso"],
        "role": ["aggregator", "dso", "home", "home", "tso"],
        "area": ["a", "a", "a", "a", ""],
    }
)
GROUPS = {"home:a/0": "none", "home:a/1": "pv+battery"}
R = 0.60 - 0.30 + 0.12 - 0.15  # the DSO's bau margin (see test_settle)


def dispatch(
    stored: dict[tuple[str, str], list[float]], starts: list[pd.Timestamp]
) -> pd.DataFrame:
    """Dispatch rows of a home battery and an aggregator EV with their stored kWh."""
    rows = []
    for (design, device), kwh in stored.items():
        owner = {"battery:a/1": "home:a/1", "ev:a/0": "agg:x"}[device]
        node = {"battery:a/1": "home:a/1", "ev:a/0": "agg:x/a/b1"}[device]
        n = len(kwh)
        frame = DISPATCH.frame(
            {
                "design": design,
                "market_id": "feeder:a/1",
                "stage": "real-time",
                "interval_start": np.array(starts[:n]),
                "duration_h": 0.25,
                "participant_id": owner,
                "resource_id": device,
                "node_id": node,
                "device_kind": device.split(":")[0],
                "setpoint_kw": 0.0,
                "power_kw": 0.0,
                "price": 0.1,
                "curtailed_kwh": 0.0,
                "unmet_kwh": 0.0,
                "discomfort_kh": 0.0,
                "comfort_dev_kh": 0.0,
                "stored_kwh": 0.0,
            }
        )
        rows.append(frame.assign(stored_kwh=kwh))
    return pd.concat(rows, ignore_index=True)


WARM = [T0 - pd.Timedelta(minutes=15), T0]
STORED = {
    ("bau", "battery:a/1"): [5.0, 3.0],
    ("bau", "ev:a/0"): [10.0, 12.0],
    ("mkt", "battery:a/1"): [5.0, 4.0],
    ("mkt", "ev:a/0"): [10.0, 10.0],
}


def table(disp: pd.DataFrame, groups: dict[str, str] = GROUPS) -> pd.DataFrame:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    v = value_table(lines, PARTICIPANTS, groups, disp, baseline="bau", storage_price=0.1)
    return v.set_index(["design", "stakeholder"])


def test_amounts_end_states_and_changes_by_hand() -> None:
    v = table(dispatch(STORED, WARM))
    battery = v.loc[("bau", "homes: pv+battery")]
    assert battery["amount"] == pytest.approx(-0.30)  # exported 1 kWh at 0.30
    assert battery["end_state"] == pytest.approx((3.0 - 5.0) * 0.1)  # drained 2 kWh
    assert battery["net_cost"] == pytest.approx(-0.30 + 0.2)
    mkt = v.loc[("mkt", "homes: pv+battery")]
    assert mkt["amount"] == pytest.approx(-0.12 + 0.12)  # energy + its network charge
    assert mkt["change_vs_bau"] == pytest.approx((0.0 + 0.1) - (-0.30 + 0.2))
    assert v.loc[("mkt", "homes: none"), "change_vs_bau"] == pytest.approx(0.40 - 0.60)
    agg = v.loc[("bau", "agg:x")]
    assert agg["end_state"] == pytest.approx(0.2) and agg["net_cost"] == pytest.approx(-0.08)
    assert v.loc[("mkt", "agg:x"), "change_vs_bau"] == pytest.approx(0.04 - (-0.08))
    dso = v.xs("dso:a", level="stakeholder")
    assert dso["amount"].to_numpy() == pytest.approx([-R, -R])  # revenue neutral
    assert dso["change_vs_bau"].to_numpy() == pytest.approx([0.0, 0.0])
    tso = v.xs("tso", level="stakeholder")
    assert tso["amount"].to_numpy() == pytest.approx([-0.15, -0.17])
    assert tso["energy_kwh"].to_numpy() == pytest.approx([-1.5, -1.5])  # what it delivered
    assert tso["all_in_price"].isna().all()


def test_all_in_price_credits_exports_in_the_amount_only() -> None:
    v = table(dispatch(STORED, WARM))
    assert v.loc[("bau", "homes: none"), "all_in_price"] == pytest.approx(0.30)
    assert np.isnan(v.loc[("bau", "homes: pv+battery"), "all_in_price"])  # imported nothing
    assert v.loc[("bau", "homes: none"), "energy_kwh"] == pytest.approx(2.0)
    assert v.loc[("bau", "homes: pv+battery"), "energy_kwh"] == pytest.approx(-1.0)


def test_rows_partition_the_participants_so_money_sums_to_zero() -> None:
    v = table(dispatch(STORED, WARM)).reset_index()
    total = (v["members"] * v["amount"]).groupby(v["design"]).sum()
    assert total.abs().max() < 1e-12
    assert set(v["stakeholder"]) == {"homes: none", "homes: pv+battery", "agg:x", "dso:a", "tso"}


def test_means_are_per_member() -> None:
    v = table(dispatch(STORED, WARM), {"home:a/0": "none", "home:a/1": "none"})
    row = v.loc[("bau", "homes: none")]
    assert row["members"] == 2
    assert row["amount"] == pytest.approx((0.60 - 0.30) / 2)
    assert row["end_state"] == pytest.approx(-0.2 / 2)


def test_without_stored_energy_the_end_state_is_zero() -> None:
    v = table(dispatch(STORED, WARM).drop(columns="stored_kwh"))
    assert (v["end_state"] == 0).all()
    np.testing.assert_allclose(v["net_cost"], v["amount"])


def test_without_warm_up_rows_the_start_is_the_first_evaluated_interval() -> None:
    later = [T0, T0 + pd.Timedelta(minutes=15)]
    v = table(dispatch({("bau", "battery:a/1"): [3.0, 3.5]}, later))
    assert v.loc[("bau", "homes: pv+battery"), "end_state"] == pytest.approx(0.5 * 0.1)
    assert v.loc[("mkt", "homes: pv+battery"), "end_state"] == 0.0


def test_without_the_baseline_there_is_no_change_column_value() -> None:
    meter, awards = two_designs()
    keep = meter["design"] == "mkt"
    lines = settle(meter[keep], awards[awards["design"] == "mkt"], small_tree(), "EUR", "bau")
    v = value_table(
        lines, PARTICIPANTS, GROUPS, dispatch(STORED, WARM), baseline="bau", storage_price=0.1
    )
    assert set(v["design"]) == {"mkt"} and v["change_vs_bau"].isna().all()


def test_a_home_without_group_is_an_input_error() -> None:
    with pytest.raises(InvalidInputError, match="home 'home:a/1' has no ownership group"):
        table(dispatch(STORED, WARM), {"home:a/0": "none"})


def test_storage_price_per_design_and_a_missing_one() -> None:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau")
    disp = dispatch(STORED, WARM)
    v = value_table(
        lines, PARTICIPANTS, GROUPS, disp, baseline="bau", storage_price={"bau": 0.1, "mkt": 0.3}
    ).set_index(["design", "stakeholder"])
    assert v.loc[("mkt", "homes: pv+battery"), "end_state"] == pytest.approx(-1.0 * 0.3)
    with pytest.raises(InvalidInputError, match="no storage price for design 'mkt'"):
        value_table(lines, PARTICIPANTS, GROUPS, disp, baseline="bau", storage_price={"bau": 0.1})
