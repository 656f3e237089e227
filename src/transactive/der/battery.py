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

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, curves_from_arrays, quantity_at
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    check,
    check_balance,
    const,
    report,
    uniform,
)
from transactive.der.params import DeviceConfig, Param
from transactive.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """Per-battery parameter arrays (units as in :attr:`Battery.PARAMS`); ``charge_kw`` and
    ``discharge_kw`` are both the ``power_kw`` parameter."""

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


def _curves(p_c: FloatArray, p_d: FloatArray, p_min: FloatArray, p_max: FloatArray) -> Curves:
    """Buy ``p_max`` at ≤ ``p_c``, sell ``−p_min`` at ≥ ``p_d`` (4 points per battery)."""
    zero = np.zeros(p_c.size)
    return curves_from_arrays(
        np.column_stack([p_c, p_c, p_d, p_d]), np.column_stack([p_max, zero, zero, p_min])
    )


def next_soc(params: BatteryParams, soc: FloatArray, p: FloatArray, dt: float) -> FloatArray:
    """SoC after ``dt`` hours at AC power ``p`` (kW, + charging), before clipping."""
    de = np.where(p >= 0, params.eta_charge * p * dt, p * dt / params.eta_discharge)
    out: FloatArray = soc + de / params.capacity_kwh
    return out


class Battery(DeviceType[BatteryParams, BatteryState]):
    """Home or aggregated batteries (see the module docstring)."""

    KIND = "battery"
    PARAMS = (
        Param("capacity_kwh", "kWh", uniform(5.0, 15.0), "(0, inf)", "usable energy capacity"),
        Param("power_kw", "kW", uniform(3.0, 7.0), "[0, inf)", "charge and discharge limit (AC)"),
        Param("eta_charge", "1", const(0.95), "(0, 1]", "one-way charging efficiency"),
        Param("eta_discharge", "1", const(0.95), "(0, 1]", "one-way discharging efficiency"),
        Param("soc_min", "1", const(0.1), "[0, 1]", "lowest state of charge (fraction)"),
        Param("soc_max", "1", const(0.95), "[0, 1]", "highest state of charge (fraction)"),
        Param("soc0", "1", uniform(0.3, 0.7), "[0, 1]", "initial state of charge (fraction)"),
        Param(
            "degradation_cost", "$/kWh", uniform(0.01, 0.03), "[0, inf)", "cost of cell throughput"
        ),
        Param(
            "charge_quantile", "1", uniform(0.2, 0.4), "[0, 1]", "forecast quantile to buy below"
        ),
        Param(
            "discharge_quantile",
            "1",
            uniform(0.6, 0.8),
            "[0, 1]",
            "forecast quantile to sell above",
        ),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> BatteryParams:
        """Parameters (``soc0`` goes to the initial state)."""
        v = values
        check(v["soc_min"] <= v["soc_max"], self.KIND, "soc_min", "≤ soc_max", v["soc_min"])
        check(
            v["charge_quantile"] <= v["discharge_quantile"],
            self.KIND,
            "charge_quantile",
            "≤ discharge_quantile",
            v["charge_quantile"],
        )
        return BatteryParams(
            capacity_kwh=v["capacity_kwh"],
            charge_kw=v["power_kw"],
            discharge_kw=v["power_kw"].copy(),
            eta_charge=v["eta_charge"],
            eta_discharge=v["eta_discharge"],
            soc_min=v["soc_min"],
            soc_max=v["soc_max"],
            degradation_cost=v["degradation_cost"],
            charge_quantile=v["charge_quantile"],
            discharge_quantile=v["discharge_quantile"],
        )

    def initial_state(
        self, params: BatteryParams, config: DeviceConfig, rng: np.random.Generator
    ) -> BatteryState:
        """Initial SoC drawn from ``config["soc0"]`` and clipped into ``[soc_min, soc_max]``."""
        soc = config["soc0"].sample(rng, params.n, f"{self.KIND} parameter 'soc0'")
        self.param("soc0").check(soc, self.KIND)
        return BatteryState(np.clip(soc, params.soc_min, params.soc_max))

    def limits(
        self, params: BatteryParams, state: BatteryState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """See :func:`limits`."""
        return limits(params, state, ctx)

    def bid(self, params: BatteryParams, state: BatteryState, ctx: Context) -> Curves:
        """Buy the charge limit at ≤ ``p_c``, sell the discharge limit at ≥ ``p_d``."""
        p_min, p_max = limits(params, state, ctx)
        return _curves(*thresholds(params, ctx.price_forecast), p_min, p_max)

    def bid_horizon(self, params: BatteryParams, state: BatteryState, ctx: Context) -> list[Curves]:
        """One curve per interval of the forecast horizon, for a forward (e.g. day-ahead)
        market.

        The SoC is projected along the horizon assuming each interval clears at its forecast
        price (each interval's curve read at its forecast price); each interval's curve
        uses the limits of the projected SoC. Loops over the horizon, vectorised over
        devices.
        """
        f = ctx.price_forecast
        p_c, p_d = thresholds(params, f)
        soc = state.soc.copy()
        out: list[Curves] = []
        for price in f:
            c = _curves(p_c, p_d, *limits(params, BatteryState(soc), ctx))
            out.append(c)
            soc = next_soc(params, soc, quantity_at(c, price), ctx.dt_h)
        return out

    def run(
        self,
        params: BatteryParams,
        state: BatteryState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[BatteryState, EnergyReport]:
        """Charge (+) or discharge (−) at the award for the interval.

        An award outside the SoC/power limits is clipped to them and the difference reported
        as deviation. Reports ``charge_kwh``, ``discharge_kwh``, ``throughput_kwh`` (cells),
        ``degradation_cost`` ($), ``soc`` and ``stored_kwh`` (energy in the cells at the end
        of the interval, ``soc · capacity_kwh``, so an end state can be valued against the
        start).
        """
        lo, hi = limits(params, state, ctx)
        p = np.clip(award, lo, hi)
        dt = ctx.dt_h
        soc1 = np.clip(self.next_soc(params, state.soc, p, dt), params.soc_min, params.soc_max)
        e_c = np.maximum(p, 0.0) * dt
        e_d = np.maximum(-p, 0.0) * dt
        stored = (soc1 - state.soc) * params.capacity_kwh
        check_balance(
            stored,
            params.eta_charge * e_c - e_d / params.eta_discharge,
            self.KIND,
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
            stored_kwh=soc1 * params.capacity_kwh,
        )

    #: The SoC update used by :meth:`run` (an attribute so a test can break the physics).
    next_soc = staticmethod(next_soc)

    def uncontrolled(
        self,
        params: BatteryParams,
        state: BatteryState,
        ctx: Context,
        net_kw: FloatArray | None,
    ) -> FloatArray:
        """Self-consumption behind the meter: charge from the home's surplus (``net_kw`` < 0),
        discharge to cover its load (``net_kw`` > 0), within the power and SoC limits — so
        the battery never exports to the grid and never imports to charge."""
        if net_kw is None:
            raise InvalidInputError(
                "battery: the uncontrolled (self-consumption) mode needs net_kw, the rest of "
                "each battery's home net load (kW, + import)"
            )
        lo, hi = limits(params, state, ctx)
        out: FloatArray = np.clip(-net_kw, lo, hi)
        return out
