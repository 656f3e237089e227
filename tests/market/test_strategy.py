"""The strategic aggregator (transactive.market.strategy): a hand case; properties on random
books against a brute-force pivotality check (non-pivotal rows and other participants never
change, no price above the ceiling, markup 0 + withhold 0 is the identity); what it does to
the DSO's least-cost procurement (scipy's linprog, independent of the project's solver); and
that the monitoring flags it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from monitoring_books import DT, asks, offers
from transactive.errors import InvalidInputError
from transactive.market.monitoring import concentration, flex_supply, offer_flags
from transactive.market.strategy import strategic_offers

ASKS = asks(
    [
        {"ask_id": "a1", "t": 0, "kw": 30.0, "price_ceiling": 0.5},
        {"ask_id": "a1", "t": 1, "kw": 30.0, "price_ceiling": 0.5},
    ]
)
BOOK = offers(
    [
        {"offer_id": "v1", "who": "vpp", "t": 0, "kw": 20.0, "price": 0.10,
         "availability_price": 0.005},
        {"offer_id": "v1", "who": "vpp", "t": 1, "kw": 20.0, "price": 0.10,
         "availability_price": 0.005},
        {"offer_id": "v1", "who": "vpp", "t": 2, "kw": 10.0, "price": 0.0, "rebound": True},
        {"offer_id": "h1", "who": "home", "t": 0, "kw": 15.0, "price": 0.12},
        {"offer_id": "z1", "who": "z", "t": 1, "kw": 30.0, "price": 0.15},
    ]
)  # fmt: skip


def test_hand_case_marks_up_and_withholds_where_pivotal() -> None:
    out = strategic_offers(BOOK, ASKS, "vpp", markup=0.5, withhold_percent=50.0)
    # t0: without vpp only 15 kW of 30 → pivotal; t1: z's 30 kW cover the ask → not pivotal.
    cost0 = 0.10 + 0.005 / DT  # 0.12 /kWh
    target = cost0 + 0.5 * (0.5 - cost0)  # 0.31 /kWh
    assert out.loc[0, "price"] + out.loc[0, "availability_price"] / DT == pytest.approx(target)
    assert out.loc[0, "price"] == pytest.approx(0.10 * target / cost0)
    assert out.loc[0, "kw"] == pytest.approx(10.0)
    pd.testing.assert_series_equal(out.loc[1], BOOK.loc[1])  # not pivotal: unchanged
    # the rebound follows the activation: (10 + 20) / (20 + 20) of it
    assert out.loc[2, "kw"] == pytest.approx(7.5) and out.loc[2, "price"] == 0.0
    pd.testing.assert_frame_equal(out.loc[3:], BOOK.loc[3:])  # other participants unchanged
    assert list(out.dtypes) == list(BOOK.dtypes)


def test_markup_one_bids_the_ceiling() -> None:
    out = strategic_offers(BOOK, ASKS, "vpp", markup=1.0)
    assert out.loc[0, "price"] + out.loc[0, "availability_price"] / DT == pytest.approx(0.5)
    assert out.loc[0, "kw"] == 20.0


def test_bad_parameters() -> None:
    with pytest.raises(InvalidInputError, match=r"markup 1\.5"):
        strategic_offers(BOOK, ASKS, "vpp", markup=1.5)
    with pytest.raises(InvalidInputError, match="withhold_percent -5"):
        strategic_offers(BOOK, ASKS, "vpp", markup=0.1, withhold_percent=-5.0)
    with pytest.raises(InvalidInputError, match="flex_offers records"):
        strategic_offers(BOOK.drop(columns="rebound"), ASKS, "vpp", markup=0.1)


@st.composite
def books(draw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Up to 3 asks × 2 intervals and up to 8 offers by 3 participants (integer kW)."""
    n_ask = draw(st.integers(1, 3))
    a_rows = [
        {"ask_id": f"a{i}", "t": t, "kw": float(draw(st.integers(0, 40))),
         "price_ceiling": draw(st.sampled_from([0.2, 0.5, 1.0])), "buses": f"b{i};b9"}
        for i in range(n_ask) for t in range(2)
    ]  # fmt: skip
    o_rows = []
    for k in range(draw(st.integers(0, 8))):
        unsolicited = draw(st.booleans())
        o_rows.append(
            {
                "offer_id": f"o{k}",
                "who": draw(st.sampled_from(["vpp", "p", "q"])),
                "t": draw(st.integers(0, 2)),
                "kw": float(draw(st.integers(0, 30))),
                "price": draw(st.sampled_from([0.0, 0.05, 0.3, 1.5])),
                "availability_price": draw(st.sampled_from([0.0, 0.01])),
                "ask_id": "" if unsolicited else f"a{draw(st.integers(0, n_ask))}",
                "bus": draw(st.sampled_from(["b0", "b1", "b9", "b5"])),
                "rebound": draw(st.booleans()),
            }
        )
    return offers(o_rows), asks(a_rows)


