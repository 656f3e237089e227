"""Wholesale interface: price series and a merit order the area can move."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from transactive.core.curves import block_curves
from transactive.core.time import Intervals
from transactive.errors import InvalidInputError
from transactive.nodes.wholesale import (
    PriceSeries,
    clear_wholesale,
    read_merit_order,
    read_price_series,
)

IV = Intervals.between("2026-07-01T00:00Z", "2026-07-01T02:00Z", timedelta(minutes=15))


def test_hourly_prices_hold_for_each_quarter_hour(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("start,price\n2026-07-01T01:00:00Z,80\n2026-07-01T00:00:00Z,40\n")
    series = read_price_series(path, IV)
    np.testing.assert_allclose(series.price, [0.04] * 4 + [0.08] * 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start,price\n2026-07-01T00:00:00Z,abc\n", ":2: column 'price'"),
        ("start,price\nnoon,40\n", ":2: column 'start'"),
        ("when,price\n", "missing column"),
        ("start,price\n2026-07-01T01:00:00Z,40\n", "no price at or before"),
    ],
)
def test_bad_price_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        read_price_series(path, IV)


def test_price_series_sets_the_price_and_the_area_takes_its_curve() -> None:
    area = block_curves([0.10, 0.03], [5.0, -2.0])  # interval 0 buys below 0.10; 1 sells
    price, award = clear_wholesale(area, PriceSeries(np.array([0.05, 0.05])), 0.0, 1.0)
    np.testing.assert_allclose(price, [0.05, 0.05])
    np.testing.assert_allclose(award, [5.0, -2.0])


def test_merit_order_price_is_the_marginal_units_cost_and_a_big_area_moves_it() -> None:
    mo = read_merit_order(np.array([500.0]), scale_kw=1000.0)
    # Cumulative capacity (kW): wind+solar 200, nuclear 380, hydro 450, coal 600 (32 $/MWh).
    price, award = clear_wholesale(block_curves([1.0], [0.0]), mo, 0.0, 1.0)
    assert price[0] == pytest.approx(0.032) and award[0] == 0.0
    # A flexible area buying 300 kW below 0.2 $/kWh pushes load into the CCGT block.
    price, award = clear_wholesale(block_curves([0.2], [300.0]), mo, 0.0, 1.0)
    assert price[0] == pytest.approx(0.038) and award[0] == pytest.approx(300.0)
