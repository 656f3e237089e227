"""Market-power KPIs of a run (transactive.sim.market_power): on a real simulation of a small
feeder at midday (the energy sellers checked against a brute force over the run's curves), on
a flexibility book with and without the strategic aggregator, and on empty tables."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from monitoring_books import asks, offers
from transactive.core.records import BIDS, FLEX_ASKS, FLEX_OFFERS
from transactive.market.strategy import strategic_offers
from transactive.sim.market_power import MARKET_POWER_BETTER, MARKET_POWER_KPIS, market_power_kpis
from transactive.sim.results import SimResults
from transactive.sim.scenario import parse_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimResults:
    """Six midday hours on an 8-load-point rural cable feeder: PV homes and a battery VPP."""
    tmp = tmp_path_factory.mktemp("mp")
    prices = tmp / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n")
    return runner.run(
        parse_scenario(
            {
                "name": "market-power",
                "region": "us",
                "feeder": "pandapower:kerber_landnetz_kabel_1",
                "start": "2016-07-12T10:00:00Z",
                "end": "2016-07-12T16:00:00Z",
                "market_interval_min": 15,
                "powerflow_interval_min": 30,
                "designs": ["grand-central", "total-dso"],
                "warmup_days": 0,
                "seed": 3,
                "homes_per_load": 4,
                "der": {"penetration": {"ev": 100, "hvac": 50, "battery": 25, "pv": 50}},
                "aggregator": {"name": "vpp", "devices": ["battery"]},
                "market": {"floor": 0.0, "cap": 2.0},
                "wholesale": {"source": "prices", "prices": str(prices)},
            }
        )
    )


def brute_energy(bids: pd.DataFrame) -> dict[pd.Timestamp, tuple[float, bool]]:
    """Per interval: the HHI and whether a seller is pivotal, by loops over the curves of
    homes and aggregators (every curve in a design of one area is in its area market)."""
    mine = bids[bids["participant_id"].astype(str).str.match(r"(home|agg):")]
    low: dict[tuple[pd.Timestamp, str, str, str], float] = {}
    for r in mine.itertuples():
        key = (r.interval_start, str(r.participant_id), str(r.node_id), str(r.resource_id))
        low[key] = min(low.get(key, np.inf), r.quantity_kw)  # quantity at the highest price
    net: dict[tuple[pd.Timestamp, str, str], float] = defaultdict(float)
    for (t, who, node, _), q in low.items():
        net[(t, who, node)] += q
    sell: dict[pd.Timestamp, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    need: dict[pd.Timestamp, float] = defaultdict(float)
    for (t, who, _), q in net.items():
        if q < -1e-6:
            sell[t][who] += -q
        need[t] += max(q, 0.0)
    need = defaultdict(float, {t: d if d > 1e-6 else 0.0 for t, d in need.items()})
    out = {}
    for t, d in need.items():
        kw = [v for v in sell[t].values() if v > 1e-6]
        total = sum(kw)
        hhi = sum((100 * v / total) ** 2 for v in kw) if kw else np.nan
        out[t] = (hhi, any(total - v < d for v in kw))
    return out


@pytest.mark.parametrize("design", ["grand-central", "total-dso"])
def test_energy_measures_of_a_run_match_a_brute_force(run: SimResults, design: str) -> None:
    bids = run.bids[(run.bids["design"] == design).to_numpy(bool)]
    kpis = market_power_kpis(bids, FLEX_OFFERS.empty(), FLEX_ASKS.empty(), design)
    brute = brute_energy(bids)
    hhi = np.array([h for h, _ in brute.values()])
    assert kpis["energy_hhi_max"] == pytest.approx(np.nanmax(hhi), rel=1e-9)
    assert kpis["energy_pivotal_share"] == pytest.approx(np.mean([p for _, p in brute.values()]))
    assert 10000 / 40 < kpis["energy_hhi_max"] <= 10000  # ≤ 32 homes + 1 VPP sell
    assert kpis["energy_rsi_min"] >= 0
    assert kpis["flex_hhi_max"] != kpis["flex_hhi_max"]  # NaN: no flexibility market
    assert kpis["flex_pivotal_share"] == 0.0 and kpis["flagged_offers"] == 0.0
    assert list(kpis) == list(MARKET_POWER_KPIS)


ASKS = asks(
    [{"ask_id": "a1", "t": t, "kw": 30.0, "price_ceiling": 0.5} for t in range(4)]
    + [{"ask_id": "a2", "t": t, "kw": 10.0, "price_ceiling": 0.4, "buses": "b5"} for t in range(4)]
)
BOOK = offers(
    [
        {"offer_id": f"v{t}", "who": "vpp", "t": t, "kw": 20.0, "price": 0.10, "resource": "v/b1"}
        for t in range(4)
    ]
    + [{"offer_id": f"h{t}", "who": "home", "t": t, "kw": 12.0, "price": 0.12} for t in range(4)]
    + [{"offer_id": "z3", "who": "z", "t": 3, "kw": 25.0, "price": 0.14}]
    + [
        {"offer_id": f"w{t}", "who": w, "t": t, "kw": 6.0, "price": 0.09, "ask_id": "a2",
         "bus": "b5"}
        for t in range(4) for w in ("p", "q")
    ]
)  # fmt: skip


def test_strategic_aggregator_shows_in_the_kpis() -> None:
    truthful = market_power_kpis(pd.DataFrame(columns=BIDS.names), BOOK, ASKS, "flex")
    # a1: vpp and home are both pivotal in t0…t2 (32 kW against 30), nobody in t3 (z: 57 kW);
    # a2: p and q (6 + 6 against 10) are both pivotal in every interval
    assert truthful["flex_pivotal_share"] == 1.0
    assert truthful["flex_rsi_min"] == pytest.approx(12.0 / 30.0)  # a1 without the vpp
    assert truthful["flex_hhi_max"] == pytest.approx((100 * 20 / 32) ** 2 + (100 * 12 / 32) ** 2)
    assert truthful["flagged_offers"] == 0.0
    marked = strategic_offers(BOOK, ASKS, "vpp", markup=0.6, withhold_percent=25.0)
    strategic = market_power_kpis(
        pd.DataFrame(columns=BIDS.names), marked, ASKS, "flex", history=BOOK
    )
    # 15 kW withheld: without the vpp 12 kW are left for 30 → RSI 0.4
    # vpp withholds 5 kW where pivotal: the others still leave the ask 18 kW short without it
    assert strategic["flex_rsi_min"] == pytest.approx(12.0 / 30.0)
    assert strategic["flex_hhi_max"] == pytest.approx((100 * 15 / 27) ** 2 + (100 * 12 / 27) ** 2)
    assert strategic["flagged_offers"] == 3.0  # v0, v1, v2: priced far above their history


def test_other_designs_rows_are_left_out() -> None:
    other = BOOK.assign(design=pd.Categorical(["other"] * len(BOOK)))
    k = market_power_kpis(pd.DataFrame(columns=BIDS.names), other, ASKS, "flex")
    assert k["flex_rsi_min"] != k["flex_rsi_min"] and k["flex_pivotal_share"] == 0.0  # no sellers
    assert k["flex_hhi_max"] != k["flex_hhi_max"]


def test_empty_tables() -> None:
    k = market_power_kpis(BIDS.empty(), FLEX_OFFERS.empty(), FLEX_ASKS.empty(), "any")
    nan = {"energy_hhi_max", "energy_rsi_min", "flex_hhi_max", "flex_rsi_min"}
    assert {n for n, v in k.items() if v != v} == nan
    assert {n: v for n, v in k.items() if n not in nan} == {
        "energy_pivotal_share": 0.0,
        "flex_pivotal_share": 0.0,
        "flagged_offers": 0.0,
    }


def test_every_kpi_has_a_meaning_and_a_direction() -> None:
    assert list(MARKET_POWER_BETTER) == list(MARKET_POWER_KPIS)
    assert set(MARKET_POWER_BETTER.values()) <= {"lower", "higher"}
