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

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, curves_from_arrays
from transactive.der import thermal
from transactive.der.base import (
    BoolArray,
    Context,
    DeviceType,
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
    uniform,
)
from transactive.der.params import DeviceConfig, Param

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
class WaterHeaterParams:
    """Per-tank parameter arrays (units as in :attr:`WaterHeater.PARAMS`); ``c_kwh_per_k``
    = ``volume_l`` × water heat capacity."""

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
    deadband_c: FloatArray

    @property
    def n(self) -> int:
        return int(self.c_kwh_per_k.size)


@dataclass(frozen=True, slots=True)
class WaterHeaterState:
    """temp_c: tank temperature; setpoint_c: price-adjusted setpoint, °C; on: the element
    heated in the last interval (the thermostat's memory in uncontrolled mode)."""

    temp_c: FloatArray
    setpoint_c: FloatArray
    on: BoolArray


# --- physics -------------------------------------------------------------------------------


def draw_l_per_h(
    params: WaterHeaterParams, t_h: float, dt_h: float, utc_offset_h: float
) -> FloatArray:
    """Mean hot-water draw (L/h) of every tank over ``[t_h, t_h + dt_h)`` (UTC), the draw
    shape on the local clock UTC + ``utc_offset_h`` (h)."""
    a = t_h + utc_offset_h - params.shift_h
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
    mc = draw_l_per_h(params, ctx.t_h, ctx.dt_h, ctx.utc_offset_h) * WATER_KWH_PER_L_K
    h = params.ua_kw_per_k + mc
    t_ref = (params.ua_kw_per_k * params.ambient_c + mc * params.inlet_c) / h
    return mc, h, t_ref


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


