"""Flexible loads: shiftable (run window + duration, e.g. dishwasher) and curtailable (value
of lost load).

**Shiftable** (:data:`shiftable` model, type ``"shiftable"``): one job a (local) day of
``duration_h`` hours at ``power_kw`` that must run inside the window
``[window_start_h, window_end_h)`` local time (the end may pass midnight, up to 48 h).
Time is quantised to market intervals: the job runs only in intervals fully inside the
window. Once started it cannot be interrupted: while started and unfinished its power is
fixed (``limits`` is a single point; an award below it is a reported deviation). Before it
starts it bids like an EV (:func:`transactive.der.base.urgency_price`): the power that must
run now to finish by the window end at every price, the rest up to the urgency price.
Energy not delivered by the window end is ``unmet_kwh``.

**Curtailable** (:data:`curtailable` model, type ``"curtailable"``): a load of ``demand_kw``
active between ``on_start_h`` and ``on_end_h`` local time, which buys its demand at any
price up to its value of lost load ``voll`` ($/kWh). Whatever is not served is
``curtailed_kwh`` and valued at ``voll`` (``lost_value``, $).
"""


# Config defaults are frozen (immutable) Dist values, safe as dataclass defaults.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, block_curves, curves_from_arrays
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
    report,
    sample_config,
    uniform,
    urgency_price,
)
from transactive.errors import InvalidInputError

SHIFTABLE = "shiftable"
CURTAILABLE = "curtailable"


# --- shiftable -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftableConfig:
    """power_kw: running power, kW; duration_h: run time, h; window_start_h, window_end_h:
    local hours of the daily window (end may exceed 24); tz_offset_h: UTC offset, h."""

    power_kw: Dist = uniform(1.0, 2.0)
    duration_h: Dist = uniform(1.0, 2.5)
    window_start_h: Dist = uniform(18.0, 21.0)
    window_end_h: Dist = uniform(30.0, 31.0)
    tz_offset_h: Dist = const(-5.0)


@dataclass(frozen=True, slots=True)
class ShiftableParams:
    """Per-appliance arrays (see :class:`ShiftableConfig`)."""

    power_kw: FloatArray
    duration_h: FloatArray
    window_start_h: FloatArray
    window_end_h: FloatArray
    tz_offset_h: FloatArray

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


def _sample_shiftable(config: ShiftableConfig, n: int, rng: np.random.Generator) -> ShiftableParams:
    d = {
        k: np.asarray(v, dtype=np.float64)
        for k, v in sample_config(config, n, rng, SHIFTABLE).items()
    }
    p = ShiftableParams(**d)
    check(p.power_kw > 0, SHIFTABLE, "power_kw", "> 0", p.power_kw)
    check(p.duration_h > 0, SHIFTABLE, "duration_h", "> 0", p.duration_h)
    check(
        (p.window_start_h >= 0) & (p.window_start_h < 24),
        SHIFTABLE,
        "window_start_h",
        "in [0, 24)",
        p.window_start_h,
    )
    check(
        p.window_end_h - p.window_start_h >= p.duration_h,
        SHIFTABLE,
        "window_end_h",
        "≥ window_start_h + duration_h",
        p.window_end_h,
    )
    check(
        p.window_end_h - p.window_start_h <= 24,
        SHIFTABLE,
        "window_end_h",
        "at most 24 h after window_start_h",
        p.window_end_h,
    )
    return p


def _initial_shiftable(
    params: ShiftableParams, rng: np.random.Generator | None = None, config: object = None
) -> ShiftableState:
    nan = np.full(params.n, np.nan)
    return ShiftableState(nan, nan.copy(), np.zeros(params.n), np.zeros(params.n, dtype=bool))


def roll_jobs(params: ShiftableParams, state: ShiftableState, t_h: float) -> ShiftableState:
    """Replace every job whose window ended before ``t_h`` by the next day's job (pure)."""
    first = np.isnan(state.end_h)
    todo = first | (state.end_h < t_h)
    if not todo.any():
        return state
    tz = params.tz_offset_h
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


def _shift_limits(
    params: ShiftableParams, state: ShiftableState, ctx: Context
) -> tuple[FloatArray, FloatArray]:
    s = roll_jobs(params, state, ctx.t_h)
    q_max, _, _, running = _shift_levels(params, s, ctx)
    return np.where(running, q_max, 0.0), q_max


def _shift_bid(params: ShiftableParams, state: ShiftableState, ctx: Context) -> Curves:
    s = roll_jobs(params, state, ctx.t_h)
    q_max, q_must, u, _ = _shift_levels(params, s, ctx)
    p = urgency_price(u, ctx)
    return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))


