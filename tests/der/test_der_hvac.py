"""HVAC: comfort band, PNNL ramp bid and inverse setpoint rule, exact RC physics."""

from __future__ import annotations

import numpy as np
import pytest
from der_helpers import price_path, run
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.curves import quantity_at
from transactive.der import HVAC, Weather, hvac, make_context, make_fleet
from transactive.der.base import WeatherSample


@pytest.mark.parametrize("season", [True, False], ids=["summer", "winter"])
@settings(max_examples=4, deadline=None, print_blob=False)
@given(seed=st.integers(0, 10_000), level=st.floats(0.0, 1.0))
def test_comfort_band_kept_whenever_prices_allow(
    summer: Weather, winter: Weather, seed: int, level: float, season: bool
) -> None:
    w = summer if season else winter
    prices = np.clip(price_path(len(w) + 96, seed) + level, 0.0, 1.0)  # ≤ cap = 1
    fleet = make_fleet("hvac", 80, seed=seed)
    p = fleet.params
    _, reports, _, _ = run(fleet, w, prices)
    temps = np.array([r.extra["temp_c"] for r in reports])
    assert np.all(temps >= p.setpoint_c - p.range_low - 1e-9)
    assert np.all(temps <= p.setpoint_c + p.range_high + 1e-9)
    assert sum(r.extra["discomfort_kh"].sum() for r in reports) < 1e-9
    # Over the fleet the season shows: cooling in July, heating in January (a single house
    # may heat on a cool July night, so this is checked for the fleet, not per house).
    heat = float(sum(r.extra["heat_kwh"].sum() for r in reports))
    assert heat > 0 if not season else heat < 0
    assert sum(r.energy_kwh.sum() for r in reports) > 0


def test_bid_price_is_the_ramp_formula() -> None:
    fleet = make_fleet("hvac", 50, seed=3)
    p, s = fleet.params, fleet.state
    hot = WeatherSample(temp_air=33.0, ghi=600.0)
    ctx = make_context(
        "2024-07-01T18:00Z", 0.25, [0.05, 0.1, 0.15], weather=hot, floor=0.0, cap=1.0
    )
    assert np.all(hvac.mode(p, ctx) == -1.0)  # cooling
    dev = s.temp_c - p.setpoint_c
    k = np.where(dev >= 0, p.k_high, p.k_low)
    rng_ = np.where(dev >= 0, p.range_high, p.range_low)
    expected = np.clip(ctx.price_mean + dev * k * ctx.price_std / rng_, 0.0, 1.0)
    c = fleet.bid(ctx)
    np.testing.assert_allclose(c.price[c.offsets[:-1]], expected)
    # Warmer house, higher bid (cooling).
    warmer = hvac.HVACState(s.temp_c + 0.5, s.setpoint_c, s.on)
    assert np.all(hvac.bid_price(p, warmer, ctx) >= hvac.bid_price(p, s, ctx))
    assert np.any(hvac.bid_price(p, warmer, ctx) > hvac.bid_price(p, s, ctx))


@pytest.mark.parametrize("temp_out", [33.0, -5.0])
def test_inverse_rule_setpoint_agrees_with_the_bid(temp_out: float) -> None:
    """After clearing at p the house runs iff its temperature is beyond the new setpoint,
    which is exactly when its ramp bid price was ≥ p."""
    fleet = make_fleet("hvac", 400, seed=11)
    p, s = fleet.params, fleet.state
    ctx = make_context(
        "2024-07-01T18:00Z",
        0.25,
        np.linspace(0.02, 0.2, 24),
        weather=WeatherSample(temp_air=temp_out),
        floor=0.0,
        cap=1.0,
    )
    mode = hvac.mode(p, ctx)
    assert np.all(mode == (-1.0 if temp_out > 20 else 1.0))
    bid = hvac.bid_price(p, s, ctx)
    for price in (0.05, ctx.price_mean, 0.15):
        sp = hvac.setpoint_after_clearing(p, ctx, price)
        beyond = -mode * (s.temp_c - sp) >= 0
        inside = (bid > 0) & (bid < 1.0) & (np.abs(bid - price) > 1e-9)
        inside &= (sp > p.setpoint_c - p.range_low) & (sp < p.setpoint_c + p.range_high)
        assert inside.sum() > 20
        np.testing.assert_array_equal(beyond[inside], (bid >= price)[inside])
    # The setpoint moves up (cooling) / down (heating) when prices are above the mean.
    sp_hi = hvac.setpoint_after_clearing(p, ctx, ctx.price_mean + ctx.price_std)
    assert np.all(-mode * (sp_hi - p.setpoint_c) > 0)


def test_exact_integration_is_step_size_independent(summer: Weather) -> None:
    fleet = make_fleet("hvac", 30, seed=2)
    w = summer.sample(50)
    power = (
        np.linspace(0.0, 1.0, 30)
        * fleet.limits(
            make_context("2024-07-15T16:30Z", 0.25, [0.1], weather=w, floor=0.0, cap=1.0)
        )[1]
    )
    big = make_context("2024-07-15T16:30Z", 0.25, [0.1], weather=w, floor=0.0, cap=1.0)
    one, r1 = fleet.step(power, big)
    many = fleet
    e = np.zeros(30)
    for k in range(5):
        ctx = make_context(
            big.start + k * np.timedelta64(3, "m"), 0.05, [0.1], weather=w, floor=0.0, cap=1.0
        )
        many, r = many.step(power, ctx)
        e += r.energy_kwh
    np.testing.assert_allclose(many.state.temp_c, one.state.temp_c, rtol=1e-12)
    np.testing.assert_allclose(e, r1.energy_kwh, rtol=1e-12)


def test_must_run_power_is_bid_at_every_price() -> None:
    fleet = make_fleet("hvac", 20, seed=5)
    p = fleet.params
    hot_house = hvac.HVACState(p.setpoint_c + p.range_high - 0.01, p.setpoint_c, fleet.state.on)
    ctx = make_context(
        "2024-07-01T20:00Z",
        0.25,
        [0.1],
        weather=WeatherSample(temp_air=36.0, ghi=800.0),
        floor=0.0,
        cap=1.0,
    )
    c = HVAC().bid(p, hot_house, ctx)
    must = quantity_at(c, 10.0)
    assert np.all(must > 0)
    _, r = HVAC().step(p, hot_house, must, ctx)
    np.testing.assert_allclose(r.extra["temp_c"], p.setpoint_c + p.range_high, atol=1e-9)
