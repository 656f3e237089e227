"""Electric (resistive) water-heater fleet: fully mixed tank, hot-water draws, comfort band,
ramp bidding like the HVAC fleet.

Tank physics (:mod:`transactive.der.thermal`), per tank over one interval:

    C · dT/dt = P − UA · (T − T_amb) − ṁc · (T − T_inlet)

C = volume · 4.186 kJ/(kg·K) / 3600 (kWh/K); UA: standby loss conductance (kW/K); ṁc: heat
capacity flow of the hot-water draw (kW/K, draw in L/h × 4.186/3600); P: element power
(kW, efficiency 1). The energy balance ``C·ΔT = (P − losses − draw)·dt`` is checked.

Draw profile: a stylised residential daily shape (morning peak 6–9 h, evening peak
18–22 h local time, 24 hourly fractions :data:`DRAW_SHAPE`) times each tank's daily
volume ``daily_l``, shifted by a per-tank offset so the fleet does not draw in lockstep.

Bidding (heating mode of the PNNL TESP ramp, see :func:`transactive.der.base.ramp_bid_price`)::

    bid price = μ + (T_set − T) · k · σ / |T_limit − T_set|

with ``k_below``/``range_below`` below the setpoint (colder: higher bid) and
``k_above``/``range_above`` above, clipped to ``[floor, cap]``. The quantity is the element
power up to what brings the tank to ``T_set + range_above``; the power needed to keep it at
or above ``T_set − range_below`` at the end of the interval is bid at every price. After
clearing the setpoint falls by the inverse rule.
Defaults: setpoint ~U(50, 55) °C, band 3–6 °C below / 2–4 °C above, k ~U(0.5, 3).
"""


# Config defaults are frozen (immutable) Dist values, safe as dataclass defaults.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, curves_from_arrays
from transactive.der import thermal
from transactive.der.base import (
    Context,
    Dist,
    EnergyReport,
    FloatArray,
    as_vector,
    check,
    check_balance,
    const,
    lognormal,
    ramp_bid_price,
    ramp_setpoint_offset,
    report,
    sample_config,
    uniform,
)
from transactive.errors import InvalidInputError

NAME = "water_heater"

#: Fraction of the daily hot-water volume drawn in each local hour (sums to 1).
_SHAPE = np.array(
    [1, 0.5, 0.5, 0.5, 1, 3, 8, 10, 8, 6, 5, 4, 4, 3, 3, 3, 4, 5, 7, 8, 7, 5, 3, 2],
    dtype=np.float64,
)
DRAW_SHAPE: np.ndarray = _SHAPE / _SHAPE.sum()
_CUM = np.concatenate([[0.0], np.cumsum(DRAW_SHAPE)])
#: Volumetric heat capacity of water, kWh/(L·K).
WATER_KWH_PER_L_K = 4.186 / 3600.0


@dataclass(frozen=True, slots=True)
class WaterHeaterConfig:
    """Distributions of tank parameters.

    volume_l: tank volume, L; ua_kw_per_k: standby loss conductance, kW/K; element_kw:
    element power, kW; setpoint_c: preferred temperature, °C; range_above, range_below:
    comfort band above / below the setpoint, °C (below is the uncomfortable side);
    k_above, k_below: ramp slopes (multiples of σ) above / below the setpoint; daily_l:
    hot-water use, L/day; shift_h: draw profile shift, h; inlet_c, ambient_c: cold-water and
    room temperature, °C; tz_offset_h: UTC offset, h.
    """

    volume_l: Dist = uniform(150.0, 300.0)
    ua_kw_per_k: Dist = uniform(0.0015, 0.003)
    element_kw: Dist = const(4.5)
    setpoint_c: Dist = uniform(50.0, 55.0)
    range_above: Dist = uniform(2.0, 4.0)
    range_below: Dist = uniform(3.0, 6.0)
    k_above: Dist = uniform(0.5, 3.0)
    k_below: Dist = uniform(0.5, 3.0)
    daily_l: Dist = lognormal(180.0, 0.3, 40.0, 500.0)
    shift_h: Dist = uniform(-1.5, 1.5)
    inlet_c: Dist = const(15.0)
    ambient_c: Dist = const(20.0)
    tz_offset_h: Dist = const(-5.0)


