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
* **export limit**: ``|P| ≤ export_limit_kw``.

With reactive priority the active power is at most ``sqrt(S² − Q²)``. The *available*
power is the MPPT AC power limited by these functions; what the smart-inverter functions
take away and what the market curtails (award below availability) are both reported as
curtailed energy.

Bidding: each system offers all its available power at or above ``offer_price``
($/kWh, default 0: it curtails only at negative prices) — a single sell block.
"""


# Config defaults are frozen (immutable) Dist values, safe as dataclass defaults.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pvlib
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, block_curves
from transactive.der.base import (
    Context,
    Dist,
    EnergyReport,
    FloatArray,
    as_vector,
    check,
    check_balance,
    const,
    normal,
    report,
    sample_config,
    uniform,
)
from transactive.errors import InvalidInputError

NAME = "pv"

#: IEEE 1547-2018 category B default volt-var curve: voltage (pu) → Q/S (+ absorbed).
VV_V = (0.92, 0.98, 1.02, 1.08)
VV_Q = (-0.44, 0.0, 0.0, 0.44)
#: IEEE 1547-2018 default volt-watt curve: voltage (pu) → P limit / S.
VW_V = (1.06, 1.10)
VW_P = (1.0, 0.2)
#: SAPM cell-temperature parameters for roof-mounted glass/glass modules (pvlib table).
_TEMP = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]


@dataclass(frozen=True, slots=True)
class PVConfig:
    """Distributions of PV parameters.

    capacity_kw: DC nameplate, kW; dc_ac_ratio: DC/AC ratio (inverter kVA = capacity/ratio);
    tilt_deg, azimuth_deg: orientation (azimuth clockwise from north, 180 = south);
    gamma_pdc: power temperature coefficient, 1/°C; losses: DC system losses, fraction;
    offer_price: $/kWh at and above which the output is offered;
    export_limit_kw: maximum export, kW (inf: none); power_factor: fixed power factor
    (absorbing), 1 = off; volt_var, volt_watt: fraction of systems with the function on.
    """

    capacity_kw: Dist = normal(6.0, 2.0, 2.0, 15.0)
    dc_ac_ratio: Dist = uniform(1.1, 1.3)
    tilt_deg: Dist = uniform(15.0, 35.0)
    azimuth_deg: Dist = normal(180.0, 35.0, 90.0, 270.0)
    gamma_pdc: Dist = const(-0.0037)
    losses: Dist = const(0.14)
    offer_price: Dist = const(0.0)
    export_limit_kw: Dist = const(np.inf)
    power_factor: Dist = const(1.0)
    volt_var: float = 1.0
    volt_watt: float = 1.0


@dataclass(frozen=True, slots=True)
class PVParams:
    """Per-system parameter arrays (see :class:`PVConfig` for units)."""

    capacity_kw: FloatArray
    inverter_kw: FloatArray
    tilt_deg: FloatArray
    azimuth_deg: FloatArray
    gamma_pdc: FloatArray
    losses: FloatArray
    offer_price: FloatArray
    export_limit_kw: FloatArray
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


def sample(config: PVConfig, n: int, rng: np.random.Generator) -> PVParams:
    """Draw ``n`` systems from ``config``."""
    d = sample_config(config, n, rng, NAME)
    for k in ("volt_var", "volt_watt"):
        frac = float(d[k])
        check(0.0 <= frac <= 1.0, NAME, k, "a fraction in [0, 1]", frac)
    on_vv = rng.random(n) < float(d["volt_var"])
    on_vw = rng.random(n) < float(d["volt_watt"])
    cap = np.asarray(d["capacity_kw"])
    ratio = np.asarray(d["dc_ac_ratio"])
    check(cap > 0, NAME, "capacity_kw", "> 0", cap)
    check(ratio > 0, NAME, "dc_ac_ratio", "> 0", ratio)
    return make_params(
        capacity_kw=cap,
        inverter_kw=cap / ratio,
        tilt_deg=d["tilt_deg"],
        azimuth_deg=d["azimuth_deg"],
        gamma_pdc=d["gamma_pdc"],
        losses=d["losses"],
        offer_price=d["offer_price"],
        export_limit_kw=d["export_limit_kw"],
        power_factor=d["power_factor"],
        volt_var=on_vv,
        volt_watt=on_vw,
    )


def make_params(
    *,
    capacity_kw: ArrayLike,
    inverter_kw: ArrayLike,
    tilt_deg: ArrayLike = 25.0,
    azimuth_deg: ArrayLike = 180.0,
    gamma_pdc: ArrayLike = -0.0037,
    losses: ArrayLike = 0.14,
    offer_price: ArrayLike = 0.0,
    export_limit_kw: ArrayLike = np.inf,
    power_factor: ArrayLike = 1.0,
    volt_var: ArrayLike = False,
    volt_watt: ArrayLike = False,
) -> PVParams:
    """Validated :class:`PVParams` from explicit values (scalars broadcast)."""
    cap = np.atleast_1d(np.asarray(capacity_kw, dtype=np.float64))
    n = cap.size
    p = PVParams(
        capacity_kw=cap,
        inverter_kw=as_vector(inverter_kw, n, "inverter_kw"),
        tilt_deg=as_vector(tilt_deg, n, "tilt_deg"),
        azimuth_deg=as_vector(azimuth_deg, n, "azimuth_deg"),
        gamma_pdc=as_vector(gamma_pdc, n, "gamma_pdc"),
        losses=as_vector(losses, n, "losses"),
        offer_price=as_vector(offer_price, n, "offer_price"),
        export_limit_kw=as_vector(export_limit_kw, n, "export_limit_kw"),
        power_factor=as_vector(power_factor, n, "power_factor"),
        volt_var=np.broadcast_to(np.asarray(volt_var, dtype=bool), (n,)).copy(),
        volt_watt=np.broadcast_to(np.asarray(volt_watt, dtype=bool), (n,)).copy(),
    )
    check(p.capacity_kw > 0, NAME, "capacity_kw", "> 0", p.capacity_kw)
    check(p.inverter_kw > 0, NAME, "inverter_kw", "> 0", p.inverter_kw)
    check((p.tilt_deg >= 0) & (p.tilt_deg <= 90), NAME, "tilt_deg", "in [0, 90]", p.tilt_deg)
    check(
        (p.azimuth_deg >= 0) & (p.azimuth_deg <= 360),
        NAME,
        "azimuth_deg",
        "in [0, 360]",
        p.azimuth_deg,
    )
    check((p.losses >= 0) & (p.losses < 1), NAME, "losses", "in [0, 1)", p.losses)
    check(p.export_limit_kw >= 0, NAME, "export_limit_kw", "≥ 0", p.export_limit_kw)
    check(
        (p.power_factor > 0) & (p.power_factor <= 1),
        NAME,
        "power_factor",
        "in (0, 1]",
        p.power_factor,
    )
    check(np.isfinite(p.offer_price), NAME, "offer_price", "finite", p.offer_price)
    return p


def initial_state(
    params: PVParams, rng: np.random.Generator | None = None, config: object = None
) -> PVState:
    """The (empty) state."""
    return PVState(params.n)


# --- physics -------------------------------------------------------------------------------


def mppt_ac_kw(params: PVParams, ctx: Context) -> FloatArray:
    """AC power (kW, ≥ 0) at the maximum power point, after inverter clipping, for the
    weather of ``ctx`` — before any smart-inverter function or curtailment."""
    w = ctx.weather
    if w.solar_zenith >= 90.0 or (w.ghi <= 0.0 and w.dni <= 0.0 and w.dhi <= 0.0):
        return np.zeros(params.n)
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
        poa_global, w.temp_air, w.wind_speed, _TEMP["a"], _TEMP["b"], _TEMP["deltaT"]
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
    priority under volt-var or fixed power factor, and the export limit."""
    s = params.inverter_kw
    v = _voltage(params, ctx)
    vw = np.where(params.volt_watt, np.interp(v, VW_V, VW_P) * s, np.inf)
    q = volt_var_kvar(params, v)
    by_vv = np.sqrt(np.maximum(s * s - q * q, 0.0))
    by_pf = params.power_factor * s
    out: FloatArray = np.minimum.reduce([vw, by_vv, by_pf, params.export_limit_kw])
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


