"""Uncontrolled (business-as-usual) mode of every device type: the physics of what devices
do without a market."""

from __future__ import annotations

import numpy as np
import pytest
from der_helpers import ctx_at, price_path

from transactive.der import (
    DEVICE_TYPES,
    EV,
    HVAC,
    Fleet,
    Weather,
    WeatherSample,
    const,
    ev,
    hvac,
    make_context,
    make_fleet,
    normal,
    pv,
    water_heater,
)
from transactive.der.flexible import demand_kw, roll_jobs
from transactive.errors import InvalidInputError


def _run_uncontrolled(
    fleet: Fleet, w: Weather, net_kw: np.ndarray | None = None
) -> tuple[Fleet, list, list[np.ndarray]]:
    prices = price_path(len(w) + 96)
    reports, powers = [], []
    for i in range(len(w)):
        ctx = ctx_at(w, i, prices)
        lo, hi = fleet.limits(ctx)
        power = fleet.uncontrolled(ctx, None if net_kw is None else net_kw[i])
        assert np.all(power >= lo - 1e-9) and np.all(power <= hi + 1e-9)
        fleet, r = fleet.step(power, ctx)
        np.testing.assert_allclose(r.power_kw, power, atol=1e-9)  # feasible: run as given
        reports.append(r)
        powers.append(power)
    return fleet, reports, powers


@pytest.mark.parametrize("kind", sorted(set(DEVICE_TYPES) - {"battery"}))
def test_uncontrolled_power_is_feasible_and_run_exactly(kind: str, summer: Weather) -> None:
    _, reports, _ = _run_uncontrolled(make_fleet(kind, 60, seed=3), summer)
    assert sum(np.abs(r.energy_kwh).sum() for r in reports) > 0


def test_ev_charges_at_full_power_from_plug_in_and_ends_full(summer: Weather) -> None:
    cfg = EV.config(daily_kwh=normal(25.0, 10.0, 2.0, 60.0), charger_kw=const(3.6))
    fleet = make_fleet("ev", 60, cfg, seed=4)
    prices = price_path(len(summer) + 96)
    met = []  # (need ≤ chargeable, unmet, need, chargeable) per finished session
    first_interval_checked = 0
    for i in range(len(summer)):
        ctx = ctx_at(summer, i, prices)
        s = ev.roll(fleet.params, fleet.state, ctx.t_h, ctx.utc_offset_h)
        power = fleet.uncontrolled(ctx)
        plugged = (s.arrival_h <= ctx.t_h + 1e-9) & (s.departure_h >= ctx.t_h + 0.25 - 1e-9)
        needy = plugged & (s.need_kwh > 1e-9)
        # Full charger power while plugged in and the rest of the need allows it.
        full = np.minimum(3.6, s.need_kwh / (fleet.params.efficiency * 0.25))
        np.testing.assert_allclose(power[needy], full[needy], rtol=1e-12)
        np.testing.assert_array_equal(power[~needy], 0.0)
        first = needy & (s.arrival_h > ctx.t_h - 0.25 + 1e-9)  # first whole interval
        first_interval_checked += int(first.sum())
        assert np.all(power[first] > 0)
        feasible = ev.chargeable_kwh(fleet.params, s, 0.25)
        fleet, r = fleet.step(power, ctx)
        for j in np.flatnonzero(r.extra["departed"] > 0):
            met.append((s.session_kwh[j], feasible[j], r.extra["unmet_kwh"][j]))
    assert first_interval_checked > 30
    need, feasible, unmet = np.array(met).T
    ok = need <= feasible + 1e-9
    assert ok.sum() > 30 and (~ok).any()
    np.testing.assert_allclose(unmet[ok], 0.0, atol=1e-9)  # ends full when the session allows
    np.testing.assert_allclose(unmet[~ok], (need - feasible)[~ok], atol=1e-6)