@dataclass(frozen=True, slots=True)
class WaterHeaterParams:
    """Per-tank parameter arrays; ``c_kwh_per_k`` = volume × water heat capacity."""

    c_kwh_per_k: FloatArray
    ua_kw_per_k: FloatArray
    element_kw: FloatArray
    setpoint_c: FloatArray
    range_above: FloatArray
    range_below: FloatArray
    k_above: FloatArray
    k_below: FloatArray
    daily_l: FloatArray
    shift_h: FloatArray
    inlet_c: FloatArray
    ambient_c: FloatArray
    tz_offset_h: FloatArray

    @property
    def n(self) -> int:
        return int(self.c_kwh_per_k.size)


@dataclass(frozen=True, slots=True)
class WaterHeaterState:
    """temp_c: tank temperature; setpoint_c: price-adjusted setpoint, °C."""

    temp_c: FloatArray
    setpoint_c: FloatArray


def sample(config: WaterHeaterConfig, n: int, rng: np.random.Generator) -> WaterHeaterParams:
    """Draw ``n`` tanks from ``config``."""
    d = {k: np.asarray(v, dtype=np.float64) for k, v in sample_config(config, n, rng, NAME).items()}
    for name in ("volume_l", "ua_kw_per_k", "range_above", "range_below", "k_above", "k_below"):
        check(d[name] > 0, NAME, name, "> 0", d[name])
    for name in ("element_kw", "daily_l"):
        check(d[name] >= 0, NAME, name, "≥ 0", d[name])
    check(
        d["setpoint_c"] + d["range_above"] < 100,
        NAME,
        "setpoint_c",
        "below boiling",
        d["setpoint_c"],
    )
    vol = d.pop("volume_l")
    return WaterHeaterParams(c_kwh_per_k=vol * WATER_KWH_PER_L_K, **d)


def initial_state(
    params: WaterHeaterParams, rng: np.random.Generator, config: object = None
) -> WaterHeaterState:
    """Tank temperature uniform inside the comfort band."""
    u = rng.random(params.n)
    lo = params.setpoint_c - params.range_below
    t = lo + u * (params.range_below + params.range_above)
    return WaterHeaterState(t, params.setpoint_c.copy())


# --- physics -------------------------------------------------------------------------------


def draw_l_per_h(params: WaterHeaterParams, t_h: float, dt_h: float) -> FloatArray:
    """Mean hot-water draw (L/h) of every tank over ``[t_h, t_h + dt_h)``."""
    a = t_h + params.tz_offset_h - params.shift_h
    b = a + dt_h

    def cum(x: FloatArray) -> FloatArray:
        days = np.floor(x / 24.0)
        r = x - days * 24.0
        k = np.minimum(np.floor(r).astype(np.int64), 23)
        out: FloatArray = days + _CUM[k] + (r - k) * DRAW_SHAPE[k]
        return out

    out: FloatArray = (cum(b) - cum(a)) / dt_h * params.daily_l
    return out