def brute_pivotal(
    o: pd.DataFrame, a: pd.DataFrame, who: str
) -> tuple[list[float], set[tuple[str, pd.Timestamp]]]:
    """Per offer row, the lowest ceiling of the asks where ``who`` is pivotal and the row
    serves (NaN: none), and those (ask, interval) pairs, by loops over rows."""
    serves: dict[tuple[str, pd.Timestamp], list[int]] = {}
    for _, ask in a.iterrows():
        key = (ask["ask_id"], ask["interval_start"])
        serves[key] = [
            i
            for i, r in o.iterrows()
            if not r["rebound"]
            and r["interval_start"] == ask["interval_start"]
            and r["direction"] == ask["direction"]
            and (r["ask_id"] == ask["ask_id"]
                 or (r["ask_id"] == "" and r["bus"] in ask["buses"].split(";")))
        ]  # fmt: skip
    out = [float("nan")] * len(o)
    pivotal = set()
    for _, ask in a.iterrows():
        rows = serves[(ask["ask_id"], ask["interval_start"])]
        own = sum(o.loc[i, "kw"] for i in rows if o.loc[i, "participant_id"] == who)
        others = sum(o.loc[i, "kw"] for i in rows if o.loc[i, "participant_id"] != who)
        if own > 0 and others < ask["kw"]:
            pivotal.add((ask["ask_id"], ask["interval_start"]))
            for i in rows:
                if o.loc[i, "participant_id"] == who:
                    out[i] = float(np.fmin(out[i], ask["price_ceiling"]))
    return out, pivotal


@settings(max_examples=60)  # each example runs the monitoring and a brute force
@given(book=books(), markup=st.sampled_from([0.0, 0.3, 1.0]), withhold=st.sampled_from([0.0, 40.0]))
def test_properties(
    book: tuple[pd.DataFrame, pd.DataFrame], markup: float, withhold: float
) -> None:
    o, a = book
    out = strategic_offers(o, a, "vpp", markup=markup, withhold_percent=withhold)
    assert list(out.columns) == list(o.columns) and len(out) == len(o)
    ceilings, pivotal = brute_pivotal(o, a, "vpp")
    ceiling = np.asarray(ceilings)
    hit = np.isfinite(ceiling)
    rebound_of_hit = o["rebound"].to_numpy(bool) & o["offer_id"].isin(o["offer_id"][hit])
    same = ~hit & ~rebound_of_hit.to_numpy(bool)
    pd.testing.assert_frame_equal(out[same], o[same])  # non-pivotal rows and others untouched
    cost = (o["price"] + o["availability_price"] / DT).to_numpy()
    new_cost = (out["price"] + out["availability_price"] / DT).to_numpy()
    assert (new_cost >= cost - 1e-12).all()  # a mark-up never lowers a price
    below = hit & (cost <= ceiling)
    assert (new_cost[below] <= ceiling[below] + 1e-12).all()
    assert (out["price"].to_numpy()[below] <= ceiling[below] + 1e-12).all()
    assert (out["kw"].to_numpy() <= o["kw"].to_numpy() + 1e-12).all()
    # the rows it changes are exactly where the monitoring sees it pivotal
    c = concentration(*flex_supply(o, a))
    seen = c[c["pivotal_ids"].str.split(";").map(lambda ids: "vpp" in ids).to_numpy(bool)]
    assert set(zip(seen["market_id"], seen["interval_start"], strict=True)) == pivotal
    if markup == 0.0 and withhold == 0.0:
        pd.testing.assert_frame_equal(out, o)


def least_cost(o: pd.DataFrame, a: pd.DataFrame) -> float:
    """The DSO's cheapest cover of every ask (currency), offers divisible: scipy's linprog
    over the fraction of each offer row, min Σ cost·kW·Δt·x s.t. Σ kW·x ≥ ask kW."""
    rows = o[~o["rebound"].to_numpy(bool)].reset_index(drop=True)
    c = ((rows["price"] + rows["availability_price"] / DT) * rows["kw"] * DT).to_numpy()
    A, b = [], []
    for _, ask in a.iterrows():
        serve = (rows["ask_id"] == ask["ask_id"]) & (
            rows["interval_start"] == ask["interval_start"]
        )
        A.append(-(rows["kw"] * serve).to_numpy(float))
        b.append(-ask["kw"])
    res = linprog(c, A_ub=np.array(A), b_ub=np.array(b), bounds=[(0, 1)] * len(rows))
    assert res.status == 0
    return float(res.fun)


def test_strategy_raises_the_dsos_cost_and_is_flagged() -> None:
    truthful = least_cost(BOOK, ASKS)
    strategic = strategic_offers(BOOK, ASKS, "vpp", markup=0.5)
    marked = least_cost(strategic, ASKS)
    # t0 needs 30 kW: 15 from home at 0.12 and 15 from vpp at 0.12, then 0.31 /kWh (pivotal);
    # t1: 20 from vpp at 0.12 and 10 from z at 0.15 in both books (not pivotal)
    t1 = 20 * 0.12 + 10 * 0.15
    assert truthful == pytest.approx((15 * 0.12 + 15 * 0.12 + t1) * DT)
    assert marked == pytest.approx((15 * 0.12 + 15 * 0.31 + t1) * DT)
    assert offer_flags(BOOK, None, history=BOOK).empty
    flags = offer_flags(strategic, None, history=BOOK)
    assert set(flags["offer_id"]) == {"v1"}
    assert set(flags["rule"]) == {"above_own_history", "above_peers"}
