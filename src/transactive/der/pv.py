"""Rooftop PV fleet: irradiance → DC → AC with pvlib, smart-inverter functions, bidding.

Physics (all vectorised over the fleet with pvlib functions, one site's weather):

1. plane-of-array irradiance: :func:`pvlib.irradiance.get_total_irradiance` (Hay–Davies
   sky diffuse, ground albedo 0.2) from the tilt/azimuth of each array;
2. cell temperature: :func:`pvlib.temperature.sapm_cell`, roof mount
   (``close_mount_glass_glass`` parameters);
3. DC power: :func:`pvlib.pvsystem.pvwatts_dc` (nameplate ``capacity_kw``, temperature
   coefficient ``gamma_pdc``), times ``1 − losses`` (soiling, wiring, mismatch; PVWatts
   default 14 %);
4. AC power: :func:`pvlib.inverter.pvwatts` with AC rating ``inverter_kw`` (clipping).

Smart-inverter functions (NREL, *The Evolving Distribution System and TE Marketplace*,
Table 1, after Hledik and Lazar 2016: fixed power factor, intelligent volt-var, volt-watt,
maximum generation limit / export limit), with the IEEE 1547-2018 category B default
curves, reactive power priority and the inverter apparent-power rating ``inverter_kw``
(kVA):

* **volt-var**: reactive power (kvar, + absorbed) ``q(V)`` interpolated in
  ``VV_V = (0.92, 0.98, 1.02, 1.08)`` pu → ``VV_Q = (−0.44, 0, 0, +0.44)``·S;
* **fixed power factor** (``power_factor < 1``, absorbing): ``Q = |P|·tan(acos pf)``, so
  ``|P| ≤ pf·S``;
* **volt-watt**: active power limit ``VW_V = (1.06, 1.10)`` pu → ``VW_P = (1.0, 0.2)``·S;
* **export limit**: ``|P| ≤ export_limit_kw``;
* **feed-in limit**: ``|P| ≤ feed_in_limit · capacity_kw`` (a fraction of the kWp
  rating), e.g. 0.7 for the German "70 % rule" (§ 9 Abs. 2 Nr. 2 EEG 2021 and its
  predecessors back to § 6 Abs. 2 Nr. 2 EEG 2012: PV up to 25 kWp, before 2021 30 kWp,
  without remote control by the grid operator limits its feed-in to 70 % of the installed
  capacity; repealed from 2023; since 25 February 2025 new systems below 100 kW without a
  controllable smart meter are held to 60 %, i.e. 0.6 — Clearingstelle EEG|KWKG, Häufige
  Rechtsfrage 154). The rule caps the feed-in at the grid connection point; applied here to
  the inverter's AC output it ignores the home's own consumption, so it is an upper bound
  of what the rule curtails.

With reactive priority the active power is at most ``sqrt(S² − Q²)``. The *available*
power is the MPPT AC power limited by these functions; what the smart-inverter functions
take away and what the market curtails (award below availability) are both reported as
curtailed energy.

Bidding: each system offers all its available power at or above ``offer_price``
($/kWh, default 0: it curtails only at negative prices) — a single sell block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, block_curves
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    as_vector,
    check_balance,
    const,
    normal,
    report,
    uniform,
)
from transactive.der.params import DeviceConfig, Param

#: IEEE 1547-2018 category B default volt-var curve: voltage (pu) → Q/S (+ absorbed).
VV_V = (0.92, 0.98, 1.02, 1.08)
VV_Q = (-0.44, 0.0, 0.0, 0.44)
#: IEEE 1547-2018 default volt-watt curve: voltage (pu) → P limit / S.
VW_V = (1.06, 1.10)
VW_P = (1.0, 0.2)
#: SAPM cell-temperature model of roof-mounted glass/glass modules (pvlib's table).
_TEMP_MODEL = ("sapm", "close_mount_glass_glass")


@dataclass(frozen=True, slots=True)
class PVParams:
    """Per-system parameter arrays (units as in :attr:`PV.PARAMS`); ``inverter_kw`` =
    ``capacity_kw / dc_ac_ratio`` (kVA); ``volt_var``/``volt_watt``: function on (bool)."""

    capacity_kw: FloatArray
    inverter_kw: FloatArray
    tilt_deg: FloatArray
    azimuth_deg: FloatArray
    gamma_pdc: FloatArray
    losses: FloatArray
    offer_price: FloatArray
    export_limit_kw: FloatArray
    feed_in_limit: FloatArray
    power_factor: FloatArray
    volt_var: np.ndarray
    volt_watt: np.ndarray

    @property
    def n(self) -> int:
        return int(self.capacity_kw.size)


@dataclass(frozen=True, slots=True)
class PVState:
    """PV has no memory; the state only carries the fleet size."""

    n: int


# --- physics -------------------------------------------------------------------------------


def mppt_ac_kw(params: PVParams, ctx: Context) -> FloatArray:
    """AC power (kW, ≥ 0) at the maximum power point, after inverter clipping, for the
    weather of ``ctx`` — before any smart-inverter function or curtailment."""
    w = ctx.weather
    if w.solar_zenith >= 90.0 or (w.ghi <= 0.0 and w.dni <= 0.0 and w.dhi <= 0.0):
        return np.zeros(params.n)
    import pvlib  # here, not at import: reading a scenario must not load pvlib

    temp = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS[_TEMP_MODEL[0]][_TEMP_MODEL[1]]
    poa = pvlib.irradiance.get_total_irradiance(
        params.tilt_deg,
        params.azimuth_deg,
        w.solar_zenith,
        w.solar_azimuth,
        w.dni,
        w.ghi,
        w.dhi,
        dni_extra=w.dni_extra,
        albedo=0.2,
        model="haydavies",
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=np.float64), nan=0.0)
    poa_global = np.maximum(poa_global, 0.0)
    t_cell = pvlib.temperature.sapm_cell(
        poa_global, w.temp_air, w.wind_speed, temp["a"], temp["b"], temp["deltaT"]
    )
    pdc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, params.capacity_kw, params.gamma_pdc)
    pdc = np.asarray(pdc, dtype=np.float64) * (1.0 - params.losses)
    eta_nom = 0.96
    pac = pvlib.inverter.pvwatts(pdc, params.inverter_kw / eta_nom, eta_inv_nom=eta_nom)
    out: FloatArray = np.clip(np.nan_to_num(np.asarray(pac, dtype=np.float64)), 0.0, None)
    return out


def _voltage(params: PVParams, ctx: Context) -> FloatArray:
    return as_vector(ctx.voltage_pu, params.n, "voltage_pu")


def volt_var_kvar(params: PVParams, voltage_pu: FloatArray) -> FloatArray:
    """Reactive power (kvar, + absorbed) of the volt-var function (0 where off)."""
    q = np.interp(voltage_pu, VV_V, VV_Q) * params.inverter_kw
    out: FloatArray = np.where(params.volt_var, q, 0.0)
    return out


def active_limit_kw(params: PVParams, ctx: Context) -> FloatArray:
    """Largest output (kW, ≥ 0) the smart-inverter functions allow: volt-watt, reactive
    priority under volt-var or fixed power factor, the export and the feed-in limit."""
    s = params.inverter_kw
    v = _voltage(params, ctx)
    vw = np.where(params.volt_watt, np.interp(v, VW_V, VW_P) * s, np.inf)
    q = volt_var_kvar(params, v)
    by_vv = np.sqrt(np.maximum(s * s - q * q, 0.0))
    by_pf = params.power_factor * s
    feed_in = params.feed_in_limit * params.capacity_kw
    out: FloatArray = np.minimum.reduce([vw, by_vv, by_pf, params.export_limit_kw, feed_in])
    return out


def available_kw(params: PVParams, ctx: Context) -> tuple[FloatArray, FloatArray]:
    """``(mppt, available)``: MPPT AC power and what the smart-inverter functions leave of it,
    kW ≥ 0. Memoised for the last ``(params, ctx)`` pair (bid, respond and step of one
    interval share one pvlib evaluation)."""
    hit = _MEMO.get("last")
    if hit is not None and hit[0] is params and hit[1] is ctx:
        return hit[2], hit[3]
    mppt = mppt_ac_kw(params, ctx)
    avail = np.minimum(mppt, active_limit_kw(params, ctx))
    _MEMO["last"] = (params, ctx, mppt, avail)
    return mppt, avail


_MEMO: dict[str, Any] = {}


def reactive_kvar(params: PVParams, ctx: Context, power_kw: FloatArray) -> FloatArray:
    """Reactive power (kvar, + absorbed) at active power ``power_kw`` (≤ 0): volt-var where on,
    else the fixed power factor."""
    v = _voltage(params, ctx)
    q_vv = volt_var_kvar(params, v)
    tan_phi = np.tan(np.arccos(params.power_factor))
    q_pf = np.abs(power_kw) * tan_phi
    out: FloatArray = np.where(params.volt_var, q_vv, q_pf)
    return out


class PV(DeviceType[PVParams, PVState]):
    """Rooftop PV systems with smart inverters (see the module docstring)."""

    KIND = "pv"
    PARAMS = (
        Param("capacity_kw", "kW", normal(6.0, 2.0, 2.0, 15.0), "(0, inf)", "DC nameplate"),
        Param(
            "dc_ac_ratio",
            "1",
            uniform(1.1, 1.3),
            "(0, inf)",
            "DC/AC ratio (inverter kVA = capacity / ratio)",
        ),
        Param("tilt_deg", "°", uniform(15.0, 35.0), "[0, 90]", "tilt from horizontal"),
        Param(
            "azimuth_deg",
            "°",
            normal(180.0, 35.0, 90.0, 270.0),
            "[0, 360]",
            "azimuth, clockwise from north (180 = south)",
        ),
        Param("gamma_pdc", "1/°C", const(-0.0037), "(-inf, inf)", "power temperature coefficient"),
        Param("losses", "1", const(0.14), "[0, 1)", "DC system losses (soiling, wiring, mismatch)"),
        Param(
            "offer_price",
            "$/kWh",
            const(0.0),
            "(-inf, inf)",
            "price at and above which the output is offered",
        ),
        Param("export_limit_kw", "kW", const(np.inf), "[0, inf]", "maximum export (inf: none)"),
        Param("power_factor", "1", const(1.0), "(0, 1]", "fixed power factor, absorbing (1 = off)"),
        Param("volt_var", "1", const(1.0), "[0, 1]", "probability a system has volt-var on"),
        Param("volt_watt", "1", const(1.0), "[0, 1]", "probability a system has volt-watt on"),
        Param(
            "feed_in_limit",
            "1",
            const(1.0),
            "[0, 1]",
            "AC output limit as a fraction of the kWp rating (1: none; 0.7: the German EEG "
            "70 % rule, § 9 (2) no. 2 EEG 2021, for small PV without remote control, 2012–2022)",
        ),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> PVParams:
        """Parameters; the smart-inverter functions are switched on at random with the
        configured probabilities."""
        v = values
        n = v["capacity_kw"].size
        on_vv = rng.random(n) < v["volt_var"]
        on_vw = rng.random(n) < v["volt_watt"]
        return PVParams(
            capacity_kw=v["capacity_kw"],
            inverter_kw=v["capacity_kw"] / v["dc_ac_ratio"],
            tilt_deg=v["tilt_deg"],
            azimuth_deg=v["azimuth_deg"],
            gamma_pdc=v["gamma_pdc"],
            losses=v["losses"],
            offer_price=v["offer_price"],
            export_limit_kw=v["export_limit_kw"],
            feed_in_limit=v["feed_in_limit"],
            power_factor=v["power_factor"],
            volt_var=on_vv,
            volt_watt=on_vw,
        )

    def initial_state(
        self, params: PVParams, config: DeviceConfig, rng: np.random.Generator
    ) -> PVState:
        """The (empty) state."""
        return PVState(params.n)

    def limits(
        self, params: PVParams, state: PVState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """Feasible power: ``[−available, 0]`` kW."""
        _, avail = available_kw(params, ctx)
        return -avail, np.zeros(params.n)

    def bid(self, params: PVParams, state: PVState, ctx: Context) -> Curves:
        """One sell block per system: all available power at ``offer_price`` or above."""
        _, avail = available_kw(params, ctx)
        return block_curves(params.offer_price, -avail)

    def run(
        self,
        params: PVParams,
        state: PVState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[PVState, EnergyReport]:
        """Run the systems at the award (≤ 0) over the interval.

        An award beyond the available power is met only up to availability (reported as
        deviation); a positive award (PV cannot consume) is treated as 0. Reports
        ``potential_kwh`` (MPPT AC), ``curtailed_kwh`` = ``inverter_curtailed_kwh``
        (smart-inverter functions, export and feed-in limits) + ``market_curtailed_kwh``
        (award below availability), and ``q_kvar``.
        """
        mppt, avail = available_kw(params, ctx)
        actual = np.clip(award, -avail, 0.0)
        dt = ctx.dt_h
        produced = -actual * dt
        inv_curt = (mppt - avail) * dt
        mkt_curt = (avail + actual) * dt
        check_balance(mppt * dt, produced + inv_curt + mkt_curt, self.KIND, mppt * dt)
        return state, report(
            actual,
            award,
            dt,
            potential_kwh=mppt * dt,
            curtailed_kwh=inv_curt + mkt_curt,
            inverter_curtailed_kwh=inv_curt,
            market_curtailed_kwh=mkt_curt,
            q_kvar=reactive_kvar(params, ctx, actual),
        )

    def uncontrolled(
        self, params: PVParams, state: PVState, ctx: Context, net_kw: FloatArray | None
    ) -> FloatArray:
        """All the available power (MPPT, after the smart-inverter functions), kW ≤ 0."""
        _, avail = available_kw(params, ctx)
        out: FloatArray = -avail
        return out
