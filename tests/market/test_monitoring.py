"""Market-power measures (transactive.market.monitoring): HHI / RSI / PSI by hand on small
books, their bounds and the pivotal ⇔ RSI < 1 equivalence against a brute force, the energy
sellers read from a tree's BIDS, the asks' flexibility markets, and the offer screens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring_books import asks, at, offers
from transactive.core.records import BIDS
from transactive.errors import InvalidInputError
from transactive.market.monitoring import (
    ask_offers,
    concentration,
    energy_demand,
    energy_supply,
    flex_supply,
    offer_flags,
    pivotal_offer_flags,
    psi_frequency,
)

T1, T2 = at(0), at(1)


def supply(rows: list[tuple[str, pd.Timestamp, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["market_id", "interval_start", "participant_id", "kw"])


def demand(rows: list[tuple[str, pd.Timestamp, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["market_id", "interval_start", "kw"])


BOOK = supply(
    [
        ("m", T1, "A", 20.0),
        ("m", T1, "A", 30.0),  # one seller's two offers are summed: A = 50
        ("m", T1, "B", 30.0),
        ("m", T1, "C", 20.0),
        ("m", T2, "A", 50.0),
        ("m", T2, "B", 30.0),
        ("m", T2, "C", 20.0),
    ]
)
NEED = demand([("m", T1, 60.0), ("m", T2, 40.0), ("empty", T1, 10.0)])


def test_hand_computed_hhi_rsi_psi() -> None:
    c = concentration(BOOK, NEED).set_index(["market_id", "interval_start"])
    first = c.loc[("m", T1)]
    # shares 50 / 30 / 20 %: HHI = 2500 + 900 + 400; RSI_A = (100 − 50) / 60
    assert first["n_sellers"] == 3
    assert first["hhi"] == pytest.approx(3800.0)
    assert first["largest_share"] == pytest.approx(0.5)
    assert first["rsi_min"] == pytest.approx(50.0 / 60.0)
    assert first["pivotal"] and first["pivotal_ids"] == "A" and first["psi"] == 1.0
    assert first["flags"] == "pivotal;rsi_screen;hhi_high"
    second = c.loc[("m", T2)]  # demand 40: the others (50) cover it without A
    assert second["rsi_min"] == pytest.approx(50.0 / 40.0)
    assert not second["pivotal"] and second["psi"] == 0.0 and second["pivotal_ids"] == ""
    assert second["flags"] == "hhi_high"
    empty = c.loc[("empty", T1)]
    assert empty["n_sellers"] == 0 and not empty["pivotal"]
    assert np.isnan(empty["hhi"]) and np.isnan(empty["rsi_min"])
    assert empty["flags"] == "no_sellers"


def test_short_market_makes_every_seller_pivotal() -> None:
    c = concentration(
        supply([("m", T1, "A", 10.0), ("m", T1, "B", 10.0)]), demand([("m", T1, 25.0)])
    )
    row = c.iloc[0]
    assert row["pivotal_ids"] == "A;B" and row["n_pivotal"] == 2
    assert row["hhi"] == pytest.approx(5000.0)
    assert row["flags"] == "pivotal;rsi_screen;hhi_high;short"


def test_no_demand_nobody_is_pivotal() -> None:
    c = concentration(supply([("m", T1, "A", 10.0)]), demand([]))
    assert not c["pivotal"].iloc[0] and np.isinf(c["rsi_min"].iloc[0])
    assert c["hhi"].iloc[0] == pytest.approx(10000.0)


def test_psi_frequency_per_seller() -> None:
    f = psi_frequency(BOOK, NEED).set_index("participant_id")
    assert f.loc["A", "intervals"] == 2 and f.loc["A", "pivotal_intervals"] == 1
    assert f.loc["A", "psi"] == pytest.approx(0.5)
    assert f.loc["B", "psi"] == 0.0


@given(
    kws=st.lists(st.integers(1, 1000), min_size=1, max_size=8),
    need=st.integers(0, 3000),
)
def test_hhi_bounds_and_pivotal_is_rsi_below_one(kws: list[int], need: int) -> None:
    s = supply([("m", T1, f"s{i}", float(k)) for i, k in enumerate(kws)])
    row = concentration(s, demand([("m", T1, float(need))])).iloc[0]
    n = len(kws)
    assert 10000.0 / n - 1e-9 <= row["hhi"] <= 10000.0 + 1e-9
    total = sum(kws)  # integers: the brute force is exact
    brute = sorted(f"s{i}" for i, k in enumerate(kws) if total - k < need)
    assert row["pivotal"] == bool(brute)
    assert row["pivotal_ids"] == ";".join(brute)
    assert (row["rsi_min"] < 1.0) == row["pivotal"]
    assert row["hhi"] == pytest.approx(sum((100.0 * k / total) ** 2 for k in kws))


def test_bad_supply_names_the_seller() -> None:
    with pytest.raises(InvalidInputError, match=r"kw -1\.0 of B in m"):
        concentration(supply([("m", T1, "B", -1.0)]), NEED)
    with pytest.raises(InvalidInputError, match=r"missing columns \['participant_id'\]"):
        concentration(BOOK.drop(columns="participant_id"), NEED)
    with pytest.raises(InvalidInputError, match="demand: kw nan in m"):
        concentration(BOOK, demand([("m", T1, float("nan"))]))


# --- energy sellers from BIDS -----------------------------------------------------------------


def bids(rows: list[tuple[str, str, str, list[float]]], t: pd.Timestamp = T1) -> pd.DataFrame:
    """BIDS of (market, participant, resource = node, quantities at prices 0.1, 0.2, …)."""
    cols: dict[str, list[object]] = {k: [] for k in ("m", "p", "r", "point", "price", "q")}
    for market, who, res, qs in rows:
        for i, q in enumerate(qs):
            for k, v in zip(cols, (market, who, res, i, 0.1 * (i + 1), q), strict=True):
                cols[k].append(v)
    return BIDS.frame(
        {
            "design": "d",
            "market_id": cols["m"],
            "stage": "real-time",
            "interval_start": t,
            "duration_h": 0.25,
            "participant_id": cols["p"],
            "resource_id": cols["r"],
            "node_id": cols["r"],
            "point": cols["point"],
            "price": cols["price"],
            "quantity_kw": cols["q"],
        }
    )


TREE = bids(
    [
        ("wholesale", "tso", "tso", [9.0, 1.0]),
        ("tso", "dso:a", "dso:a", [9.0, 1.0]),
        ("dso:a", "dso:a", "f1", [9.0, 2.0]),
        ("dso:a", "agg", "agg/b1", [2.0, -4.0]),
        ("f1", "h1", "h1", [1.0, -3.0]),
        ("f1", "h2", "h2", [6.0, 5.0]),
        ("f1", "h3", "h3", [0.0, 0.0]),
    ]
)


def test_energy_sellers_are_the_leaf_curves_of_the_area() -> None:
    s = energy_supply(TREE).set_index("participant_id")
    assert set(s["market_id"]) == {"dso:a"}  # the feeder's homes compete with the aggregator
    assert s.loc["h1", "kw"] == 3.0 and s.loc["agg", "kw"] == 4.0 and s.loc["h2", "kw"] == 0.0
    assert "dso:a" not in s.index and "tso" not in s.index  # pass-through curves are not sellers
    d = energy_demand(TREE)
    assert d["market_id"].tolist() == ["dso:a"] and d["kw"].tolist() == [5.0]
    c = concentration(energy_supply(TREE), d).iloc[0]
    # 7 kW offered against 5 kW: without the aggregator (4) 3 < 5, without h1 4 < 5
    assert c["pivotal_ids"] == "agg;h1" and c["hhi"] == pytest.approx(
        (100 * 4 / 7) ** 2 + (100 * 3 / 7) ** 2
    )


def test_devices_bidding_directly_are_netted_per_home() -> None:
    direct = bids([("tso", "h1", "pv1", [0.0, -3.0]), ("tso", "h1", "load1", [1.0, 1.0])])
    direct["node_id"] = pd.Categorical(["h1"] * len(direct))
    s = energy_supply(direct)
    assert s[["market_id", "participant_id", "kw"]].values.tolist() == [["tso", "h1", 2.0]]
    assert energy_demand(direct)["kw"].tolist() == [0.0]


def test_empty_bids() -> None:
    assert energy_supply(BIDS.empty()).empty and energy_demand(BIDS.empty()).empty
    assert concentration(energy_supply(BIDS.empty()), energy_demand(BIDS.empty())).empty


# --- flexibility markets ------------------------------------------------------------------------


def test_offers_serving_an_ask() -> None:
    a = asks([{"ask_id": "a1", "t": 0, "kw": 10.0}, {"ask_id": "a2", "t": 0, "kw": 5.0,
              "buses": "b9"}])  # fmt: skip
    o = offers(
        [
            {"offer_id": "o1", "who": "v", "t": 0, "kw": 6.0, "price": 0.1},
            {"offer_id": "o2", "who": "w", "t": 0, "kw": 3.0, "price": 0.1, "ask_id": "",
             "bus": "b2"},  # unsolicited, at one of a1's buses
            {"offer_id": "o3", "who": "w", "t": 0, "kw": 3.0, "price": 0.1, "ask_id": "",
             "bus": "b7"},  # unsolicited, elsewhere
            {"offer_id": "o1", "who": "v", "t": 1, "kw": 2.0, "price": 0.0, "rebound": True},
            {"offer_id": "o4", "who": "w", "t": 0, "kw": 9.0, "price": 0.1,
             "direction": "down"},  # the wrong way
            {"offer_id": "o5", "who": "x", "t": 1, "kw": 9.0, "price": 0.1},  # another interval
        ]
    )  # fmt: skip
    rel = ask_offers(o, a)
    assert rel[["row", "ask_id"]].values.tolist() == [[0, "a1"], [1, "a1"]]
    s, d = flex_supply(o, a)
    c = concentration(s, d).set_index("market_id")
    assert c.loc["a1", "total_kw"] == 9.0 and c.loc["a1", "pivotal_ids"] == "v;w"
    assert c.loc["a2", "flags"] == "no_sellers"


def test_duplicate_ask_interval_is_an_error() -> None:
    a = asks([{"ask_id": "a1", "t": 0, "kw": 1.0}, {"ask_id": "a1", "t": 0, "kw": 2.0}])
    with pytest.raises(InvalidInputError, match=r"flex ask a1 at .* appears twice"):
        flex_supply(offers([]), a)


# --- offer screens ------------------------------------------------------------------------------


def truthful() -> pd.DataFrame:
    """Three providers, four intervals, prices near their costs (0.08 … 0.15 /kWh)."""
    rows = []
    for t in range(4):
        rows += [
            {"offer_id": f"v{t}", "who": "v", "resource": "v/bat", "t": t, "kw": 18.0,
             "price": 0.10 + 0.005 * t, "availability_price": 0.002},
            {"offer_id": f"w{t}", "who": "w", "resource": "w/ev", "t": t, "kw": 7.0,
             "price": 0.12},
            {"offer_id": f"x{t}", "who": "x", "resource": "x/hp", "t": t, "kw": 3.0,
             "price": 0.08 + 0.01 * (t % 2)},
        ]  # fmt: skip
    return offers(rows)


CAPABILITY = pd.Series({"v/bat": 20.0, "w/ev": 7.4, "x/hp": 3.5})


def test_a_truthful_book_is_not_flagged() -> None:
    assert offer_flags(truthful(), CAPABILITY).empty


def test_beyond_capability_and_withholding_are_flagged() -> None:
    o = truthful()
    o.loc[0, "kw"] = 25.0  # v0: beyond its 20 kW battery
    o.loc[1, "kw"] = 0.5  # w0: 7 % of a 7.4 kW charger
    f = offer_flags(o, CAPABILITY)
    assert f[["offer_id", "rule", "value", "threshold"]].values.tolist() == [
        ["v0", "over_capability", 25.0, 20.0],
        ["w0", "withholding", 0.5, pytest.approx(0.74)],
    ]
    assert set(f["unit"]) == {"kW"}


def test_price_far_above_history_and_peers_is_flagged() -> None:
    o = truthful()
    o.loc[9, "price"] = 0.45  # v3: marked up towards a ceiling
    f = offer_flags(o, CAPABILITY, history=truthful())
    assert f["offer_id"].tolist() == ["v3", "v3"]
    assert f["rule"].tolist() == ["above_own_history", "above_peers"]
    own = f.iloc[0]
    assert own["value"] == pytest.approx(0.45 + 0.002 / 0.25)
    # median of v's history: (0.105 + 0.110) / 2 + 0.008, times 1.5
    assert own["threshold"] == pytest.approx(1.5 * (0.1075 + 0.008))
    peers = f.iloc[1]  # q95 of w's and x's costs (0.08 … 0.12), times 1.5
    assert peers["threshold"] == pytest.approx(1.5 * 0.12)


def test_missing_capability_names_the_resource() -> None:
    with pytest.raises(InvalidInputError, match=r"no capability for resource x/hp \(offer x0\)"):
        offer_flags(truthful(), CAPABILITY.drop("x/hp"))
    with pytest.raises(InvalidInputError, match=r"factor 0\.5"):
        offer_flags(truthful(), CAPABILITY, factor=0.5)


def test_a_pivotal_provider_pricing_at_the_ceiling_is_flagged_without_history() -> None:
    a = asks([{"ask_id": "a1", "t": t, "kw": 20.0, "price_ceiling": 0.4} for t in range(3)])
    rows = [
        {"offer_id": f"v{t}", "who": "v", "t": t, "kw": 15.0, "price": p}
        for t, p in enumerate((0.38, 0.37, 0.40))
    ] + [{"offer_id": "w2", "who": "w", "t": 2, "kw": 25.0, "price": 0.39}]
    # t0, t1: v alone cannot cover the ask, pivotal and near the ceiling (≥ 0.9 · 0.4);
    # t2: w's 25 kW cover it without v (v not pivotal), v's 15 kW do not without w
    f = pivotal_offer_flags(offers(rows), a)
    assert f[["offer_id", "rule"]].values.tolist() == [
        ["v0", "pivotal_near_ceiling"],
        ["v1", "pivotal_near_ceiling"],
        ["w2", "pivotal_near_ceiling"],
    ]
    assert f["threshold"].tolist() == pytest.approx([0.36] * 3)
    assert f["value"].tolist() == pytest.approx([0.38, 0.37, 0.39])
    assert offer_flags(offers(rows), None).empty  # its own history sees nothing unusual
    assert pivotal_offer_flags(truthful(), asks([{"ask_id": "a1", "t": 0, "kw": 5.0}])).empty
    with pytest.raises(InvalidInputError, match="ceiling_share 0"):
        pivotal_offer_flags(offers(rows), a, ceiling_share=0.0)
