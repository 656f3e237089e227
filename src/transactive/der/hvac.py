"""HVAC (heat pump / air conditioner) fleet: 1R1C house model, comfort band, PNNL ramp
bidding and price-responsive setpoint.

House physics (:mod:`transactive.der.thermal`), per house, over one interval:

    C · dT/dt = UA · (T_out − T) + G + s · COP · P

C: effective heat capacity of air + contents (kWh/K); UA: envelope conductance (kW/K);
T_out: outdoor temperature from the weather data; G = internal gains + solar aperture ×
GHI (kW); P: electric power (kW); s = +1 heating, −1 cooling. The mode of an interval is
*cooling* when the free-running equilibrium ``T_out + G/UA`` is above the setpoint, else
*heating*. The energy balance is checked in code. A unit that cannot cool
(``can_cool``: heating-only heat pumps, the common case in German homes) has no cooling
rating: in cooling mode it draws nothing and the house floats.

Comfort is reported two ways: ``discomfort_kh``, the K·h outside the comfort band, and
``comfort_dev_kh``, ``∫|T − T_set|dt`` against the preferred setpoint along the exact
temperature path (:func:`transactive.der.thermal.deviation_kh`), which also shows the
pre-heating/pre-cooling a price-responsive house does inside its band.

Bidding — the *ramp* strategy of PNNL's transactive controller (GridLAB-D ``controller``
class, TESP ``hvac`` agent): with forecast price mean ``μ`` and standard deviation ``σ``,
temperature ``T``, preferred setpoint ``T_set`` and comfort limits
``T_set − range_low … T_set + range_high``::

    bid price = μ + (T − T_set) · k · σ / |T_limit − T_set|        (cooling)
    bid price = μ + (T_set − T) · k · σ / |T_limit − T_set|        (heating)

where ``T_limit``/``k`` are the comfort limit and ramp on the side ``T`` is on
(``range_high``/``k_high`` above the setpoint, ``range_low``/``k_low`` below it), clipped to
``[floor, cap]``. The bid quantity is the power the unit can usefully draw: at most its
rating and no more than brings the house to the far comfort limit by the end of the
interval. The power needed to keep the house inside the comfort band by the end of the
interval is bid at every price (must-run), so the band is kept whenever the unit's
capacity allows it.

After clearing at price ``p`` the setpoint moves by the inverse rule
``offset = (p − μ) · |T_limit − T_set| / (k · σ)`` (clipped to the band; up when cooling,
down when heating); the unit then runs iff its temperature is beyond the new setpoint,
which is exactly when its bid price was ≥ ``p``.

Defaults: ``k_low = k_high ~ U(0.5, 3)`` and ``range_low = range_high ~ U(1, 2) °C``
(≈2–4 °F) in the range of the TESP example populations; setpoint ``N(22.5, 1)`` °C.
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
    check_balance,
    const,
    normal,
    ramp_bid_price,
    ramp_setpoint_offset,
    report,
    uniform,
)
from transactive.der.params import DeviceConfig, Param


@dataclass(frozen=True, slots=True)
class HVACParams:
    """Per-house parameter arrays (units as in :attr:`HVAC.PARAMS`); ``cool_kw_th`` /
    ``heat_kw_th``: thermal ratings of the unit (kW), sized for the design temperatures
    (``cool_kw_th`` = 0 where the unit cannot cool); ``can_cool``: drawn per house."""

    ua_kw_per_k: FloatArray
    c_kwh_per_k: FloatArray
    internal_gain_kw: FloatArray
    solar_aperture_m2: FloatArray
    cop_cool: FloatArray
    cop_heat: FloatArray
    setpoint_c: FloatArray
    range_low: FloatArray
    range_high: FloatArray
    k_low: FloatArray
    k_high: FloatArray
    cool_kw_th: FloatArray
    heat_kw_th: FloatArray
    deadband_c: FloatArray
    can_cool: BoolArray

    @property
    def n(self) -> int:
        return int(self.ua_kw_per_k.size)


@dataclass(frozen=True, slots=True)
class HVACState:
    """temp_c: indoor temperature; setpoint_c: current (price-adjusted) setpoint, °C;
    on: the unit ran in the last interval (the thermostat's memory in uncontrolled mode)."""

    temp_c: FloatArray
    setpoint_c: FloatArray
    on: BoolArray


# --- physics -------------------------------------------------------------------------------


def _gains(params: HVACParams, ctx: Context) -> FloatArray:
    out: FloatArray = params.internal_gain_kw + params.solar_aperture_m2 * ctx.weather.ghi / 1e3
    return out


def mode(params: HVACParams, ctx: Context) -> FloatArray:
    """+1 heating, −1 cooling, per house for the interval."""
    t_free = ctx.weather.temp_air + _gains(params, ctx) / params.ua_kw_per_k
    out: FloatArray = np.where(t_free > params.setpoint_c, -1.0, 1.0)
    return out


def _levels(
    params: HVACParams, state: HVACState, ctx: Context
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(mode s, COP, q_max, q_must) — electric kW for the interval."""
    s = mode(params, ctx)
    cop = np.where(s > 0, params.cop_heat, params.cop_cool)
    rated = rated_kw(params, ctx)
    t_ref = ctx.weather.temp_air + _gains(params, ctx) / params.ua_kw_per_k
    t_min = params.setpoint_c - params.range_low
    t_max = params.setpoint_c + params.range_high
    c, ua, dt = params.c_kwh_per_k, params.ua_kw_per_k, ctx.dt_h
    far = np.where(s > 0, t_max, t_min)  # do not overshoot past the far comfort limit
    near = np.where(s > 0, t_min, t_max)  # stay inside the near one
    q_far = s * thermal.heat_for_target(state.temp_c, c, ua, t_ref, far, dt) / cop
    q_near = s * thermal.heat_for_target(state.temp_c, c, ua, t_ref, near, dt) / cop
    q_max = np.clip(q_far, 0.0, rated)
    q_must = np.clip(q_near, 0.0, q_max)
    return s, cop, q_max, q_must


def rated_kw(params: HVACParams, ctx: Context) -> FloatArray:
    """Rated electric power (kW) of the interval's mode."""
    s = mode(params, ctx)
    cop = np.where(s > 0, params.cop_heat, params.cop_cool)
    out: FloatArray = np.where(s > 0, params.heat_kw_th, params.cool_kw_th) / cop
    return out


def bid_price(params: HVACParams, state: HVACState, ctx: Context) -> FloatArray:
    """The ramp bid price ($/kWh) of every house (see the module docstring)."""
    s = mode(params, ctx)
    deviation = -s * (state.temp_c - params.setpoint_c)  # + on the uncomfortable side
    return ramp_bid_price(deviation, *_sides(params, s), ctx)


def _sides(
    params: HVACParams, s: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(k_up, k_down, range_up, range_down): the uncomfortable side is above the setpoint
    when cooling (``s = −1``) and below it when heating (``s = +1``)."""
    heat = s > 0
    return (
        np.where(heat, params.k_low, params.k_high),
        np.where(heat, params.k_high, params.k_low),
        np.where(heat, params.range_low, params.range_high),
        np.where(heat, params.range_high, params.range_low),
    )


def setpoint_after_clearing(params: HVACParams, ctx: Context, price: ArrayLike) -> FloatArray:
    """The price-adjusted setpoint (°C) after clearing at ``price``: the inverse ramp rule."""
    s = mode(params, ctx)
    off = ramp_setpoint_offset(as_vector(price, params.n, "cleared_price"), *_sides(params, s), ctx)
    out: FloatArray = params.setpoint_c - s * off
    return out


class HVAC(DeviceType[HVACParams, HVACState]):
    """Heat pumps / air conditioners in 1R1C houses (see the module docstring)."""

    KIND = "hvac"
    PARAMS = (
        Param("ua_kw_per_k", "kW/K", uniform(0.15, 0.35), "(0, inf)", "envelope conductance"),
        Param(
            "c_kwh_per_k",
            "kWh/K",
            uniform(3.0, 8.0),
            "(0, inf)",
            "effective heat capacity of air and contents",
        ),
        Param("internal_gain_kw", "kW", uniform(0.3, 0.8), "[0, inf)", "internal heat gains"),
        Param(
            "solar_aperture_m2",
            "m²",
            uniform(1.0, 4.0),
            "[0, inf)",
            "effective solar aperture (kW per kW/m² of GHI)",
        ),
        Param(
            "cop_cool", "1", uniform(3.0, 4.0), "(0, inf)", "coefficient of performance, cooling"
        ),
        Param(
            "cop_heat", "1", uniform(2.5, 3.5), "(0, inf)", "coefficient of performance, heating"
        ),
        Param(
            "setpoint_c", "°C", normal(22.5, 1.0, 19.0, 26.0), "(-inf, inf)", "preferred setpoint"
        ),
        Param("range_low", "K", uniform(1.0, 2.0), "(0, inf)", "comfort band below the setpoint"),
        Param("range_high", "K", uniform(1.0, 2.0), "(0, inf)", "comfort band above the setpoint"),
        Param(
            "k_low",
            "1",
            uniform(0.5, 3.0),
            "(0, inf)",
            "ramp slope below the setpoint (multiples of σ)",
        ),
        Param(
            "k_high",
            "1",
            uniform(0.5, 3.0),
            "(0, inf)",
            "ramp slope above the setpoint (multiples of σ)",
        ),
        Param(
            "design_hot_c", "°C", const(38.0), "(-inf, inf)", "outdoor design temperature, cooling"
        ),
        Param(
            "design_cold_c",
            "°C",
            const(-12.0),
            "(-inf, inf)",
            "outdoor design temperature, heating",
        ),
        Param("sizing", "1", uniform(1.2, 1.5), "[1, inf)", "oversizing factor of the unit"),
        Param(
            "deadband_c",
            "K",
            const(1.0),
            "(0, inf)",
            "thermostat deadband in uncontrolled mode (setpoint ± half)",
        ),
        Param(
            "can_cool",
            "1",
            const(1.0),
            "[0, 1]",
            "probability a unit can cool (1: reversible heat pump / air conditioner; 0: "
            "heating only, e.g. German heat pumps, the house floats in cooling mode)",
        ),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> HVACParams:
        """Parameters; the unit is sized for the design temperatures; whether it can cool is
        drawn per house with probability ``can_cool`` (a unit that cannot has no cooling
        rating, so it draws nothing in cooling mode)."""
        d = values
        ua, sp = d["ua_kw_per_k"], d["setpoint_c"]
        can_cool = rng.random(ua.size) < d["can_cool"]
        peak_gain = d["internal_gain_kw"] + d["solar_aperture_m2"] * 1.0  # 1 kW/m² sun
        cool = d["sizing"] * np.maximum(ua * (d["design_hot_c"] - sp) + peak_gain, 0.5)
        heat = d["sizing"] * np.maximum(ua * (sp - d["design_cold_c"]), 0.5)
        keep = [f for f in HVACParams.__dataclass_fields__ if f in d and f != "can_cool"]
        return HVACParams(
            cool_kw_th=np.where(can_cool, cool, 0.0),
            heat_kw_th=heat,
            can_cool=can_cool,
            **{k: d[k] for k in keep},
        )

    def initial_state(
        self, params: HVACParams, config: DeviceConfig, rng: np.random.Generator
    ) -> HVACState:
        """Indoor temperature uniform inside the comfort band; units off."""
        u = rng.random(params.n)
        t = params.setpoint_c - params.range_low + u * (params.range_low + params.range_high)
        return HVACState(t, params.setpoint_c.copy(), np.zeros(params.n, dtype=bool))

    def limits(
        self, params: HVACParams, state: HVACState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """``[0, rated electric power]`` of the interval's mode."""
        return np.zeros(params.n), rated_kw(params, ctx)

    def bid(self, params: HVACParams, state: HVACState, ctx: Context) -> Curves:
        """``q_max`` up to the ramp bid price, ``q_must`` at every price (2 points per house)."""
        _, _, q_max, q_must = _levels(params, state, ctx)
        p = bid_price(params, state, ctx)
        return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))

    def run(
        self,
        params: HVACParams,
        state: HVACState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[HVACState, EnergyReport]:
        """Run the units at the award (clipped to the rating) for the interval.

        Reports ``temp_c`` (end of interval), ``heat_kwh`` (thermal energy delivered,
        + heating, − cooling), ``discomfort_kh`` (K·h outside the comfort band, from the end
        temperature), ``comfort_dev_kh`` (K·h: ``|T − setpoint_c|`` integrated along the
        interval's exact temperature path, against the house's *preferred* setpoint, not
        the price-shifted one), ``setpoint_c`` (moved by the inverse ramp rule when
        ``cleared_price`` is given) and ``stored_kwh``: the thermal mass's store against the
        preferred setpoint as electric energy, ``s · C · (T_end − setpoint_c) / COP`` (kWh;
        heating: a house warmer than preferred holds heat, a colder one owes it; cooling the
        reverse), so a design that ends the period with the houses drained is charged for it
        in the value table like one that drains the batteries.
        """
        lo, hi = self.limits(params, state, ctx)
        p = np.clip(award, lo, hi)
        s = mode(params, ctx)
        cop = np.where(s > 0, params.cop_heat, params.cop_cool)
        heat = s * cop * p
        gains = _gains(params, ctx)
        c, ua, dt = params.c_kwh_per_k, params.ua_kw_per_k, ctx.dt_h
        t_out = ctx.weather.temp_air
        t_eq = t_out + (gains + heat) / ua
        t1, t_avg = thermal.rc_step(state.temp_c, c, ua, t_eq, 0.0 * p, dt)
        check_balance(
            c * (t1 - state.temp_c),
            (ua * (t_out - t_avg) + gains + heat) * dt,
            self.KIND,
            c * np.abs(t1 - state.temp_c) + np.abs(heat) * dt,
        )
        discomfort = thermal.discomfort_kh(
            t1, params.setpoint_c - params.range_low, params.setpoint_c + params.range_high, dt
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
            heat_kwh=heat * dt,
            discomfort_kh=discomfort,
            comfort_dev_kh=thermal.deviation_kh(state.temp_c, c, ua, t_eq, params.setpoint_c, dt),
            setpoint_c=setpoint,
            stored_kwh=s * c * (t1 - params.setpoint_c) / cop,
        )

    def uncontrolled(
        self, params: HVACParams, state: HVACState, ctx: Context, net_kw: FloatArray | None
    ) -> FloatArray:
        """A thermostat holding the preferred setpoint with a deadband (hysteresis): see
        :func:`transactive.der.thermal.thermostat_heat_kw`."""
        s = mode(params, ctx)
        cop = np.where(s > 0, params.cop_heat, params.cop_cool)
        t_ref = ctx.weather.temp_air + _gains(params, ctx) / params.ua_kw_per_k
        heat = thermal.thermostat_heat_kw(
            state.temp_c,
            state.on,
            params.setpoint_c,
            params.deadband_c,
            s,
            params.c_kwh_per_k,
            params.ua_kw_per_k,
            t_ref,
            rated_kw(params, ctx) * cop,
            ctx.dt_h,
        )
        out: FloatArray = heat / cop
        return out
