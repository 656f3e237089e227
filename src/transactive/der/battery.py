"""Battery fleet: state of charge, power limits, efficiencies, degradation cost, and
threshold bidding from a price forecast.

Physics over an interval of ``dt`` hours at constant AC power ``P`` (kW, + charging):

    charging   (P ≥ 0):  ΔSoC·capacity = η_c·P·dt
    discharging (P < 0): ΔSoC·capacity = P·dt / η_d

i.e. ``ΔSoC·capacity = η_c·E_charge − E_discharge/η_d`` — checked in code to 1e-9
(:class:`~transactive.errors.BalanceError`). Throughput (kWh at the cells,
``η_c·E_charge + E_discharge/η_d``) is priced at ``degradation_cost`` $/kWh.

Bidding: the value ``v`` ($/kWh) of a kWh in the cells is the midpoint of two quantiles
of the price forecast over the horizon (``charge_quantile``, ``discharge_quantile``,
defaults 0.3/0.7). The battery

* buys up to its charge limit at prices ≤ ``p_c = min(Q_lo, η_c·(v − c_deg))``,
* sells up to its discharge limit at prices ≥ ``p_d = max(Q_hi, (v + c_deg)/η_d)``,

so a full cycle bought at ``p_c`` and sold at ``p_d`` earns at least the degradation cost of
its throughput (``p_d·η_d − p_c/η_c ≥ 2·c_deg``). The limits are those the state of charge
allows over the interval, so no award within the curve can break the SoC bounds.
"""


# Config defaults are frozen (immutable) Dist values, safe as dataclass defaults.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, curves_from_arrays, quantity_at
from transactive.der.base import (
    Context,
    Dist,
    EnergyReport,
    FloatArray,
    as_vector,
    check,
    check_balance,
    const,
    report,
    sample_config,
    uniform,
)
from transactive.errors import InvalidInputError

NAME = "battery"


@dataclass(frozen=True, slots=True)
class BatteryConfig:
    """Distributions of battery parameters.

    capacity_kwh: usable energy capacity; power_kw: charge and discharge limit (AC);
    eta_charge, eta_discharge: one-way efficiencies; soc_min, soc_max: SoC bounds (fractions);
    soc0: initial SoC; degradation_cost: $/kWh cell throughput; charge_quantile,
    discharge_quantile: forecast quantiles that set the bid thresholds.
    """

    capacity_kwh: Dist = uniform(5.0, 15.0)
    power_kw: Dist = uniform(3.0, 7.0)
    eta_charge: Dist = const(0.95)
    eta_discharge: Dist = const(0.95)
    soc_min: Dist = const(0.1)
    soc_max: Dist = const(0.95)
    soc0: Dist = uniform(0.3, 0.7)
    degradation_cost: Dist = uniform(0.01, 0.03)
    charge_quantile: Dist = uniform(0.2, 0.4)
    discharge_quantile: Dist = uniform(0.6, 0.8)


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """Per-battery parameter arrays (see :class:`BatteryConfig` for units)."""

    capacity_kwh: FloatArray
    charge_kw: FloatArray
    discharge_kw: FloatArray
    eta_charge: FloatArray
    eta_discharge: FloatArray
    soc_min: FloatArray
    soc_max: FloatArray
    degradation_cost: FloatArray
    charge_quantile: FloatArray
    discharge_quantile: FloatArray

    @property
    def n(self) -> int:
        return int(self.capacity_kwh.size)


@dataclass(frozen=True, slots=True)
class BatteryState:
    """soc: state of charge (fraction of ``capacity_kwh``)."""

    soc: FloatArray