@pytest.mark.parametrize("season", ["summer", "winter"])
def test_hvac_thermostat_holds_its_deadband(season: str, summer: Weather, winter: Weather) -> None:
    w = summer if season == "summer" else winter
    cfg = HVAC.config(sizing=const(2.0), deadband_c=const(1.0))
    fleet = make_fleet("hvac", 80, cfg, seed=5)
    p = fleet.params
    start = hvac.HVACState(p.setpoint_c.copy(), p.setpoint_c.copy(), np.zeros(p.n, dtype=bool))
    fleet = Fleet("hvac", fleet.model, p, start)
    _, reports, powers = _run_uncontrolled(fleet, w)
    temps = np.array([r.extra["temp_c"] for r in reports])
    assert np.all(temps >= p.setpoint_c - 0.5 - 1e-9)
    assert np.all(temps <= p.setpoint_c + 0.5 + 1e-9)
    on = np.array(powers) > 0
    duty = on.mean(axis=0)
    assert np.all(duty > 0) and np.median(duty) < 0.9  # it cycles
    # Hysteresis: runs are blocks, not a flicker every interval.
    switches = np.abs(np.diff(on.astype(int), axis=0)).sum(axis=0)
    assert np.median(switches) < 0.5 * on.shape[0]
    heat = sum(r.extra["heat_kwh"].sum() for r in reports)
    assert heat < 0 if season == "summer" else heat > 0


def test_hvac_hysteresis_state_decides_inside_the_band() -> None:
    """Inside the deadband the unit keeps what it was doing; at an edge it switches."""
    fleet = make_fleet("hvac", 4, HVAC.config(deadband_c=const(2.0), sizing=const(3.0)), seed=1)
    p = fleet.params
    hot = make_context(
        "2024-07-01T18:00Z", 0.25, [0.1], floor=0.0, cap=1.0, weather=WeatherSample(temp_air=30.0)
    )
    assert np.all(hvac.mode(p, hot) == -1.0)
    sp = p.setpoint_c
    temp = sp + np.array([0.2, 0.2, 1.0, -1.0])  # inside, inside, upper edge, lower edge
    on = np.array([True, False, False, True])
    power = fleet.model.uncontrolled(p, hvac.HVACState(temp, sp, on), hot, None)
    assert power[0] > 0  # was on: keeps cooling towards the lower edge
    assert power[2] > 0  # at the upper edge: switches on
    assert power[3] == 0  # at the lower edge: switches off
    # Was off inside the band: stays off unless the house would leave the band this interval
    free = hvac.thermal.rc_step(
        temp[1:2],
        p.c_kwh_per_k[1:2],
        p.ua_kw_per_k[1:2],
        30.0 + hvac._gains(p, hot)[1:2] / p.ua_kw_per_k[1:2],
        np.zeros(1),
        0.25,
    )[0]
    assert (power[1] == 0) == bool(free[0] <= sp[1] + 1.0 + 1e-9)
    # The next state remembers whether the unit ran.
    nxt, _ = fleet.model.step(p, hvac.HVACState(temp, sp, on), power, hot)
    np.testing.assert_array_equal(nxt.on, power > 0)


def test_water_heater_thermostat_holds_its_deadband(summer: Weather) -> None:
    fleet = make_fleet("water_heater", 80, seed=6)
    p = fleet.params
    start = water_heater.WaterHeaterState(
        p.setpoint_c.copy(), p.setpoint_c.copy(), np.zeros(p.n, dtype=bool)
    )
    fleet = Fleet("water_heater", fleet.model, p, start)
    _, reports, powers = _run_uncontrolled(fleet, summer)
    temps = np.array([r.extra["temp_c"] for r in reports])
    band = p.deadband_c / 2
    assert np.all(temps >= p.setpoint_c - band - 1e-9)
    assert np.all(temps <= p.setpoint_c + band + 1e-9)
    on = np.array(powers) > 0
    assert np.all(on.any(axis=0)) and np.all((~on).any(axis=0))
    # Over two days the element replaces what the draws and losses took (± the band).
    e_in = sum(r.energy_kwh for r in reports)
    out = sum(r.extra["draw_kwh"] + r.extra["loss_kwh"] for r in reports)
    assert np.all(np.abs(e_in - out) <= p.c_kwh_per_k * p.deadband_c + 1e-9)