class WaterHeater(DeviceType[WaterHeaterParams, WaterHeaterState]):
    """Resistive water heaters (see the module docstring)."""

    KIND = "water_heater"
    PARAMS = (
        Param("volume_l", "L", uniform(150.0, 300.0), "(0, inf)", "tank volume"),
        Param(
            "ua_kw_per_k", "kW/K", uniform(0.0015, 0.003), "(0, inf)", "standby loss conductance"
        ),
        Param("element_kw", "kW", const(4.5), "[0, inf)", "element power"),
        Param("setpoint_c", "°C", uniform(50.0, 55.0), "(-inf, 100)", "preferred temperature"),
        Param("range_above", "K", uniform(2.0, 4.0), "(0, inf)", "comfort band above the setpoint"),
        Param(
            "range_below",
            "K",
            uniform(3.0, 6.0),
            "(0, inf)",
            "comfort band below the setpoint (the uncomfortable side)",
        ),
        Param(
            "k_above",
            "1",
            uniform(0.5, 3.0),
            "(0, inf)",
            "ramp slope above the setpoint (multiples of σ)",
        ),
        Param(
            "k_below",
            "1",
            uniform(0.5, 3.0),
            "(0, inf)",
            "ramp slope below the setpoint (multiples of σ)",
        ),
        Param("daily_l", "L/day", lognormal(180.0, 0.3, 40.0, 500.0), "[0, inf)", "hot-water use"),
        Param("shift_h", "h", uniform(-1.5, 1.5), "(-inf, inf)", "shift of the draw profile"),
        Param("inlet_c", "°C", const(15.0), "(-inf, inf)", "cold-water inlet temperature"),
        Param("ambient_c", "°C", const(20.0), "(-inf, inf)", "room temperature around the tank"),
        Param(
            "deadband_c",
            "K",
            const(3.0),
            "(0, inf)",
            "thermostat deadband in uncontrolled mode (setpoint ± half)",
        ),
    )

    def build(
        self, values: Mapping[str, FloatArray], rng: np.random.Generator
    ) -> WaterHeaterParams:
        """Parameters; the heat capacity follows from the volume."""
        d = dict(values)
        check(
            d["setpoint_c"] + d["range_above"] < 100,
            self.KIND,
            "setpoint_c",
            "below boiling (with range_above)",
            d["setpoint_c"],
        )
        vol = d.pop("volume_l")
        return WaterHeaterParams(c_kwh_per_k=vol * WATER_KWH_PER_L_K, **d)

    def initial_state(
        self, params: WaterHeaterParams, config: DeviceConfig, rng: np.random.Generator
    ) -> WaterHeaterState:
        """Tank temperature uniform inside the comfort band; elements off."""
        u = rng.random(params.n)
        lo = params.setpoint_c - params.range_below
        t = lo + u * (params.range_below + params.range_above)
        return WaterHeaterState(t, params.setpoint_c.copy(), np.zeros(params.n, dtype=bool))

    def limits(
        self, params: WaterHeaterParams, state: WaterHeaterState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """``[0, element_kw]``."""
        return np.zeros(params.n), params.element_kw.copy()

    def bid(self, params: WaterHeaterParams, state: WaterHeaterState, ctx: Context) -> Curves:
        """``q_max`` up to the ramp price, ``q_must`` at every price (2 points per tank)."""
        q_max, q_must = _levels(params, state, ctx)
        p = bid_price(params, state, ctx)
        return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))

    def run(
        self,
        params: WaterHeaterParams,
        state: WaterHeaterState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[WaterHeaterState, EnergyReport]:
        """Heat at the award (clipped to the element rating) for the interval.

        Reports ``temp_c``, ``draw_l`` (hot water drawn), ``draw_kwh`` (heat carried off by
        the draw), ``loss_kwh`` (standby loss), ``discomfort_kh``, ``comfort_dev_kh``
        (K·h: ``|T − setpoint_c|`` along the exact tank-temperature path, against the
        preferred setpoint, not the price-shifted one) and ``setpoint_c``.
        """
        p = np.clip(award, 0.0, params.element_kw)
        mc, h, t_ref = _coeffs(params, ctx)
        c, dt = params.c_kwh_per_k, ctx.dt_h
        t1, t_avg = thermal.rc_step(state.temp_c, c, h, t_ref, p, dt)
        loss = params.ua_kw_per_k * (t_avg - params.ambient_c) * dt
        draw = mc * (t_avg - params.inlet_c) * dt
        check_balance(c * (t1 - state.temp_c), p * dt - loss - draw, self.KIND, p * dt + draw)
        discomfort = thermal.discomfort_kh(
            t1, params.setpoint_c - params.range_below, params.setpoint_c + params.range_above, dt
        )
        setpoint = (
            state.setpoint_c
            if cleared_price is None
            else setpoint_after_clearing(params, ctx, cleared_price)
        )
        new = replace(state, temp_c=t1, setpoint_c=setpoint, on=p > 0)
        return new, report(
            p,
            award,
            dt,
            temp_c=t1,
            draw_l=mc / WATER_KWH_PER_L_K * dt,
            draw_kwh=draw,
            loss_kwh=loss,
            discomfort_kh=discomfort,
            comfort_dev_kh=thermal.deviation_kh(
                state.temp_c, c, h, t_ref + p / h, params.setpoint_c, dt
            ),
            setpoint_c=setpoint,
        )

    def uncontrolled(
        self,
        params: WaterHeaterParams,
        state: WaterHeaterState,
        ctx: Context,
        net_kw: FloatArray | None,
    ) -> FloatArray:
        """A thermostat holding the preferred setpoint with a deadband (hysteresis): see
        :func:`transactive.der.thermal.thermostat_heat_kw` (efficiency 1)."""
        _, h, t_ref = _coeffs(params, ctx)
        return thermal.thermostat_heat_kw(
            state.temp_c,
            state.on,
            params.setpoint_c,
            params.deadband_c,
            np.ones(params.n),
            params.c_kwh_per_k,
            h,
            t_ref,
            params.element_kw,
            ctx.dt_h,
        )
