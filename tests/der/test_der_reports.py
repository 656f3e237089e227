"""Device reports the KPIs read: comfort deviation from the preferred set point, heating-only
heat pumps, the PV feed-in limit, stored energy of batteries and EVs, unmet EV energy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from transactive.der import EV, HVAC, PV, Battery, WaterHeater, ev, hvac, make_context, pv, thermal
from transactive.der.base import Context, WeatherSample

HOT = WeatherSample(temp_air=32.0, ghi=700.0)
COLD = WeatherSample(temp_air=-3.0)


def _ctx(start: str | pd.Timestamp, dt_h: float, weather: WeatherSample | None = None) -> Context:
    return make_context(start, dt_h, [0.10, 0.20, 0.30], weather=weather, floor=0.0, cap=1.0)


def _path_integral(t0: np.ndarray, c: np.ndarray, h: np.ndarray, t_eq: np.ndarray,
                   target: np.ndarray, dt_h: float, n: int = 200_000) -> np.ndarray:  # fmt: skip
    """∫|T − target| dt of the exact 1R1C path by the midpoint rule on ``n`` sub-steps."""
    t = (np.arange(n) + 0.5) * dt_h / n
    temp = t_eq[:, None] + (t0 - t_eq)[:, None] * np.exp(-t[None, :] * (h / c)[:, None])
    out: np.ndarray = np.abs(temp - target[:, None]).sum(axis=1) * dt_h / n
    return out


def test_deviation_integral_matches_the_temperature_path() -> None:
    # Approaching from above, crossing the target, constant at an offset, slow and fast houses.
    t0 = np.array([24.0, 24.0, 21.0, 23.0, 22.0, 55.0])
    t_eq = np.array([23.0, 18.0, 30.0, 23.0, 22.0, 40.0])
    c = np.array([5.0, 5.0, 3.0, 4.0, 4.0, 0.9])
    h = np.array([0.25, 0.25, 0.5, 0.2, 0.2, 0.05])
    target = np.array([22.0, 22.0, 22.0, 22.0, 22.0, 52.0])
    for dt in (0.25, 1.0, 6.0):
        got = thermal.deviation_kh(t0, c, h, t_eq, target, dt)
        np.testing.assert_allclose(got, _path_integral(t0, c, h, t_eq, target, dt), rtol=1e-6)
    # A house held 1 K above its set point for an hour: 1 K·h; one on it: 0.
    np.testing.assert_allclose(thermal.deviation_kh(t0, c, h, t_eq, target, 1.0)[3:5], [1, 0])


def test_hvac_comfort_deviation_is_against_the_preferred_setpoint_and_step_independent() -> None:
    model = HVAC()
    p = model.make_params(setpoint_c=[21.0, 22.0, 23.0], ua_kw_per_k=0.25, c_kwh_per_k=5.0)
    state = hvac.HVACState(np.array([22.0, 21.0, 23.5]), p.setpoint_c.copy(), np.zeros(3, bool))
    award = np.array([0.0, 1.0, 0.5])
    ctx = _ctx("2024-07-01T12:00Z", 1.0, HOT)
    # Cleared far above the forecast mean: the price-shifted setpoint moves, the deviation
    # is still measured against the preferred one.
    new, rep = model.step(p, state, award, ctx, cleared_price=0.9)
    assert np.all(rep.extra["setpoint_c"] != p.setpoint_c)
    gains = p.internal_gain_kw + p.solar_aperture_m2 * HOT.ghi / 1e3
    t_eq = HOT.temp_air + (gains + rep.extra["heat_kwh"] / 1.0) / p.ua_kw_per_k
    expected = _path_integral(state.temp_c, p.c_kwh_per_k, p.ua_kw_per_k, t_eq, p.setpoint_c, 1.0)
    np.testing.assert_allclose(rep.extra["comfort_dev_kh"], expected, rtol=1e-6)
    # Four 15-minute steps at the same power give the same path, so the same K·h.
    s, total = state, np.zeros(3)
    for k in range(4):
        s, r = model.step(p, s, award, _ctx(f"2024-07-01T12:{15 * k:02d}Z", 0.25, HOT))
        total += r.extra["comfort_dev_kh"]
    np.testing.assert_allclose(total, rep.extra["comfort_dev_kh"], rtol=1e-9)
    np.testing.assert_allclose(s.temp_c, new.temp_c, rtol=1e-12)


def test_water_heater_comfort_deviation_matches_the_tank_path() -> None:
    model = WaterHeater()
    p = model.make_params(setpoint_c=[50.0, 55.0], volume_l=200.0, daily_l=300.0)
    state = model.initial_state(p, WaterHeater.config(), np.random.default_rng(1))
    ctx = _ctx("2024-07-01T12:00Z", 0.5)  # 07:00 local (UTC−5): the morning draw
    award = np.array([0.0, 4.5])
    _, rep = model.step(p, state, award, ctx)
    mc = rep.extra["draw_l"] / 0.5 * 4.186 / 3600.0
    h = p.ua_kw_per_k + mc
    t_ref = (p.ua_kw_per_k * p.ambient_c + mc * p.inlet_c) / h
    expected = _path_integral(state.temp_c, p.c_kwh_per_k, h, t_ref + award / h, p.setpoint_c, 0.5)
    np.testing.assert_allclose(rep.extra["comfort_dev_kh"], expected, rtol=1e-6)
    assert np.all(rep.extra["comfort_dev_kh"] > 0)


def test_a_heat_pump_that_cannot_cool_lets_the_house_float_and_still_heats() -> None:
    model = HVAC()
    p = model.make_params(can_cool=[1.0, 0.0], setpoint_c=22.0, ua_kw_per_k=0.25)
    state = hvac.HVACState(np.full(2, 23.0), p.setpoint_c.copy(), np.zeros(2, bool))
    hot = _ctx("2024-07-01T18:00Z", 1.0, HOT)
    assert np.all(hvac.mode(p, hot) == -1.0)
    _, hi = model.limits(p, state, hot)
    assert hi[0] > 0 and hi[1] == 0.0
    assert model.uncontrolled(p, state, hot, None)[1] == 0.0
    np.testing.assert_allclose(model.bid(p, state, hot).quantity[2:], 0.0)
    temp = state
    dev, disc = np.zeros(2), np.zeros(2)
    for k in range(6):
        ctx = _ctx(f"2024-07-01T{12 + k:02d}:00Z", 1.0, HOT)
        # The reversible unit runs its thermostat; the other is awarded more than it can do.
        award = np.array([model.uncontrolled(p, temp, ctx, None)[0], 10.0])
        temp, rep = model.step(p, temp, award, ctx)
        assert rep.power_kw[1] == 0.0 and rep.extra["heat_kwh"][1] == 0.0
        assert rep.deviation_kwh[1] == -10.0  # the whole award is missed
        dev += rep.extra["comfort_dev_kh"]
        disc += rep.extra["discomfort_kh"]
    # Floating: the house heads for its free-running equilibrium (energy balance: no heat).
    gains = p.internal_gain_kw[1] + p.solar_aperture_m2[1] * HOT.ghi / 1e3
    t_free = HOT.temp_air + gains / p.ua_kw_per_k[1]
    t_expect, _ = thermal.rc_step(
        np.array([23.0]), p.c_kwh_per_k[1:], p.ua_kw_per_k[1:], np.array([t_free]),
        np.zeros(1), 6.0,
    )  # fmt: skip
    np.testing.assert_allclose(temp.temp_c[1], t_expect[0], rtol=1e-12)
    assert temp.temp_c[1] > p.setpoint_c[1] + p.range_high[1]
    assert dev[1] > 5 * dev[0] and disc[1] > 0 and disc[0] == 0
    # In winter the heating-only unit heats exactly like the reversible one.
    cold = _ctx("2024-01-10T06:00Z", 1.0, COLD)
    hi_cold = model.limits(p, state, cold)[1]
    assert hi_cold[1] == hi_cold[0] > 0


def test_can_cool_is_drawn_per_house_with_its_probability() -> None:
    rng = np.random.default_rng(5)
    p = HVAC().sample(HVAC.config(can_cool=0.3), 4000, rng)
    assert abs(p.can_cool.mean() - 0.3) < 0.03
    assert np.all(p.cool_kw_th[~p.can_cool] == 0.0) and np.all(p.cool_kw_th[p.can_cool] > 0)
    assert np.all(p.heat_kw_th > 0)
    # The default keeps every unit reversible (today's behaviour).
    assert HVAC().sample(HVAC.config(), 100, rng).can_cool.all()


def _clear_sky(time: str, cloud: float = 0.0) -> WeatherSample:
    """pvlib's Ineichen clear sky over Berlin at ``time`` (UTC), a cool 12 °C, windy spring
    day; ``cloud`` removes that fraction of the direct beam (and adds it to the diffuse)."""
    loc = pvlib.location.Location(52.52, 13.40, altitude=34)
    t = pd.DatetimeIndex([pd.Timestamp(time)])
    cs = loc.get_clearsky(t).iloc[0]
    sp = loc.get_solarposition(t).iloc[0]
    dni = float(cs["dni"]) * (1.0 - cloud)
    dhi = float(cs["dhi"]) * (1.0 + cloud)
    ghi = dhi + dni * np.cos(np.radians(float(sp["apparent_zenith"])))
    return WeatherSample(
        ghi=ghi, dni=dni, dhi=dhi, temp_air=12.0, wind_speed=3.0,
        solar_zenith=float(sp["apparent_zenith"]), solar_azimuth=float(sp["azimuth"]),
    )  # fmt: skip


@pytest.mark.parametrize("limit", [0.7, 1.0])
def test_feed_in_limit_curtails_a_clear_noon_not_a_cloudy_one(limit: float) -> None:
    p = PV().make_params(
        capacity_kw=[6.0, 10.0], dc_ac_ratio=1.1, tilt_deg=35.0, azimuth_deg=180.0,
        losses=0.08, volt_var=0, volt_watt=0, feed_in_limit=limit,
    )  # fmt: skip
    clear = _ctx("2024-04-20T11:00Z", 0.25, _clear_sky("2024-04-20T11:00Z"))
    mppt, avail = pv.available_kw(p, clear)
    assert np.all(mppt > 0.72 * p.capacity_kw)  # a clear, cool spring noon: > 70 % of kWp
    _, r = PV().step(p, pv.PVState(p.n), -avail, clear)
    if limit < 1.0:
        np.testing.assert_allclose(-r.power_kw, 0.7 * p.capacity_kw)
        np.testing.assert_allclose(r.extra["curtailed_kwh"], (mppt - 0.7 * p.capacity_kw) * 0.25)
        assert np.all(r.extra["curtailed_kwh"] > 0)
    else:
        np.testing.assert_allclose(r.extra["curtailed_kwh"], 0.0, atol=1e-12)
    np.testing.assert_allclose(-r.energy_kwh + r.extra["curtailed_kwh"], mppt * 0.25)
    cloudy = _ctx("2024-04-20T11:00Z", 0.25, _clear_sky("2024-04-20T11:00Z", cloud=0.7))
    mppt_c, avail_c = pv.available_kw(p, cloudy)
    assert np.all(mppt_c > 0.1 * p.capacity_kw)
    _, rc = PV().step(p, pv.PVState(p.n), -avail_c, cloudy)
    np.testing.assert_allclose(rc.extra["curtailed_kwh"], 0.0, atol=1e-12)
    np.testing.assert_allclose(-rc.power_kw, mppt_c)


def test_battery_reports_the_energy_stored_at_the_end() -> None:
    model = Battery()
    p = model.make_params(capacity_kwh=[10.0, 10.0, 10.0], power_kw=5.0, soc0=0.5)
    state = model.initial_state(p, Battery.config(soc0=0.5), np.random.default_rng(0))
    ctx = _ctx("2024-07-01T12:00Z", 0.5)
    new, r = model.step(p, state, np.array([4.0, -4.0, 0.0]), ctx)
    np.testing.assert_allclose(r.extra["stored_kwh"], new.soc * p.capacity_kwh)
    d_stored = r.extra["stored_kwh"] - state.soc * p.capacity_kwh
    np.testing.assert_allclose(d_stored, [0.95 * 2.0, -2.0 / 0.95, 0.0])


def test_ev_short_of_its_award_leaves_unmet_energy_and_reports_what_it_stored() -> None:
    model = EV()
    p = model.make_params(charger_kw=[7.2, 7.2, 7.2], efficiency=0.92)
    ctx0 = _ctx("2024-07-01T20:00Z", 1.0)
    need = np.array([20.0, 20.0, 20.0])
    # Plugged in since an hour ago, leaving in 4 h (inside the 4th interval's end).
    state = ev.EVState(np.full(3, ctx0.t_h - 1.0), np.full(3, ctx0.t_h + 4.0), need, need.copy())
    # A binding limit: EV 0 gets what it bids, EV 1 half its charger, EV 2 nothing.
    share = np.array([1.0, 0.5, 0.0])
    s, delivered, stored = state, np.zeros(3), []
    unmet, departed = np.zeros(3), np.zeros(3)
    for k in range(5):
        ctx = _ctx(ctx0.start + pd.Timedelta(hours=k), 1.0)
        _, hi = model.limits(p, s, ctx)
        s, r = model.step(p, s, share * hi, ctx)
        delivered += r.extra["charged_kwh"]
        unmet += r.extra["unmet_kwh"]
        departed += r.extra["departed"]
        stored.append(r.extra["stored_kwh"])
        np.testing.assert_allclose(r.extra["stored_kwh"], np.minimum(delivered, need))
    assert np.all(departed == 1)
    np.testing.assert_allclose(delivered[0], 20.0)  # 4 h × 7.2 kW × 0.92 > 20 kWh
    np.testing.assert_allclose(unmet, need - delivered, atol=1e-9)
    assert unmet[0] == pytest.approx(0.0, abs=1e-9)
    assert unmet[1] > 5.0 and unmet[2] == pytest.approx(20.0)
    # The departure interval reports what the car left with; the next session starts at 0.
    np.testing.assert_allclose(stored[-1], delivered)
    _, r2 = model.step(p, s, np.zeros(3), _ctx("2024-07-02T01:00Z", 1.0))
    np.testing.assert_allclose(r2.extra["stored_kwh"], 0.0)


def test_hvac_stores_the_houses_heat_against_its_preferred_setpoint() -> None:
    """A heated house warmer than preferred holds heat worth C·ΔT / COP of electricity; one
    colder than preferred owes it; running the heat pump at full power adds what it put in,
    less what the envelope lost."""
    model = HVAC()
    p = model.make_params(setpoint_c=21.0, ua_kw_per_k=0.25)
    cold = _ctx("2024-01-10T06:00Z", 1.0, COLD)
    for start in (22.0, 20.0):
        state = hvac.HVACState(np.full(1, start), p.setpoint_c.copy(), np.zeros(1, bool))
        new, rep = model.step(p, state, np.zeros(1), cold)
        want = p.c_kwh_per_k * (new.temp_c - 21.0) / p.cop_heat
        np.testing.assert_allclose(rep.extra["stored_kwh"], want)
        assert (rep.extra["stored_kwh"] < 0) == (new.temp_c[0] < 21.0)
    hi = model.limits(p, state, cold)[1]
    _, full = model.step(p, state, hi, cold)
    _, off = model.step(p, state, np.zeros(1), cold)
    added = full.extra["stored_kwh"] - off.extra["stored_kwh"]
    assert 0 < added[0] <= hi[0] * 1.0 + 1e-12  # stored electricity ≤ what it drew
