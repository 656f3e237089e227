"""Placebo scoring: exact baselines score zero, noise scores its σ, a short history keeps its
row with NaN, and the metrics match their definitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.errors import InvalidInputError
from transactive.settlement.baseline_scores import (
    INSUFFICIENT,
    SCORE_COLUMNS,
    placebo_errors,
    score_baselines,
    score_row,
)
from transactive.settlement.baselines import (
    BASELINES,
    WEEKDAY,
    History,
    NofM,
    Window,
    WindowLike,
    as_window,
)

SLOTS = 24
START = "2026-01-05"  # a Monday


@dataclass(frozen=True)
class NoisyTruth:
    """A baseline that knows the actual load and adds seeded N(0, σ) noise: unbiased, with
    an error of exactly that spread (the yardstick for the scoring itself)."""

    sigma: float
    seed: int
    name: str = "noisy-truth"
    min_history_days: int = 0

    def counterfactual(
        self, history: History, excluded: np.ndarray | None, day: int, window: WindowLike
    ) -> np.ndarray:
        as_window(window, history.n_slots)
        rng = np.random.default_rng([self.seed, day])
        noise = rng.normal(0.0, self.sigma, (history.n_meters, history.n_slots))
        return history.load_kw[:, day] + noise


def weekday_history(load: np.ndarray) -> History:
    n_m, n_d, _ = load.shape
    dates = np.datetime64(START) + np.arange(n_d)
    return History(load, dates, np.full(n_d, WEEKDAY), np.arange(n_m).astype(str), 1.0)


def test_the_table_has_every_column_and_one_row_per_baseline() -> None:
    n_days = 40
    rng = np.random.default_rng(0)
    temp = 8 + rng.normal(0, 3, (n_days, 1)) + np.zeros((1, SLOTS))
    load = np.full((4, n_days, SLOTS), 2.0)
    h = History.from_arrays(load, START, 1.0, temperature_c=temp)
    table = score_baselines(h, list(BASELINES), (16, 20))
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert list(table["baseline"]) == list(BASELINES)
    # constant load: every baseline exact on every scored meter-day
    metrics = ["mean_error_kw", "rmse_kw", "mean_abs_error_kw", "p10_error_kw", "p90_error_kw"]
    np.testing.assert_allclose(table[metrics].to_numpy(dtype=float), 0.0, atol=1e-9)
    assert (table["n_meter_days"] == 4 * table["n_days"]).all()
    assert (table["n_days"] > 0).all() and (table["note"] == "").all()
    mbma = table.set_index("baseline").loc["meter-before-meter-after"]
    assert mbma["n_days"] == n_days  # needs no prior day


@given(sigma=st.floats(0.05, 2.0), seed=st.integers(0, 2**32 - 1))
def test_an_unbiased_noisy_baseline_scores_its_noise(sigma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    load = rng.uniform(1.0, 3.0, (200, 30, SLOTS))
    h = weekday_history(load)
    row = score_baselines(h, [NoisyTruth(sigma, seed)], (18, 19)).iloc[0]
    n = 200 * 30
    assert row["n_meter_days"] == n and row["n_days"] == 30
    assert abs(row["mean_error_kw"]) < 5 * sigma / np.sqrt(n)
    assert row["rmse_kw"] == pytest.approx(sigma, rel=0.06)
    assert row["mean_abs_error_kw"] == pytest.approx(sigma * np.sqrt(2 / np.pi), rel=0.06)
    assert row["p50_error_kw"] == pytest.approx(0.0, abs=0.1 * sigma)
    assert row["p90_error_kw"] == pytest.approx(1.2816 * sigma, rel=0.1)
    assert row["p10_error_kw"] == pytest.approx(-1.2816 * sigma, rel=0.1)
    mean_actual = load[:, :, 18].mean()
    assert row["cv_rmse_percent"] == pytest.approx(100 * row["rmse_kw"] / mean_actual, rel=1e-3)


def test_ten_of_ten_on_white_noise_has_the_error_of_an_average() -> None:
    """Independent formulation: on load μ + ε (ε iid N(0, σ)), the plain 10-of-10 error is
    the mean of ten ε minus one ε: unbiased, with RMSE σ·√(1 + 1/10)."""
    sigma, mu = 0.3, 2.0
    rng = np.random.default_rng(11)
    load = mu + rng.normal(0, sigma, (500, 40, SLOTS))
    row = score_baselines(weekday_history(load), [NofM(10, 10)], (12, 13)).iloc[0]
    n = 500 * 30  # days 10 … 39
    assert row["n_meter_days"] == n and row["n_days"] == 30
    assert abs(row["mean_error_kw"]) < 5 * sigma * np.sqrt(1.1 / n)
    assert row["rmse_kw"] == pytest.approx(sigma * np.sqrt(1.1), rel=0.03)
    assert row["mean_error_percent"] == pytest.approx(100 * row["mean_error_kw"] / mu, rel=0.01)


def test_one_week_of_history_scores_only_the_baselines_that_need_little() -> None:
    load = np.full((3, 7, SLOTS), 1.0)
    h = History.from_arrays(load, START, 1.0, temperature_c=np.full((7, SLOTS), 5.0))
    table = score_baselines(h, list(BASELINES), (16, 20)).set_index("baseline")
    for name in ("caiso-10-of-10", "nyiso-high-5-of-10", "weather-regression"):
        row = table.loc[name]
        assert row["n_days"] == 0 and row["n_meter_days"] == 0 and row["note"] == INSUFFICIENT
        assert np.isnan(row[list(SCORE_COLUMNS[3:-1])].to_numpy(dtype=float)).all()
    assert table.loc["meter-before-meter-after", "n_meter_days"] == 21
    # high 4 of 5: no weekday has five weekdays before it, no weekend day three weekend days
    assert table.loc["high-4-of-5", "n_meter_days"] == 0


def test_excluded_meter_days_are_not_placebo_days() -> None:
    rng = np.random.default_rng(4)
    load = rng.uniform(1, 2, (3, 20, SLOTS))
    h = weekday_history(load)
    ex = np.zeros((3, 20), dtype=bool)
    ex[1, 15] = True
    ex[:, 17] = True
    error, actual = placebo_errors(h, NofM(5, 5), (8, 10), ex)
    scored = np.isfinite(error)
    assert not scored[:, :5].any() and not scored[:, 17].any() and not scored[1, 15]
    assert scored.sum() == 3 * 15 - 3 - 1
    np.testing.assert_allclose(actual[scored], load[:, :, 8:10].mean(axis=2)[scored])
    # the error of one meter-day, by hand: the mean of the five prior days, minus the day
    # one meter-day by hand: day 18 of meter 0 matches days 12–16 (17 is an event day)
    expect = (load[0, [12, 13, 14, 15, 16]].mean(axis=0) - load[0, 18])[8:10].mean()
    assert error[0, 18] == pytest.approx(expect)


def test_unread_actuals_are_not_scored() -> None:
    load = np.full((2, 12, SLOTS), 1.0)
    load[0, 11, 9] = np.nan
    error, _ = placebo_errors(weekday_history(load), NofM(3, 3), Window(8, 10))
    assert np.isnan(error[0, 11]) and error[1, 11] == 0.0


def test_score_row_matches_its_definitions() -> None:
    error = np.array([[1.0, -1.0, np.nan], [2.0, -2.0, np.nan]])
    actual = np.array([[4.0, 4.0, np.nan], [4.0, 4.0, np.nan]])
    row = score_row("x", error, actual)
    assert row["n_days"] == 2 and row["n_meter_days"] == 4
    assert row["mean_error_kw"] == 0.0 and row["mean_error_percent"] == 0.0
    assert row["rmse_kw"] == pytest.approx(np.sqrt(2.5))
    assert row["cv_rmse_percent"] == pytest.approx(100 * np.sqrt(2.5) / 4)
    assert row["mean_abs_error_kw"] == 1.5
    assert row["p50_error_kw"] == 0.0
    assert row["p10_error_kw"] == pytest.approx(np.percentile([1, -1, 2, -2], 10))
    assert row["note"] == ""


def test_scoring_takes_names_and_rejects_unknown_ones_and_bad_windows() -> None:
    h = weekday_history(np.ones((1, 12, SLOTS)))
    table = score_baselines(h, ["meter-before-meter-after"], (5, 6))
    assert table["n_meter_days"].tolist() == [12]
    with pytest.raises(InvalidInputError, match="known baselines"):
        score_baselines(h, ["nope"], (5, 6))
    with pytest.raises(InvalidInputError, match="window"):
        score_baselines(h, ["meter-before-meter-after"], (6, 5))
