"""Warm-up: the KPIs of a period do not depend on when the simulation started, once the
devices have had a day to reach their steady state (batteries, thermal mass, EV sessions);
without it, the start hour shows in the results (the cold-start artefact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.sim.scenario import parse_scenario

KPIS = ["energy_import_kwh", "losses_kwh", "peak_import_kw", "total_cost_usd"]


def scenario(tmp: Path, warmup_days: float) -> dict[str, Any]:
    prices = tmp / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n2016-07-12T22:00:00Z,25\n")
    return {
        "name": "warm",
        "region": "us",
        "feeder": "pandapower:kerber_landnetz_kabel_1",
        "start": "2016-07-12T20:00:00Z",
        "end": "2016-07-13T02:00:00Z",
        "warmup_days": warmup_days,
        "market_interval_min": 15,
        "powerflow_interval_min": 30,
        "designs": ["bau-flat", "total-dso"],
        "seed": 3,
        "homes_per_load": 2,
        "der": {"penetration": {"ev": 100, "hvac": 50, "battery": 25}},
        "market": {"floor": 0.0, "cap": 2.0},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }


def kpis(tmp: Path, warmup_days: float) -> pd.DataFrame:
    res = runner.run(parse_scenario(scenario(tmp, warmup_days)))
    assert res.kpi_start == pd.Timestamp("2016-07-12T20:00:00Z")
    return res.kpis.loc[KPIS]


@pytest.mark.slow
def test_kpis_with_warmup_do_not_depend_on_the_start_hour(tmp_path: Path) -> None:
    # The same evaluated six hours, simulated from 20:00 the day before or from 14:00.
    day, day_and_6h = kpis(tmp_path, 1.0), kpis(tmp_path, 1.25)
    warm = ((day - day_and_6h).abs() / day.abs()).max(axis=None)
    assert warm < 0.05  # within 5 % (the thermostats keep their own phase: a few %)
    cold, cold_6h = kpis(tmp_path, 0.0), kpis(tmp_path, 0.25)
    cold_gap = ((cold - cold_6h).abs() / cold.abs()).max(axis=None)
    assert cold_gap > 3 * warm  # without warm-up the start hour shows