def limits(params: PVParams, state: PVState, ctx: Context) -> tuple[FloatArray, FloatArray]:
    """Feasible power: ``[−available, 0]`` kW."""
    _, avail = available_kw(params, ctx)
    return -avail, np.zeros(params.n)


def bid(params: PVParams, state: PVState, ctx: Context) -> Curves:
    """One sell block per system: all available power at ``offer_price`` or above."""
    _, avail = available_kw(params, ctx)
    return block_curves(params.offer_price, -avail)


def reactive_kvar(params: PVParams, ctx: Context, power_kw: FloatArray) -> FloatArray:
    """Reactive power (kvar, + absorbed) at active power ``power_kw`` (≤ 0): volt-var where on,
    else the fixed power factor."""
    v = _voltage(params, ctx)
    q_vv = volt_var_kvar(params, v)
    tan_phi = np.tan(np.arccos(params.power_factor))
    q_pf = np.abs(power_kw) * tan_phi
    out: FloatArray = np.where(params.volt_var, q_vv, q_pf)
    return out


def step(
    params: PVParams,
    state: PVState,
    power_kw: ArrayLike,
    ctx: Context,
    cleared_price: ArrayLike | None = None,
) -> tuple[PVState, EnergyReport]:
    """Run the systems at ``power_kw`` (≤ 0, the award) over the interval.

    An award beyond the available power is met only up to availability (reported as
    deviation); a positive award (PV cannot consume) is treated as 0. Reports
    ``potential_kwh`` (MPPT AC), ``curtailed_kwh`` = ``inverter_curtailed_kwh`` (smart-inverter
    and export limits) + ``market_curtailed_kwh`` (award below availability), and
    ``q_kvar``.
    """
    award = as_vector(power_kw, params.n, "power_kw")
    if not np.all(np.isfinite(award)):
        raise InvalidInputError("power_kw must be finite")
    mppt, avail = available_kw(params, ctx)
    actual = np.clip(award, -avail, 0.0)
    dt = ctx.dt_h
    produced = -actual * dt
    inv_curt = (mppt - avail) * dt
    mkt_curt = (avail + actual) * dt
    check_balance(mppt * dt, produced + inv_curt + mkt_curt, "pv", mppt * dt)
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
