"""PV: pvlib cross-check, smart-inverter functions, curtailment accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest
from der_helpers import ctx_at, price_path, run

from transactive.core.curves import quantity_at
from transactive.der import PV, Weather, make_context, make_fleet, pv
from transactive.der.base import WeatherSample


@pytest.mark.slow
def test_output_matches_a_direct_pvlib_modelchain(summer: Weather) -> None:
    """Our vectorised fleet against pvlib's own ModelChain (PVWatts DC/AC, SAPM roof-mount
    cell temperature, Hay–Davies transposition) for the same systems and weather."""
    tilt = np.array([10.0, 25.0, 40.0])
    az = np.array([120.0, 180.0, 250.0])
    cap = np.array([4.0, 6.5, 9.0])
    inv = np.array([3.3, 6.0, 5.0])  # the last one clips at noon
    params = PV().make_params(
        capacity_kw=cap, dc_ac_ratio=cap / inv, tilt_deg=tilt, azimuth_deg=az, losses=0.0
    )
    n = len(summer)
    ours = np.array(
        [
            pv.mppt_ac_kw(
                params,
                make_context(
                    summer.intervals[i].start,
                    0.25,
                    [0.1],
                    weather=summer.sample(i),
                    floor=0.0,
                    cap=1.0,
                ),
            )
            for i in range(n)
        ]
    )
    mid = summer.intervals.starts + summer.intervals.duration / 2
    wx = pd.DataFrame(
        {
            "ghi": summer.ghi,
            "dni": summer.dni,
            "dhi": summer.dhi,
            "temp_air": summer.temp_air,
            "wind_speed": summer.wind_speed,
        },
        index=mid,
    )
    s = summer.site
    loc = pvlib.location.Location(s.latitude, s.longitude, altitude=s.altitude)
    temp = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]
    for j in range(3):
        system = pvlib.pvsystem.PVSystem(
            surface_tilt=tilt[j],
            surface_azimuth=az[j],
            albedo=0.2,
            module_parameters={"pdc0": cap[j], "gamma_pdc": -0.0037},
            inverter_parameters={"pdc0": inv[j] / 0.96, "eta_inv_nom": 0.96},
            temperature_model_parameters=temp,
        )
        mc = pvlib.modelchain.ModelChain(
            system,
            loc,
            transposition_model="haydavies",
            aoi_model="no_loss",
            spectral_model="no_loss",
            losses_model="no_loss",
        )
        mc.run_model(wx)
        ref = np.clip(np.nan_to_num(mc.results.ac.to_numpy()), 0.0, None)
        np.testing.assert_allclose(ours[:, j], ref, rtol=1e-6, atol=1e-6 * cap[j])
    assert ours.max() > 0.5 * cap.min()  # real sunshine in the data
    assert np.isclose(ours[:, 2].max(), inv[2])  # inverter clipping


def _sunny() -> WeatherSample:
    return WeatherSample(
        ghi=900, dni=850, dhi=100, temp_air=25, wind_speed=2, solar_zenith=20, solar_azimuth=180
    )


def _ctx(v: object = 1.0):  # type: ignore[no-untyped-def]
    return make_context(
        "2024-06-21T17:00Z", 0.25, [0.1], weather=_sunny(), voltage_pu=v, floor=0.0, cap=1.0
    )


def test_volt_watt_curtails_at_high_voltage_and_counts_it() -> None:
    p = PV().make_params(
        capacity_kw=[8.0, 8.0, 8.0], dc_ac_ratio=8.0 / 7.0, volt_var=0, volt_watt=1
    )
    v = np.array([1.00, 1.08, 1.12])
    ctx = _ctx(v)
    mppt, avail = pv.available_kw(p, ctx)
    assert mppt[0] > 5.0
    np.testing.assert_allclose(avail[0], mppt[0])
    # 1.08 pu: halfway down the 1.06→1.10 ramp from 100 % to 20 % of the rating.
    np.testing.assert_allclose(avail[1], min(mppt[1], 0.6 * 7.0))
    np.testing.assert_allclose(avail[2], 0.2 * 7.0)
    _, r = PV().step(p, pv.PVState(p.n), -avail, ctx)
    np.testing.assert_allclose(r.extra["inverter_curtailed_kwh"], (mppt - avail) * 0.25)
    np.testing.assert_allclose(r.extra["market_curtailed_kwh"], 0.0, atol=1e-12)
    np.testing.assert_allclose(-r.energy_kwh + r.extra["curtailed_kwh"], mppt * 0.25)


def test_volt_var_absorbs_at_high_voltage_with_reactive_priority() -> None:
    p = PV().make_params(capacity_kw=[9.0] * 4, dc_ac_ratio=1.5, volt_var=1, volt_watt=0)
    v = np.array([0.90, 1.00, 1.05, 1.10])
    q = pv.volt_var_kvar(p, v)
    np.testing.assert_allclose(q, [-0.44 * 6, 0.0, 0.22 * 6, 0.44 * 6])
    _, avail = pv.available_kw(p, _ctx(v))
    assert np.all(avail <= np.sqrt(36.0 - q**2) + 1e-9)
    assert avail[3] < avail[1]  # reactive priority takes active headroom
    _, r = PV().step(p, pv.PVState(p.n), -avail, _ctx(v))
    np.testing.assert_allclose(r.extra["q_kvar"], q)


def test_fixed_power_factor_and_export_limit() -> None:
    p = PV().make_params(
        capacity_kw=[9.0, 9.0],
        dc_ac_ratio=1.5,
        volt_var=0,
        volt_watt=0,
        power_factor=[0.9, 1.0],
        export_limit_kw=[np.inf, 2.5],
    )
    ctx = _ctx()
    _, avail = pv.available_kw(p, ctx)
    np.testing.assert_allclose(avail, [0.9 * 6.0, 2.5])
    _, r = PV().step(p, pv.PVState(p.n), -avail, ctx)
    s = np.hypot(r.power_kw, r.extra["q_kvar"])
    assert s[0] <= 6.0 + 1e-9
    np.testing.assert_allclose(r.extra["q_kvar"][0], 0.9 * 6.0 * np.tan(np.arccos(0.9)))


def test_bid_sells_available_power_at_offer_price_and_market_curtailment(
    summer: Weather,
) -> None:
    fleet = make_fleet("pv", 50, PV.config(offer_price=0.02), seed=3)
    prices = price_path(len(summer) + 96)
    ctx = ctx_at(summer, 36, prices)  # around local noon
    c = fleet.bid(ctx)
    _, avail = pv.available_kw(fleet.params, ctx)
    assert avail.max() > 1.0
    np.testing.assert_allclose(quantity_at(c, 0.01), 0.0)
    np.testing.assert_allclose(quantity_at(c, 0.03), -avail)
    # Cleared below the offer: everything curtailed by the market, and counted.
    power = fleet.respond(ctx, c, price=0.0)
    _, r = fleet.step(power, ctx)
    np.testing.assert_allclose(r.extra["market_curtailed_kwh"], avail * 0.25)


def test_night_produces_nothing_and_day_energy_is_plausible(summer: Weather) -> None:
    fleet = make_fleet("pv", 100, seed=0)
    _, reports, _, _ = run(fleet, summer, price_path(len(summer) + 96))
    prod = -np.array([r.energy_kwh for r in reports])  # (t, n)
    assert np.all(prod >= 0)
    night = summer.solar_zenith >= 90
    assert np.all(prod[night] == 0)
    # Two July days: yield per kWp between a cloudy and a clear-sky day (1–7 kWh/kWp/day).
    per_kwp_day = prod.sum(axis=0) / fleet.params.capacity_kw / 2
    assert np.all((per_kwp_day > 1.0) & (per_kwp_day < 7.0))