def make_params(
    *,
    capacity_kwh: ArrayLike,
    charge_kw: ArrayLike,
    discharge_kw: ArrayLike | None = None,
    eta_charge: ArrayLike = 0.95,
    eta_discharge: ArrayLike = 0.95,
    soc_min: ArrayLike = 0.1,
    soc_max: ArrayLike = 0.95,
    degradation_cost: ArrayLike = 0.02,
    charge_quantile: ArrayLike = 0.3,
    discharge_quantile: ArrayLike = 0.7,
) -> BatteryParams:
    """Validated :class:`BatteryParams` (scalars broadcast)."""
    cap = np.atleast_1d(np.asarray(capacity_kwh, dtype=np.float64))
    n = cap.size
    p = BatteryParams(
        capacity_kwh=cap,
        charge_kw=as_vector(charge_kw, n, "charge_kw"),
        discharge_kw=as_vector(charge_kw if discharge_kw is None else discharge_kw, n, "dis"),
        eta_charge=as_vector(eta_charge, n, "eta_charge"),
        eta_discharge=as_vector(eta_discharge, n, "eta_discharge"),
        soc_min=as_vector(soc_min, n, "soc_min"),
        soc_max=as_vector(soc_max, n, "soc_max"),
        degradation_cost=as_vector(degradation_cost, n, "degradation_cost"),
        charge_quantile=as_vector(charge_quantile, n, "charge_quantile"),
        discharge_quantile=as_vector(discharge_quantile, n, "discharge_quantile"),
    )
    check(p.capacity_kwh > 0, NAME, "capacity_kwh", "> 0", p.capacity_kwh)
    check(p.charge_kw >= 0, NAME, "power_kw", "≥ 0", p.charge_kw)
    check(p.discharge_kw >= 0, NAME, "power_kw", "≥ 0", p.discharge_kw)
    for name in ("eta_charge", "eta_discharge"):
        v = getattr(p, name)
        check((v > 0) & (v <= 1), NAME, name, "in (0, 1]", v)
    for name in ("soc_min", "soc_max", "charge_quantile", "discharge_quantile"):
        v = getattr(p, name)
        check((v >= 0) & (v <= 1), NAME, name, "in [0, 1]", v)
    check(p.soc_min <= p.soc_max, NAME, "soc_min", "≤ soc_max", p.soc_min)
    check(p.degradation_cost >= 0, NAME, "degradation_cost", "≥ 0", p.degradation_cost)
    check(
        p.charge_quantile <= p.discharge_quantile,
        NAME,
        "charge_quantile",
        "≤ discharge_quantile",
        p.charge_quantile,
    )
    return p


def sample(config: BatteryConfig, n: int, rng: np.random.Generator) -> BatteryParams:
    """Draw ``n`` batteries from ``config`` (the initial SoC is drawn by
    :func:`initial_state`)."""
    d = sample_config(config, n, rng, NAME)
    d.pop("soc0")
    power = d.pop("power_kw")
    return make_params(charge_kw=power, discharge_kw=power, **d)


def initial_state(
    params: BatteryParams,
    rng: np.random.Generator,
    config: BatteryConfig | None = None,
) -> BatteryState:
    """Initial SoC drawn from ``config.soc0`` and clipped into ``[soc_min, soc_max]``."""
    dist = (config or BatteryConfig()).soc0
    soc = dist.sample(rng, params.n, f"{NAME} config field 'soc0'")
    check((soc >= 0) & (soc <= 1), NAME, "soc0", "in [0, 1]", soc)
    return BatteryState(np.clip(soc, params.soc_min, params.soc_max))


# --- physics -------------------------------------------------------------------------------


def limits(
    params: BatteryParams, state: BatteryState, ctx: Context
) -> tuple[FloatArray, FloatArray]:
    """Feasible AC power over the interval (kW): ``[−discharge, +charge]`` limited by the
    energy left between the SoC and its bounds."""
    dt = ctx.dt_h
    room = np.maximum(params.soc_max - state.soc, 0.0) * params.capacity_kwh
    stock = np.maximum(state.soc - params.soc_min, 0.0) * params.capacity_kwh
    p_max = np.minimum(params.charge_kw, room / (params.eta_charge * dt))
    p_min = -np.minimum(params.discharge_kw, stock * params.eta_discharge / dt)
    return p_min, p_max


