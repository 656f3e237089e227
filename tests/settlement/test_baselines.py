"""Baselines: known answers on synthetic loads, a loop-by-loop reference for day matching,
exclusion of event days, and History built from meter records across daylight saving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.settlement.baselines import (
    BASELINES,
    WEEKDAY,
    WEEKEND,
    AdditiveAdjustment,
    Event,
    History,
    MeterBeforeMeterAfter,
    NofM,
    RatioAdjustment,
    WeatherRegression,
    Window,
    day_types,
    eligible_days,
    event_mask,
    get_baseline,
)

SLOTS = 24  # hourly slots keep the synthetic histories small
WINDOW = (16, 20)  # 16:00–20:00
START = "2026-01-05"  # a Monday


def shape(n_slots: int = SLOTS, phase: float = 0.0) -> np.ndarray:
    """A daily load shape, kW, > 0."""
    return 1.5 + np.sin(2 * np.pi * (np.arange(n_slots) / n_slots + phase))


def temperatures(n_days: int, seed: int = 0, mean: float = 8.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return mean + 4 * np.sin(2 * np.pi * np.arange(SLOTS) / SLOTS) + rng.normal(0, 3, (n_days, 1))


def weekday_history(load: np.ndarray, slot_h: float = 1.0) -> History:
    """A history whose every day is a weekday."""
    n_m, n_d, _ = load.shape
    dates = np.datetime64(START) + np.arange(n_d)
    ids = np.array([f"m{i}" for i in range(n_m)])
    return History(load, dates, np.full(n_d, WEEKDAY), ids, slot_h)


# --- known answers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BASELINES))
def test_constant_load_every_baseline_is_exact(name: str) -> None:
    level = np.array([0.7, 2.5, 4.0])[:, None, None]
    n_days = 40
    load = np.broadcast_to(level, (3, n_days, SLOTS)).copy()
    h = History.from_arrays(load, START, 1.0, temperature_c=temperatures(n_days))
    b = get_baseline(name)
    for day in (39, 34):  # a Friday and a Sunday
        cf = b.counterfactual(h, None, day, WINDOW)
        assert cf.shape == (3, SLOTS)
        np.testing.assert_allclose(cf[:, 16:20], np.broadcast_to(level[:, 0], (3, 4)), atol=1e-9)


def test_day_matching_uses_days_of_the_same_type() -> None:
    n_days = 42
    h0 = History.from_arrays(np.zeros((1, n_days, SLOTS)), START, 1.0, holidays=["2026-01-28"])
    weekday_shape, weekend_shape = shape(), 3.0 - shape(phase=0.3)
    scale = np.array([1.0, 2.0])[:, None, None]
    weekend = h0.day_type == WEEKEND
    load = scale * np.where(weekend[:, None], weekend_shape, weekday_shape)[None]
    h = History(load, h0.dates, h0.day_type, np.array(["a", "b"]), 1.0)
    assert h.day_type[23] == WEEKEND  # the holiday, a Wednesday
    b = get_baseline("caiso-10-of-10")
    for day in range(20, n_days):
        expect = scale[:, 0] * (weekend_shape if weekend[day] else weekday_shape)
        np.testing.assert_allclose(b.counterfactual(h, None, day, WINDOW), expect, atol=1e-12)
    # the same baseline blind to day types would mix the shapes
    blind = History(load, h.dates, np.full(n_days, WEEKDAY), h.meter_ids, 1.0)
    assert not np.allclose(b.counterfactual(blind, None, 41, WINDOW), h.load_kw[:, 41])


@given(factor=st.floats(0.5, 1.5))
def test_ratio_adjustment_recovers_the_day_scaling_within_its_cap(factor: float) -> None:
    load = np.broadcast_to(shape(), (2, 30, SLOTS)).copy()
    load[:, -1] *= factor
    h = weekday_history(load)
    cf = NofM(10, 10, RatioAdjustment(4.0, 1.0, 0.2)).counterfactual(h, None, 29, WINDOW)
    np.testing.assert_allclose(cf, np.clip(factor, 0.8, 1.2) * np.tile(shape(), (2, 1)), rtol=1e-12)


def test_a_thirty_percent_jump_gives_exactly_the_capped_value() -> None:
    load = np.broadcast_to(shape(), (1, 30, SLOTS)).copy()
    load[:, -1] *= 1.3
    cf = get_baseline("caiso-10-of-10").counterfactual(weekday_history(load), None, 29, WINDOW)
    np.testing.assert_allclose(cf[0, 16:20], 1.2 * shape()[16:20], rtol=1e-12)
    load[:, -1] *= 0.5 / 1.3
    cf = get_baseline("caiso-10-of-10").counterfactual(weekday_history(load), None, 29, WINDOW)
    np.testing.assert_allclose(cf[0, 16:20], 0.8 * shape()[16:20], rtol=1e-12)


def test_the_adjustment_reads_only_its_own_hours() -> None:
    load = np.broadcast_to(shape(), (1, 30, SLOTS)).copy()
    load[:, -1, 15] *= 3.0  # the hour just before the event is outside 4 h … 1 h before
    load[:, -1, 16:] *= 0.1  # the event itself never feeds the adjustment
    cf = NofM(10, 10, RatioAdjustment(4.0, 1.0)).counterfactual(
        weekday_history(load), None, 29, WINDOW
    )
    np.testing.assert_allclose(cf[0], shape(), rtol=1e-12)


@given(delta=st.floats(-2.0, 2.0))
def test_additive_adjustment_shifts_within_its_cap(delta: float) -> None:
    load = np.full((1, 30, SLOTS), 2.0)
    load[:, -1] += delta
    cf = NofM(5, 5, AdditiveAdjustment(3.0, 1.0, 0.2)).counterfactual(
        weekday_history(load), None, 29, WINDOW
    )
    np.testing.assert_allclose(cf, 2.0 + np.clip(delta, -0.4, 0.4), rtol=1e-12)


def test_an_event_at_midnight_is_not_adjusted() -> None:
    load = np.broadcast_to(shape(), (1, 30, SLOTS)).copy()
    load[:, -1] *= 1.1
    cf = get_baseline("caiso-10-of-10").counterfactual(weekday_history(load), None, 29, (0, 2))
    np.testing.assert_allclose(cf[0], shape(), rtol=1e-12)


def test_high_x_of_y_picks_the_highest_recent_days() -> None:
    levels = np.array([[9.0, 1, 2, 8, 3, 5, 4, 7, 0], [1.0, 2, 3, 4, 5, 6, 7, 8, 0]])
    load = np.repeat(levels[:, :, None], SLOTS, axis=2)
    h = weekday_history(load)
    cf = NofM(2, 4).counterfactual(h, None, 8, WINDOW)
    # last four days: meter 0 → 3, 5, 4, 7 (top two 5, 7); meter 1 → 5, 6, 7, 8 (7, 8)
    np.testing.assert_allclose(cf[:, 0], [6.0, 7.5])
    ex = np.zeros((2, 9), dtype=bool)
    ex[0, 7] = True  # meter 0's day with 7 is an event: the window reaches back to 8
    np.testing.assert_allclose(NofM(2, 4).counterfactual(h, ex, 8, WINDOW)[:, 0], [6.5, 7.5])


def reference_n_of_m(
    h: History, excluded: np.ndarray, day: int, n: int, m: int, lookback: int
) -> np.ndarray:
    """N of M, meter by meter and day by day."""
    out = np.full((h.n_meters, h.n_slots), np.nan)
    w = slice(*WINDOW)
    for i in range(h.n_meters):
        days = [
            d
            for d in range(day - 1, max(day - lookback, 0) - 1, -1)
            if h.day_type[d] == h.day_type[day]
            and not excluded[i, d]
            and np.isfinite(h.load_kw[i, d]).all()
        ][:m]
        if len(days) < m:
            continue
        days.sort(key=lambda d: (-h.load_kw[i, d, w].mean(), -d))
        out[i] = h.load_kw[i, days[:n]].mean(axis=0)
    return out


@given(
    seed=st.integers(0, 2**32 - 1),
    nm=st.tuples(st.integers(1, 5), st.integers(1, 8)).filter(lambda t: t[0] <= t[1]),
    lookback=st.integers(5, 30),
)
def test_n_of_m_equals_a_meter_by_meter_reference(
    seed: int, nm: tuple[int, int], lookback: int
) -> None:
    rng = np.random.default_rng(seed)
    n_days = 24
    load = rng.uniform(0, 5, (4, n_days, SLOTS))
    load[rng.random((4, n_days)) < 0.1, 3] = np.nan  # unread intervals make a day ineligible
    h = History(
        load,
        np.datetime64(START) + np.arange(n_days),
        (rng.random(n_days) < 0.3).astype(np.int8),
        np.array(["a", "b", "c", "d"]),
        1.0,
    )
    excluded = rng.random((4, n_days)) < 0.2
    n, m = nm
    for day in (n_days - 1, n_days // 2):
        got = NofM(n, m, lookback_days=lookback).counterfactual(h, excluded, day, WINDOW)
        np.testing.assert_allclose(got, reference_n_of_m(h, excluded, day, n, m, lookback))


def test_event_days_are_excluded_from_the_history() -> None:
    n_days = 30
    rng = np.random.default_rng(3)
    load = rng.uniform(1, 3, (3, n_days, SLOTS))
    h = History.from_arrays(load, START, 1.0, temperature_c=temperatures(n_days))
    spiked = load.copy()
    spiked[:, 25] += 50.0  # a Friday with an event
    hs = History.from_arrays(spiked, START, 1.0, temperature_c=temperatures(n_days))
    ex = event_mask(h, [Event((25,), Window(*WINDOW))])
    assert ex[:, 25].all() and ex.sum() == 3
    for b in BASELINES.values():
        plain = b.counterfactual(h, ex, 28, WINDOW)
        np.testing.assert_allclose(b.counterfactual(hs, ex, 28, WINDOW), plain, atol=1e-9)
    caiso = get_baseline("caiso-10-of-10")
    with_spike = caiso.counterfactual(hs, None, 28, WINDOW)
    assert (with_spike[:, 16:20] > caiso.counterfactual(h, ex, 28, WINDOW)[:, 16:20] + 1).all()


def test_an_event_of_some_meters_excludes_only_theirs() -> None:
    h = weekday_history(np.ones((3, 12, SLOTS)))
    ex = event_mask(h, [Event((4, 5), Window(10, 12), meters=("m1",))])
    np.testing.assert_array_equal(np.flatnonzero(ex.any(axis=1)), [1])
    assert eligible_days(h, ex)[1].sum() == 10
    with pytest.raises(InvalidInputError, match="unknown meters"):
        event_mask(h, [Event((4,), Window(10, 12), meters=("zz",))])
    with pytest.raises(InvalidInputError, match="outside"):
        event_mask(h, [Event((12,), Window(10, 12))])


def test_not_enough_history_gives_nan() -> None:
    h = weekday_history(np.ones((2, 12, SLOTS)))
    assert np.isnan(NofM(10, 10).counterfactual(h, None, 9, WINDOW)).all()
    assert np.isfinite(NofM(10, 10).counterfactual(h, None, 10, WINDOW)).all()
    ex = np.zeros((2, 12), dtype=bool)
    ex[1, 3] = True
    cf = NofM(10, 10).counterfactual(h, ex, 10, WINDOW)
    assert np.isfinite(cf[0]).all() and np.isnan(cf[1]).all()


def test_weather_regression_recovers_a_load_linear_in_degree_days() -> None:
    n_days, n_m = 50, 3
    temp = temperatures(n_days, seed=1, mean=17.0)  # both sides of both balance points
    hdd, cdd = np.maximum(15.5 - temp, 0), np.maximum(temp - 22.0, 0)
    assert hdd.any() and cdd.any()
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 2, (n_m, 1, SLOTS))
    heat, cool = rng.uniform(0.1, 0.5, (2, n_m, 1, 1))
    h0 = History.from_arrays(np.zeros((n_m, n_days, SLOTS)), START, 1.0, temperature_c=temp)
    weekend = 0.3 * (h0.day_type == WEEKEND)[None, :, None]
    load = base + weekend + heat * hdd[None] + cool * cdd[None]
    h = History.from_arrays(load, START, 1.0, temperature_c=temp)
    b = get_baseline("weather-regression")
    for day in (n_days - 1, n_days - 3, 30):
        np.testing.assert_allclose(b.counterfactual(h, None, day, WINDOW), load[:, day], atol=1e-9)


def dense_regression(h: History, excluded: np.ndarray, day: int) -> np.ndarray:
    """Weather regression meter by meter with lstsq on the full design matrix."""
    assert h.temperature_c is not None

    def design(days: list[int]) -> np.ndarray:
        t = h.temperature_c[days].reshape(-1)
        return np.column_stack(
            [
                np.tile(np.eye(h.n_slots), (len(days), 1)),
                np.repeat(h.day_type[days] == WEEKEND, h.n_slots),
                np.maximum(15.5 - t, 0),
                np.maximum(t - 22.0, 0),
            ]
        )

    out = np.full((h.n_meters, h.n_slots), np.nan)
    for i in range(h.n_meters):
        days = [d for d in range(max(day - 60, 0), day) if not excluded[i, d]]
        coef = np.linalg.lstsq(design(days), h.load_kw[i, days].reshape(-1), rcond=None)[0]
        out[i] = design([day]) @ coef
    return out


@settings(max_examples=20)  # each example runs three dense lstsq fits of about 750 × 27
@given(seed=st.integers(0, 2**32 - 1))
def test_weather_regression_equals_lstsq_on_the_full_design_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_days = 40
    temp = 18 + rng.normal(0, 6, (n_days, 1)) + rng.normal(0, 2, (n_days, SLOTS))
    h = History.from_arrays(rng.uniform(0, 3, (3, n_days, SLOTS)), START, 1.0, temperature_c=temp)
    excluded = rng.random((3, n_days)) < 0.2
    excluded[0] = excluded[1]  # two meters share their usable days, one has its own
    got = WeatherRegression().counterfactual(h, excluded, n_days - 1, WINDOW)
    np.testing.assert_allclose(got, dense_regression(h, excluded, n_days - 1), atol=1e-9)


def test_weather_regression_is_linear_in_temperature_below_the_heating_point() -> None:
    n_days = 30
    temp = temperatures(n_days, seed=4, mean=2.0)
    assert (temp < 15.5).all()
    load = 3.0 - 0.08 * temp[None] + 0.2 * shape()[None, None]
    h = History.from_arrays(np.repeat(load, 2, axis=0), START, 1.0, temperature_c=temp)
    cf = WeatherRegression(min_history_days=10).counterfactual(h, None, 29, WINDOW)
    np.testing.assert_allclose(cf, h.load_kw[:, 29], atol=1e-9)


def test_weather_regression_needs_temperatures_and_history() -> None:
    h = weekday_history(np.ones((2, 20, SLOTS)))
    with pytest.raises(InvalidInputError, match="needs temperatures"):
        WeatherRegression().counterfactual(h, None, 19, WINDOW)
    ht = History(h.load_kw, h.dates, h.day_type, h.meter_ids, 1.0, np.full((20, SLOTS), 5.0))
    assert np.isnan(
        WeatherRegression(min_history_days=12).counterfactual(ht, None, 11, WINDOW)
    ).all()
    ex = np.zeros((2, 20), dtype=bool)
    ex[0, :10] = True  # meter 0 keeps 9 usable days before day 19: too few
    cf = WeatherRegression(min_history_days=10).counterfactual(ht, ex, 19, WINDOW)
    assert np.isnan(cf[0]).all()
    np.testing.assert_allclose(cf[1], 1.0, atol=1e-9)


def test_meter_before_meter_after_is_the_mean_of_the_intervals_before() -> None:
    rng = np.random.default_rng(5)
    load = rng.uniform(0, 4, (5, 3, 96))
    h = weekday_history(load, slot_h=0.25)
    cf = MeterBeforeMeterAfter(4).counterfactual(h, None, 2, (40, 42))
    np.testing.assert_allclose(
        cf[:, 40:42], np.repeat(load[:, 2, 36:40].mean(axis=1)[:, None], 2, 1)
    )
    assert np.isnan(cf[:, :40]).all() and np.isnan(cf[:, 42:]).all()
    assert np.isnan(MeterBeforeMeterAfter(4).counterfactual(h, None, 2, (3, 5))).all()


def test_registry_and_parameter_errors() -> None:
    with pytest.raises(InvalidInputError, match="caiso-10-of-10") as info:
        get_baseline("10-of-10")
    assert "weather-regression" in str(info.value)
    for name, b in BASELINES.items():
        assert b.name == name
    assert get_baseline("caiso-10-of-10").min_history_days == 4
    assert get_baseline("meter-before-meter-after").min_history_days == 0
    with pytest.raises(InvalidInputError, match="n ≤ m"):
        NofM(5, 4)
    with pytest.raises(InvalidInputError, match="cap"):
        RatioAdjustment(cap=1.5)
    with pytest.raises(InvalidInputError, match="before_h"):
        AdditiveAdjustment(1.0, 2.0)
    h = weekday_history(np.ones((1, 12, SLOTS)))
    with pytest.raises(InvalidInputError, match="window"):
        NofM(2, 2).counterfactual(h, None, 11, (20, 30))
    with pytest.raises(InvalidInputError, match="outside the history"):
        NofM(2, 2).counterfactual(h, None, 12, WINDOW)
    with pytest.raises(InvalidInputError, match="whole number"):
        NofM(2, 2, RatioAdjustment(2.5, 1.0)).counterfactual(h, None, 11, WINDOW)
    with pytest.raises(InvalidInputError, match="excluded"):
        NofM(2, 2).counterfactual(h, np.zeros(5, dtype=bool), 11, WINDOW)


def test_history_checks_its_arrays() -> None:
    load = np.ones((2, 3, SLOTS))
    dates = np.datetime64(START) + np.arange(3)
    ids = np.array(["a", "b"])
    with pytest.raises(InvalidInputError, match="24-hour"):
        History(load, dates, np.zeros(3), ids, 0.5)
    with pytest.raises(InvalidInputError, match="distinct"):
        History(load, dates, np.zeros(3), np.array(["a", "a"]), 1.0)
    with pytest.raises(InvalidInputError, match="increasing"):
        History(load, dates[::-1], np.zeros(3), ids, 1.0)
    with pytest.raises(InvalidInputError, match="day_type"):
        History(load, dates, np.array([0, 1, 2]), ids, 1.0)
    with pytest.raises(InvalidInputError, match="temperature_c"):
        History(load, dates, np.zeros(3), ids, 1.0, np.ones((3, 5)))


def test_day_types_mark_weekends_and_holidays() -> None:
    dates = np.datetime64("2026-12-24") + np.arange(5)  # Thu … Mon
    np.testing.assert_array_equal(day_types(dates, ["2026-12-25"]), [0, 1, 1, 1, 0])


# --- History from meter records ----------------------------------------------------------


def meter_records(starts: pd.DatetimeIndex, meters: tuple[str, ...], dt_h: float) -> pd.DataFrame:
    """Readings of ``meters`` at UTC ``starts``: meter k imports (k + 1) · (1 + hour of the
    UTC day / 100) kW, and exports 0.5 kW in the UTC hour 12."""
    hour = starts.hour.to_numpy() + starts.minute.to_numpy() / 60
    n = len(starts)
    kw = np.concatenate([(k + 1) * (1 + hour / 100) for k in range(len(meters))])
    export = np.tile(np.where(starts.hour.to_numpy() == 12, 0.5, 0.0), len(meters))
    return METER.frame(
        {
            "design": "d",
            "market_id": "m",
            "stage": "s",
            "interval_start": np.tile(starts, len(meters)),
            "duration_h": dt_h,
            "participant_id": np.repeat(meters, n),
            "resource_id": np.repeat(meters, n),
            "node_id": np.repeat(meters, n),
            "import_kwh": kw * dt_h,
            "export_kwh": export * dt_h,
            "quality": "measured",
        }
    )


def test_from_meter_across_the_spring_daylight_saving_day() -> None:
    tz = "Europe/Berlin"
    start = pd.Timestamp("2018-03-24", tz=tz).tz_convert("UTC")
    end = pd.Timestamp("2018-03-27", tz=tz).tz_convert("UTC")
    starts = pd.date_range(start, end, freq="15min", inclusive="left")
    frame = meter_records(starts, ("mb", "ma"), 0.25)
    temp = pd.Series(np.arange(len(starts[::4])) * 0.1, index=starts[::4])  # hourly, °C
    h = History.from_meter(frame, tz, temperature=temp)
    assert h.slot_h == 0.25 and h.n_slots == 96 and h.n_days == 3
    np.testing.assert_array_equal(h.meter_ids, ["ma", "mb"])
    np.testing.assert_array_equal(
        h.dates, np.array(["2018-03-24", "2018-03-25", "2018-03-26"], "M8[D]")
    )
    np.testing.assert_array_equal(h.day_type, [WEEKEND, WEEKEND, WEEKDAY])
    # 25 March: 02:00–03:00 local does not exist; everything else is read
    missing = np.argwhere(np.isnan(h.load_kw))
    assert {(d, s) for _, d, s in missing} == {(1, s) for s in range(8, 12)}
    assert len(missing) == 2 * 4
    # the reading of local 04:15 on 25 March (02:15 UTC, CEST) lands in slot 17
    np.testing.assert_allclose(h.load_kw[:, 1, 17], [2 * (1 + 2.25 / 100), 1 + 2.25 / 100])
    # local 13:00 on 24 March is 12:00 UTC (CET): the exporting hour
    np.testing.assert_allclose(h.load_kw[1, 0, 52], 1 + 12 / 100 - 0.5)
    assert h.temperature_c is not None
    np.testing.assert_allclose(h.temperature_c[0, :4], [0.0, 0.025, 0.05, 0.075])
    assert np.isnan(h.temperature_c[1, 8:12]).all() and np.isnan(h.temperature_c[2, -3:]).all()


def test_from_meter_averages_the_repeated_autumn_hour() -> None:
    tz = "Europe/Berlin"
    start = pd.Timestamp("2018-10-28", tz=tz).tz_convert("UTC")
    end = pd.Timestamp("2018-10-29", tz=tz).tz_convert("UTC")
    starts = pd.date_range(start, end, freq="1h", inclusive="left")
    assert len(starts) == 25
    h = History.from_meter(meter_records(starts, ("m",), 1.0), tz)
    assert h.load_kw.shape == (1, 1, 24) and np.isfinite(h.load_kw).all()
    # local 02:00 came twice: 00:00 UTC (CEST) and 01:00 UTC (CET)
    np.testing.assert_allclose(h.load_kw[0, 0, 2], 1 + 0.5 / 100)
    np.testing.assert_allclose(h.load_kw[0, 0, 3], 1 + 2 / 100)


def test_from_meter_rejects_what_it_cannot_place() -> None:
    starts = pd.date_range("2026-03-02T00:00Z", periods=8, freq="1h")
    ok = meter_records(starts, ("m",), 1.0)
    with pytest.raises(InvalidInputError, match="time zone"):
        History.from_meter(ok, "Mars/Olympus")
    with pytest.raises(InvalidInputError, match="two readings"):
        History.from_meter(pd.concat([ok, ok], ignore_index=True), "UTC")
    mixed = ok.copy()
    mixed.loc[3, "duration_h"] = 0.5
    with pytest.raises(InvalidInputError, match="one interval length"):
        History.from_meter(mixed, "UTC")
    with pytest.raises(InvalidInputError, match="slot boundary"):
        History.from_meter(ok, "Asia/Kolkata")  # UTC+05:30: hours start at :30
    gap = ok.copy()
    gap.loc[2, "import_kwh"] = np.nan
    with pytest.raises(InvalidInputError, match="no number for m"):
        History.from_meter(gap, "UTC")
    with pytest.raises(InvalidInputError, match="columns"):
        History.from_meter(ok.drop(columns="quality"), "UTC")
    with pytest.raises(InvalidInputError, match="time-zone-aware"):
        History.from_meter(ok, "UTC", temperature=pd.Series([1.0, 2.0]))