def test_battery_self_consumes_without_exporting_or_charging_from_the_grid(
    summer: Weather,
) -> None:
    n, steps = 50, len(summer)
    rng = np.random.default_rng(2)
    net = rng.normal(0.0, 3.0, (steps, n))  # the rest of each home: import (+) or surplus (−)
    fleet = make_fleet("battery", n, seed=7)
    p = fleet.params
    prices = price_path(steps + 96)
    charged = discharged = 0.0
    for i in range(steps):
        ctx = ctx_at(summer, i, prices)
        lo, hi = fleet.limits(ctx)
        power = fleet.uncontrolled(ctx, net[i])
        meter = net[i] + power  # the home's import with the battery
        assert np.all(meter[net[i] > 0] >= -1e-12)  # never exports to the grid
        assert np.all(meter[net[i] <= 0] <= 1e-12)  # never imports to charge
        assert np.all(np.sign(power) * np.sign(net[i]) <= 0)
        # As much as the limits allow: the home's meter reads 0 unless a limit binds.
        np.testing.assert_allclose(power, np.clip(-net[i], lo, hi))
        fleet, r = fleet.step(power, ctx)
        charged += r.extra["charge_kwh"].sum()
        discharged += r.extra["discharge_kwh"].sum()
        assert np.all(fleet.state.soc >= p.soc_min - 1e-12)
        assert np.all(fleet.state.soc <= p.soc_max + 1e-12)
    assert charged > 0 and discharged > 0
    with pytest.raises(InvalidInputError, match="net_kw"):
        fleet.uncontrolled(ctx_at(summer, 0, prices))
    with pytest.raises(InvalidInputError, match="net_kw"):
        fleet.uncontrolled(ctx_at(summer, 0, prices), np.zeros(n + 1))


def test_pv_produces_its_maximum_after_the_inverter_functions(summer: Weather) -> None:
    fleet = make_fleet("pv", 30, seed=8)
    prices = price_path(len(summer) + 96)
    ctx = make_context(
        summer.intervals[52].start,
        0.25,
        prices[52:148],
        floor=0.0,
        cap=1.0,
        weather=summer.sample(52),
        voltage_pu=np.linspace(1.0, 1.1, 30),
    )
    mppt, avail = pv.available_kw(fleet.params, ctx)
    power = fleet.uncontrolled(ctx)
    np.testing.assert_allclose(power, -avail)
    assert avail.max() > 1.0 and np.any(avail < mppt - 1e-6)  # volt-watt bites at 1.1 pu
    _, r = fleet.step(power, ctx)
    np.testing.assert_allclose(r.extra["market_curtailed_kwh"], 0.0, atol=1e-12)


def test_shiftable_runs_when_its_window_opens(summer: Weather) -> None:
    fleet = make_fleet("shiftable", 40, seed=9)
    p = fleet.params
    prices = price_path(len(summer) + 96)
    total = np.zeros(p.n)
    for i in range(len(summer)):
        ctx = ctx_at(summer, i, prices)
        s = roll_jobs(p, fleet.state, ctx.t_h, ctx.utc_offset_h)
        power = fleet.uncontrolled(ctx)
        # The first whole interval inside a fresh window runs at full power.
        opens = (
            (s.start_h > ctx.t_h - 0.25 + 1e-9)
            & (s.start_h <= ctx.t_h + 1e-9)
            & (s.remaining_kwh >= p.power_kw * 0.25)
        )
        np.testing.assert_allclose(power[opens], p.power_kw[opens])
        fleet, r = fleet.step(power, ctx)
        total += r.energy_kwh
        np.testing.assert_allclose(r.extra["unmet_kwh"], 0.0, atol=1e-9)
    assert np.all(total >= 2 * p.job_kwh - 1e-9)


def test_curtailable_and_household_run_at_their_demand(summer: Weather) -> None:
    prices = price_path(len(summer) + 96)
    ctx = ctx_at(summer, 50, prices)
    curt = make_fleet("curtailable", 30, seed=1)
    np.testing.assert_array_equal(curt.uncontrolled(ctx), demand_kw(curt.params, ctx))
    home = make_fleet("household", 30, seed=1)
    np.testing.assert_array_equal(home.uncontrolled(ctx), home.limits(ctx)[0])
    assert np.all(home.uncontrolled(ctx) > 0)