def thresholds(params: BatteryParams, forecast: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Charge and discharge bid prices ($/kWh) per battery from the price ``forecast``."""
    f = np.sort(np.asarray(forecast, dtype=np.float64))
    # Per-device quantiles of one shared forecast: interpolate in the sorted forecast.
    pos = np.linspace(0.0, 1.0, f.size)
    q_lo = np.interp(params.charge_quantile, pos, f)
    q_hi = np.interp(params.discharge_quantile, pos, f)
    v = 0.5 * (q_lo + q_hi)
    c = params.degradation_cost
    p_c = np.minimum(q_lo, params.eta_charge * (v - c))
    p_d = np.maximum(q_hi, (v + c) / params.eta_discharge)
    return np.minimum(p_c, p_d), p_d


def bid(params: BatteryParams, state: BatteryState, ctx: Context) -> Curves:
    """Buy the charge limit at ≤ ``p_c``, sell the discharge limit at ≥ ``p_d`` (4 points)."""
    p_min, p_max = limits(params, state, ctx)
    p_c, p_d = thresholds(params, ctx.price_forecast)
    zero = np.zeros(params.n)
    return curves_from_arrays(
        np.column_stack([p_c, p_c, p_d, p_d]), np.column_stack([p_max, zero, zero, p_min])
    )


def bid_horizon(params: BatteryParams, state: BatteryState, ctx: Context) -> list[Curves]:
    """One curve per interval of the forecast horizon, for a forward (e.g. day-ahead) market.

    The SoC is projected along the horizon assuming each interval clears at its forecast
    price (each interval's curve read at its forecast price); each interval's curve
    uses the limits of the projected SoC. Loops over the horizon, vectorised over devices.
    """
    f = ctx.price_forecast
    p_c, p_d = thresholds(params, f)
    soc = state.soc.copy()
    out: list[Curves] = []
    zero = np.zeros(params.n)
    for price in f:
        s = BatteryState(soc)
        p_min, p_max = limits(params, s, ctx)
        c = curves_from_arrays(
            np.column_stack([p_c, p_c, p_d, p_d]), np.column_stack([p_max, zero, zero, p_min])
        )
        out.append(c)
        soc = _next_soc(params, soc, quantity_at(c, price), ctx.dt_h)
    return out


def _next_soc(params: BatteryParams, soc: FloatArray, p: FloatArray, dt: float) -> FloatArray:
    de = np.where(p >= 0, params.eta_charge * p * dt, p * dt / params.eta_discharge)
    out: FloatArray = soc + de / params.capacity_kwh
    return out


def step(
    params: BatteryParams,
    state: BatteryState,
    power_kw: ArrayLike,
    ctx: Context,
    cleared_price: ArrayLike | None = None,
) -> tuple[BatteryState, EnergyReport]:
    """Charge (+) or discharge (−) at ``power_kw`` for the interval.

    An award outside the SoC/power limits is clipped to them and the difference reported as
    deviation. Reports ``charge_kwh``, ``discharge_kwh``, ``throughput_kwh`` (cells),
    ``degradation_cost`` ($) and ``soc``.
    """
    award = as_vector(power_kw, params.n, "power_kw")
    if not np.all(np.isfinite(award)):
        raise InvalidInputError("power_kw must be finite")
    lo, hi = limits(params, state, ctx)
    p = np.clip(award, lo, hi)
    dt = ctx.dt_h
    soc1 = np.clip(_next_soc(params, state.soc, p, dt), params.soc_min, params.soc_max)
    e_c = np.maximum(p, 0.0) * dt
    e_d = np.maximum(-p, 0.0) * dt
    stored = (soc1 - state.soc) * params.capacity_kwh
    check_balance(
        stored,
        params.eta_charge * e_c - e_d / params.eta_discharge,
        "battery",
        params.capacity_kwh,
    )
    throughput = params.eta_charge * e_c + e_d / params.eta_discharge
    new = replace(state, soc=soc1)
    return new, report(
        p,
        award,
        dt,
        charge_kwh=e_c,
        discharge_kwh=e_d,
        throughput_kwh=throughput,
        degradation_cost=throughput * params.degradation_cost,
        soc=soc1,
    )