def _shift_step(
    params: ShiftableParams,
    state: ShiftableState,
    power_kw: ArrayLike,
    ctx: Context,
    cleared_price: ArrayLike | None = None,
) -> tuple[ShiftableState, EnergyReport]:
    """Run at the award (within limits). Reports ``unmet_kwh`` (energy left when the window
    ends, in the step of the interval containing the window end), ``remaining_kwh`` and
    ``started``."""
    award = as_vector(power_kw, params.n, "power_kw")
    if not np.all(np.isfinite(award)):
        raise InvalidInputError("power_kw must be finite")
    s = roll_jobs(params, state, ctx.t_h)
    q_max, _, _, running = _shift_levels(params, s, ctx)
    p = np.clip(award, np.where(running, q_max, 0.0), q_max)
    dt = ctx.dt_h
    remaining = s.remaining_kwh - p * dt
    check_balance(s.remaining_kwh - remaining, p * dt, SHIFTABLE, params.job_kwh)
    remaining = np.maximum(remaining, 0.0)
    started = s.started | (p > 0)
    t = ctx.t_h
    # The window ends inside this interval (which the job cannot use): what is left is unmet.
    ended = (s.end_h >= t) & (s.end_h < t + dt - 1e-9)
    unmet = np.where(ended, remaining, 0.0)
    new = ShiftableState(s.start_h, s.end_h, np.where(ended, 0.0, remaining), started)
    return new, report(
        p, award, dt, unmet_kwh=unmet, remaining_kwh=remaining, started=started.astype(float)
    )


shiftable = SimpleNamespace(
    NAME=SHIFTABLE,
    sample=_sample_shiftable,
    initial_state=_initial_shiftable,
    limits=_shift_limits,
    bid=_shift_bid,
    step=_shift_step,
)
"""The shiftable-load model (same function set as the device modules)."""


# --- curtailable ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurtailableConfig:
    """demand_kw: load when active, kW; voll: value of lost load, $/kWh; on_start_h,
    on_end_h: daily active hours, local time (end may exceed 24); tz_offset_h: UTC offset."""

    demand_kw: Dist = lognormal(0.8, 0.5, 0.1, 5.0)
    voll: Dist = uniform(0.1, 1.0)
    on_start_h: Dist = uniform(6.0, 9.0)
    on_end_h: Dist = uniform(20.0, 24.0)
    tz_offset_h: Dist = const(-5.0)


@dataclass(frozen=True, slots=True)
class CurtailableParams:
    """Per-load arrays (see :class:`CurtailableConfig`)."""

    demand_kw: FloatArray
    voll: FloatArray
    on_start_h: FloatArray
    on_end_h: FloatArray
    tz_offset_h: FloatArray

    @property
    def n(self) -> int:
        return int(self.demand_kw.size)


@dataclass(frozen=True, slots=True)
class CurtailableState:
    """No memory; carries the fleet size."""

    n: int


def _sample_curtailable(
    config: CurtailableConfig, n: int, rng: np.random.Generator
) -> CurtailableParams:
    d = {
        k: np.asarray(v, dtype=np.float64)
        for k, v in sample_config(config, n, rng, CURTAILABLE).items()
    }
    p = CurtailableParams(**d)
    check(p.demand_kw >= 0, CURTAILABLE, "demand_kw", "≥ 0", p.demand_kw)
    check(p.voll >= 0, CURTAILABLE, "voll", "≥ 0", p.voll)
    check(
        (p.on_end_h >= p.on_start_h) & (p.on_end_h - p.on_start_h <= 24),
        CURTAILABLE,
        "on_end_h",
        "within 24 h after on_start_h",
        p.on_end_h,
    )
    return p


def _initial_curtailable(
    params: CurtailableParams, rng: np.random.Generator | None = None, config: object = None
) -> CurtailableState:
    return CurtailableState(params.n)


def demand_kw(params: CurtailableParams, ctx: Context) -> FloatArray:
    """Demand (kW) over the interval: ``demand_kw`` where the interval midpoint is in the
    active hours, else 0."""
    h = np.mod(ctx.t_h + 0.5 * ctx.dt_h + params.tz_offset_h - params.on_start_h, 24.0)
    on = h < (params.on_end_h - params.on_start_h)
    out: FloatArray = np.where(on, params.demand_kw, 0.0)
    return out


def _curt_limits(
    params: CurtailableParams, state: CurtailableState, ctx: Context
) -> tuple[FloatArray, FloatArray]:
    return np.zeros(params.n), demand_kw(params, ctx)


def _curt_bid(params: CurtailableParams, state: CurtailableState, ctx: Context) -> Curves:
    return block_curves(params.voll, demand_kw(params, ctx))


def _curt_step(
    params: CurtailableParams,
    state: CurtailableState,
    power_kw: ArrayLike,
    ctx: Context,
    cleared_price: ArrayLike | None = None,
) -> tuple[CurtailableState, EnergyReport]:
    """Serve the award (within demand). Reports ``curtailed_kwh`` and ``lost_value`` ($)."""
    award = as_vector(power_kw, params.n, "power_kw")
    if not np.all(np.isfinite(award)):
        raise InvalidInputError("power_kw must be finite")
    dem = demand_kw(params, ctx)
    p = np.clip(award, 0.0, dem)
    dt = ctx.dt_h
    curtailed = (dem - p) * dt
    check_balance(dem * dt, p * dt + curtailed, CURTAILABLE, dem * dt)
    return state, report(p, award, dt, curtailed_kwh=curtailed, lost_value=curtailed * params.voll)


curtailable = SimpleNamespace(
    NAME=CURTAILABLE,
    sample=_sample_curtailable,
    initial_state=_initial_curtailable,
    limits=_curt_limits,
    bid=_curt_bid,
    step=_curt_step,
)
"""The curtailable-load model (same function set as the device modules)."""
