"""Flexible loads: shiftable (run window + duration, e.g. dishwasher) and curtailable (value
of lost load).

**Shiftable** (:class:`Shiftable`, kind ``"shiftable"``): one job a (local) day of
``duration_h`` hours at ``power_kw`` that must run inside the window
``[window_start_h, window_end_h)`` local time (the end may pass midnight, up to 48 h).
Time is quantised to market intervals: the job runs only in intervals fully inside the
window. Once started it cannot be interrupted: while started and unfinished its power is
fixed (``limits`` is a single point; an award below it is a reported deviation). Before it
starts it bids like an EV (:func:`transactive.der.base.urgency_price`): the power that must
run now to finish by the window end at every price, the rest up to the urgency price.
Energy not delivered by the window end is ``unmet_kwh``.

**Curtailable** (:class:`Curtailable`, kind ``"curtailable"``): a load of ``demand_kw``
active between ``on_start_h`` and ``on_end_h`` local time, which buys its demand at any
price up to its value of lost load ``voll`` ($/kWh). Whatever is not served is
``curtailed_kwh`` and valued at ``voll`` (``lost_value``, $).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, block_curves, curves_from_arrays
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    check,
    check_balance,
    lognormal,
    report,
    uniform,
    urgency_price,
)
from transactive.der.params import DeviceConfig, Param

# --- shiftable -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftableParams:
    """Per-appliance arrays (units as in :attr:`Shiftable.PARAMS`)."""

    power_kw: FloatArray
    duration_h: FloatArray
    window_start_h: FloatArray
    window_end_h: FloatArray

    @property
    def n(self) -> int:
        return int(self.power_kw.size)

    @property
    def job_kwh(self) -> FloatArray:
        """Energy of one job, kWh."""
        out: FloatArray = self.power_kw * self.duration_h
        return out


@dataclass(frozen=True, slots=True)
class ShiftableState:
    """The current (or next) job: window in hours since the epoch (UTC; NaN before the first
    job), remaining energy (kWh) and whether it has started."""

    start_h: FloatArray
    end_h: FloatArray
    remaining_kwh: FloatArray
    started: np.ndarray


def roll_jobs(
    params: ShiftableParams, state: ShiftableState, t_h: float, utc_offset_h: float
) -> ShiftableState:
    """Replace every job whose window ended before ``t_h`` (UTC) by the next day's job, its
    window on the local clock UTC + ``utc_offset_h`` (h) (pure)."""
    first = np.isnan(state.end_h)
    todo = first | (state.end_h < t_h)
    if not todo.any():
        return state
    tz = utc_offset_h
    # The first window that ends after t_h: the one opening on local day d−1 or d.
    d = np.floor((t_h + tz) / 24.0)
    start = (d - 1) * 24.0 - tz + params.window_start_h
    end = (d - 1) * 24.0 - tz + params.window_end_h
    late = end < t_h
    start = np.where(late, start + 24.0, start)
    end = np.where(late, end + 24.0, end)
    # A previous job's window may overlap the next one only if it ended before t_h.
    return ShiftableState(
        np.where(todo, start, state.start_h),
        np.where(todo, end, state.end_h),
        np.where(todo, params.job_kwh, state.remaining_kwh),
        np.where(todo, False, state.started),
    )


def _shift_levels(
    params: ShiftableParams, s: ShiftableState, ctx: Context
) -> tuple[FloatArray, FloatArray, FloatArray, np.ndarray]:
    """(q_max, q_must, urgency, running) for the interval, kW."""
    t, dt = ctx.t_h, ctx.dt_h
    inside = (s.start_h <= t + 1e-9) & (s.end_h >= t + dt - 1e-9)
    m = np.where(inside, np.floor((s.end_h - t) / dt + 1e-9), 0.0)
    q_max = np.where(inside, np.minimum(params.power_kw, s.remaining_kwh / dt), 0.0)
    running = s.started & (s.remaining_kwh > 1e-12) & inside
    must = (s.remaining_kwh - params.power_kw * np.maximum(m - 1.0, 0.0) * dt) / dt
    q_must = np.where(running, q_max, np.clip(must, 0.0, q_max))
    urgency = np.where(
        running,
        1.0,
        np.where(inside, s.remaining_kwh / (params.power_kw * np.maximum(m, 1) * dt), 0.0),
    )
    return q_max, q_must, urgency, running


class Shiftable(DeviceType[ShiftableParams, ShiftableState]):
    """Shiftable appliances: one uninterruptible job a day inside a window."""

    KIND = "shiftable"
    PARAMS = (
        Param("power_kw", "kW", uniform(1.0, 2.0), "(0, inf)", "running power"),
        Param("duration_h", "h", uniform(1.0, 2.5), "(0, inf)", "run time of a job"),
        Param(
            "window_start_h",
            "h",
            uniform(18.0, 21.0),
            "[0, 24)",
            "local hour the daily window opens",
        ),
        Param(
            "window_end_h",
            "h",
            uniform(30.0, 31.0),
            "(-inf, inf)",
            "local hour it closes (may exceed 24, at most 24 h after the start)",
        ),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> ShiftableParams:
        """Parameters; the window must hold the job and be at most a day long."""
        p = ShiftableParams(**values)
        width = p.window_end_h - p.window_start_h
        check(
            width >= p.duration_h,
            self.KIND,
            "window_end_h",
            "≥ window_start_h + duration_h",
            p.window_end_h,
        )
        check(width <= 24, self.KIND, "window_end_h", "at most 24 h after window_start_h", width)
        return p

    def initial_state(
        self, params: ShiftableParams, config: DeviceConfig, rng: np.random.Generator
    ) -> ShiftableState:
        """No job yet: the first one is set at the first interval seen."""
        nan = np.full(params.n, np.nan)
        return ShiftableState(nan, nan.copy(), np.zeros(params.n), np.zeros(params.n, dtype=bool))

    def limits(
        self, params: ShiftableParams, state: ShiftableState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """``[0, q_max]`` before the job starts, the single point ``q_max`` while it runs."""
        s = roll_jobs(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, _, _, running = _shift_levels(params, s, ctx)
        return np.where(running, q_max, 0.0), q_max

    def bid(self, params: ShiftableParams, state: ShiftableState, ctx: Context) -> Curves:
        """Must-run part at any price, the rest up to the urgency price (2 points each)."""
        s = roll_jobs(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, q_must, u, _ = _shift_levels(params, s, ctx)
        p = urgency_price(u, ctx)
        return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))

    def run(
        self,
        params: ShiftableParams,
        state: ShiftableState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[ShiftableState, EnergyReport]:
        """Run at the award (within limits). Reports ``unmet_kwh`` (energy left when the
        window ends, in the step of the interval containing the window end),
        ``remaining_kwh`` and ``started``."""
        s = roll_jobs(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, _, _, running = _shift_levels(params, s, ctx)
        p = np.clip(award, np.where(running, q_max, 0.0), q_max)
        dt = ctx.dt_h
        remaining = s.remaining_kwh - p * dt
        check_balance(s.remaining_kwh - remaining, p * dt, self.KIND, params.job_kwh)
        remaining = np.maximum(remaining, 0.0)
        started = s.started | (p > 0)
        t = ctx.t_h
        # The window ends inside this interval (which the job cannot use): what is left is
        # unmet.
        ended = (s.end_h >= t) & (s.end_h < t + dt - 1e-9)
        unmet = np.where(ended, remaining, 0.0)
        new = ShiftableState(s.start_h, s.end_h, np.where(ended, 0.0, remaining), started)
        return new, report(
            p, award, dt, unmet_kwh=unmet, remaining_kwh=remaining, started=started.astype(float)
        )

    def uncontrolled(
        self,
        params: ShiftableParams,
        state: ShiftableState,
        ctx: Context,
        net_kw: FloatArray | None,
    ) -> FloatArray:
        """Run at the preferred time: full power from the moment the window opens until the
        job is done."""
        return self.limits(params, state, ctx)[1]


# --- curtailable ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurtailableParams:
    """Per-load arrays (units as in :attr:`Curtailable.PARAMS`)."""

    demand_kw: FloatArray
    voll: FloatArray
    on_start_h: FloatArray
    on_end_h: FloatArray

    @property
    def n(self) -> int:
        return int(self.demand_kw.size)


@dataclass(frozen=True, slots=True)
class CurtailableState:
    """No memory; carries the fleet size."""

    n: int


def demand_kw(params: CurtailableParams, ctx: Context) -> FloatArray:
    """Demand (kW) over the interval: ``demand_kw`` where the interval midpoint is in the
    active hours, else 0."""
    h = np.mod(ctx.t_h + 0.5 * ctx.dt_h + ctx.utc_offset_h - params.on_start_h, 24.0)
    on = h < (params.on_end_h - params.on_start_h)
    out: FloatArray = np.where(on, params.demand_kw, 0.0)
    return out


class Curtailable(DeviceType[CurtailableParams, CurtailableState]):
    """Curtailable loads valued at their value of lost load."""

    KIND = "curtailable"
    PARAMS = (
        Param("demand_kw", "kW", lognormal(0.8, 0.5, 0.1, 5.0), "[0, inf)", "load when active"),
        Param("voll", "$/kWh", uniform(0.1, 1.0), "[0, inf)", "value of lost load"),
        Param(
            "on_start_h",
            "h",
            uniform(6.0, 9.0),
            "(-inf, inf)",
            "local hour the load becomes active",
        ),
        Param(
            "on_end_h",
            "h",
            uniform(20.0, 24.0),
            "(-inf, inf)",
            "local hour it stops (may exceed 24, within 24 h of the start)",
        ),
    )

    def build(
        self, values: Mapping[str, FloatArray], rng: np.random.Generator
    ) -> CurtailableParams:
        """Parameters; the active hours must lie within a day."""
        p = CurtailableParams(**values)
        check(
            (p.on_end_h >= p.on_start_h) & (p.on_end_h - p.on_start_h <= 24),
            self.KIND,
            "on_end_h",
            "within 24 h after on_start_h",
            p.on_end_h,
        )
        return p

    def initial_state(
        self, params: CurtailableParams, config: DeviceConfig, rng: np.random.Generator
    ) -> CurtailableState:
        """The (empty) state."""
        return CurtailableState(params.n)

    def limits(
        self, params: CurtailableParams, state: CurtailableState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """``[0, demand]``."""
        return np.zeros(params.n), demand_kw(params, ctx)

    def bid(self, params: CurtailableParams, state: CurtailableState, ctx: Context) -> Curves:
        """The demand as one block at the value of lost load."""
        return block_curves(params.voll, demand_kw(params, ctx))

    def run(
        self,
        params: CurtailableParams,
        state: CurtailableState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[CurtailableState, EnergyReport]:
        """Serve the award (within demand). Reports ``curtailed_kwh`` and ``lost_value``
        ($)."""
        dem = demand_kw(params, ctx)
        p = np.clip(award, 0.0, dem)
        dt = ctx.dt_h
        curtailed = (dem - p) * dt
        check_balance(dem * dt, p * dt + curtailed, self.KIND, dem * dt)
        return state, report(
            p, award, dt, curtailed_kwh=curtailed, lost_value=curtailed * params.voll
        )

    def uncontrolled(
        self,
        params: CurtailableParams,
        state: CurtailableState,
        ctx: Context,
        net_kw: FloatArray | None,
    ) -> FloatArray:
        """The full demand."""
        return demand_kw(params, ctx)