def _coeffs(params: WaterHeaterParams, ctx: Context) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(draw heat-capacity flow mc kW/K, total conductance H kW/K, reference temp °C)."""
    mc = draw_l_per_h(params, ctx.t_h, ctx.dt_h) * WATER_KWH_PER_L_K
    h = params.ua_kw_per_k + mc
    t_ref = (params.ua_kw_per_k * params.ambient_c + mc * params.inlet_c) / h
    return mc, h, t_ref


def limits(
    params: WaterHeaterParams, state: WaterHeaterState, ctx: Context
) -> tuple[FloatArray, FloatArray]:
    """``[0, element_kw]``."""
    return np.zeros(params.n), params.element_kw.copy()


def _levels(
    params: WaterHeaterParams, state: WaterHeaterState, ctx: Context
) -> tuple[FloatArray, FloatArray]:
    _, h, t_ref = _coeffs(params, ctx)
    c, dt = params.c_kwh_per_k, ctx.dt_h
    t_hi = params.setpoint_c + params.range_above
    t_lo = params.setpoint_c - params.range_below
    q_max = np.clip(thermal.heat_for_target(state.temp_c, c, h, t_ref, t_hi, dt), 0.0, None)
    q_max = np.minimum(q_max, params.element_kw)
    q_must = np.clip(thermal.heat_for_target(state.temp_c, c, h, t_ref, t_lo, dt), 0.0, q_max)
    return q_max, q_must


def bid_price(params: WaterHeaterParams, state: WaterHeaterState, ctx: Context) -> FloatArray:
    """The ramp bid price ($/kWh): higher the colder the tank is below its setpoint."""
    deviation = params.setpoint_c - state.temp_c
    # Colder (deviation ≥ 0) is the uncomfortable side: k_below/range_below.
    return ramp_bid_price(
        deviation, params.k_below, params.k_above, params.range_below, params.range_above, ctx
    )


def bid(params: WaterHeaterParams, state: WaterHeaterState, ctx: Context) -> Curves:
    """``q_max`` up to the ramp price, ``q_must`` at every price (2 points per tank)."""
    q_max, q_must = _levels(params, state, ctx)
    p = bid_price(params, state, ctx)
    return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))


def setpoint_after_clearing(
    params: WaterHeaterParams, ctx: Context, price: ArrayLike
) -> FloatArray:
    """The setpoint (°C) after clearing at ``price``: lowered when the price is high."""
    off = ramp_setpoint_offset(
        as_vector(price, params.n, "cleared_price"),
        params.k_below,
        params.k_above,
        params.range_below,
        params.range_above,
        ctx,
    )
    out: FloatArray = params.setpoint_c - off
    return out


def step(
    params: WaterHeaterParams,
    state: WaterHeaterState,
    power_kw: ArrayLike,
    ctx: Context,
    cleared_price: ArrayLike | None = None,
) -> tuple[WaterHeaterState, EnergyReport]:
    """Heat at ``power_kw`` (clipped to the element rating) for the interval.

    Reports ``temp_c``, ``draw_l`` (hot water drawn), ``draw_kwh`` (heat carried off by the
    draw), ``loss_kwh`` (standby loss), ``discomfort_kh`` and ``setpoint_c``.
    """
    award = as_vector(power_kw, params.n, "power_kw")
    if not np.all(np.isfinite(award)):
        raise InvalidInputError("power_kw must be finite")
    p = np.clip(award, 0.0, params.element_kw)
    mc, h, t_ref = _coeffs(params, ctx)
    c, dt = params.c_kwh_per_k, ctx.dt_h
    t1, t_avg = thermal.rc_step(state.temp_c, c, h, t_ref, p, dt)
    loss = params.ua_kw_per_k * (t_avg - params.ambient_c) * dt
    draw = mc * (t_avg - params.inlet_c) * dt
    check_balance(c * (t1 - state.temp_c), p * dt - loss - draw, "water_heater", p * dt + draw)
    t_lo = params.setpoint_c - params.range_below
    t_hi = params.setpoint_c + params.range_above
    discomfort = (np.maximum(t_lo - t1, 0.0) + np.maximum(t1 - t_hi, 0.0)) * dt
    setpoint = (
        state.setpoint_c
        if cleared_price is None
        else setpoint_after_clearing(params, ctx, cleared_price)
    )
    new = replace(state, temp_c=t1, setpoint_c=setpoint)
    return new, report(
        p,
        award,
        dt,
        temp_c=t1,
        draw_l=mc / WATER_KWH_PER_L_K * dt,
        draw_kwh=draw,
        loss_kwh=loss,
        discomfort_kh=discomfort,
        setpoint_c=setpoint,
    )
