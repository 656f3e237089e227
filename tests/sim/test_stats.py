"""Properties of the seed statistics (:mod:`transactive.sim.stats`): the t-interval contains
the mean, narrows with more seeds and widens with the level; paired differences cancel what
a seed shares across designs; one seed gives no interval and nothing significant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from transactive.sim.stats import SUMMARY_COLUMNS, interval, summarise

values = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=30,
)


@given(values)
def test_the_interval_contains_the_mean(xs: list[float]) -> None:
    mean, lo, hi = interval(np.array(xs))
    assert mean == pytest.approx(float(np.mean(xs)), rel=1e-9, abs=1e-6)
    assert lo <= mean <= hi


@given(values)
def test_the_interval_is_students_t(xs: list[float]) -> None:
    x = np.array(xs)
    mean, lo, hi = interval(x)
    if x.std() == 0:
        assert lo == hi == mean
        return
    ref = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert (lo, hi) == pytest.approx(ref, rel=1e-9, abs=1e-9)


@given(values.filter(lambda xs: np.std(xs) > 1e-3))
def test_the_interval_narrows_with_more_seeds_and_widens_with_the_level(xs: list[float]) -> None:
    x = np.array(xs)
    _, lo, hi = interval(x)
    _, lo2, hi2 = interval(np.tile(x, 2))  # the same spread, twice the seeds
    assert hi2 - lo2 < hi - lo
    _, lo99, hi99 = interval(x, level=0.99)
    assert hi99 - lo99 > hi - lo


def test_one_value_or_none_gives_no_interval() -> None:
    assert interval(np.array([3.0]))[0] == 3.0
    assert np.isnan(interval(np.array([3.0]))[1:]).all()
    assert np.isnan(interval(np.array([]))).all()
    assert interval(np.array([1.0, np.nan, 3.0]))[0] == 2.0  # NaN dropped


def long_table(per_design: dict[str, list[float]], kpi: str = "peak_import_kw") -> pd.DataFrame:
    rows = [
        (seed, design, kpi, v)
        for design, xs in per_design.items()
        for seed, v in enumerate(xs, start=10)
    ]
    return pd.DataFrame(rows, columns=["seed", "design", "kpi", "value"])


@given(
    st.lists(st.integers(-10_000, 10_000), min_size=2, max_size=20),
    st.integers(-500, 500),
)
def test_a_constant_shift_is_an_exact_difference_with_no_width(base: list[int], c: int) -> None:
    # Integers are exact in floating point: the paired differences are exactly c.
    a = [float(v) for v in base]
    table = long_table({"bau": a, "market": [v + c for v in a]})
    summary = summarise(table, "bau")
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    s = summary.set_index("design")
    m = s.loc["market"]
    assert m["diff"] == m["diff_lo"] == m["diff_hi"] == c
    assert bool(m["significant"]) == (c != 0)
    b = s.loc["bau"]
    assert b["diff"] == b["diff_lo"] == b["diff_hi"] == 0.0 and not b["significant"]


def test_pairing_cancels_what_the_seeds_share() -> None:
    # Seeds spread widely, the design lowers each by 1 to 3 %: unpaired the means' intervals
    # overlap; paired the difference is clearly negative.
    rng = np.random.default_rng(1)
    a = rng.uniform(100.0, 400.0, size=8)
    b = a * (1 - rng.uniform(0.01, 0.03, size=8))
    s = summarise(long_table({"bau": list(a), "market": list(b)}), "bau").set_index("design")
    assert s.loc["market", "lo"] < s.loc["bau", "hi"]  # the KPI's own intervals overlap
    assert s.loc["market", "diff_hi"] < 0 and s.loc["market", "significant"]


def test_without_the_baseline_there_is_no_difference() -> None:
    s = summarise(long_table({"market": [1.0, 2.0, 4.0]}), "bau")
    assert s["diff"].isna().all() and not s["significant"].any()
    assert summarise(long_table({}), "bau").empty


def test_one_seed_is_never_significant() -> None:
    s = summarise(long_table({"bau": [1.0], "market": [5.0]}), "bau").set_index("design")
    assert s.loc["market", "diff"] == 4.0
    assert np.isnan(s.loc["market", "diff_lo"]) and not s.loc["market", "significant"]
