"""EV charging fleet: daily plug-in sessions drawn from distributions, urgency bidding.

Sessions: every EV plugs in once a (local) day. For day ``d`` the arrival hour is
``N(arrival_hour, arrival_sd)``, the dwell time ``N(dwell_h, dwell_sd)`` (clipped to
1…23.5 h) and the energy need (kWh into the battery) log-normal with median
``daily_kwh`` and log-sd ``energy_sigma``, capped at ``battery_kwh``. Sessions are drawn
from a counter-based stream ``default_rng([seed, d])`` so the physics stays a pure
function of ``(params, state, time)`` and the same seed gives the same sessions. A session
arriving before the previous one leaves is moved to the next day. "Local" is the region's
clock (the context's ``utc_offset_h``, daylight saving included): the sessions drawn at a
time take that time's offset.

Time is quantised to market intervals: an EV charges in an interval only if it is plugged
in for all of it (``arrival ≤ start`` and ``start + dt ≤ departure``). Energy still missing
when the session ends is counted as ``unmet_kwh`` in the step of the interval that
contains the departure.

Bidding (urgency): with ``m`` whole intervals left, charger limit ``P`` (kW, AC) and
charging efficiency ``η``, the urgency is ``u = E_needed / (η·P·m·dt)``. The EV bids

* ``q_must = max(0, (E_needed − η·P·(m−1)·dt) / (η·dt))`` at every price (must-run: what
  cannot wait if the need is to be met by departure), and
* up to ``q_max = min(P, E_needed/(η·dt))`` at prices ≤ ``mean + σ·Φ⁻¹(u)`` (the
  ``u``-quantile of the price forecast), which rises with urgency and reaches the cap at
  ``u = 1``.

So every EV whose need fits into its plugged-in intervals is fully charged by departure
whenever the clearing price stays at or below the cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves, curves_from_arrays
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    check_balance,
    choice,
    const,
    normal,
    report,
    urgency_price,
)
from transactive.der.params import DeviceConfig, Param
from transactive.errors import BalanceError


@dataclass(frozen=True, slots=True)
class EVParams:
    """Per-vehicle parameter arrays (units as in :attr:`EV.PARAMS`); ``seed`` keys the
    sessions."""

    charger_kw: FloatArray
    efficiency: FloatArray
    battery_kwh: FloatArray
    arrival_hour: FloatArray
    arrival_sd: FloatArray
    dwell_h: FloatArray
    dwell_sd: FloatArray
    daily_kwh: FloatArray
    energy_sigma: FloatArray
    seed: int

    @property
    def n(self) -> int:
        return int(self.charger_kw.size)


@dataclass(frozen=True, slots=True)
class EVState:
    """The current (or next) session per vehicle, times in hours since the Unix epoch (UTC).

    arrival_h, departure_h: NaN before the first session is drawn; need_kwh: energy still
    needed (battery side); session_kwh: the session's initial need.
    """

    arrival_h: FloatArray
    departure_h: FloatArray
    need_kwh: FloatArray
    session_kwh: FloatArray


# --- sessions ------------------------------------------------------------------------------


def _draw_day(
    params: EVParams, day: int, idx: np.ndarray, utc_offset_h: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sessions of local day ``day`` (local clock UTC + ``utc_offset_h``) for vehicles
    ``idx``: arrival, departure (h since epoch, UTC) and need (kWh)."""
    z = np.random.default_rng([params.seed, day + 10**6]).standard_normal((3, params.n))[:, idx]
    arr = day * 24.0 - utc_offset_h + params.arrival_hour[idx] + params.arrival_sd[idx] * z[0]
    dwell = np.clip(params.dwell_h[idx] + params.dwell_sd[idx] * z[1], 1.0, 23.5)
    need = np.minimum(
        params.daily_kwh[idx] * np.exp(params.energy_sigma[idx] * z[2]), params.battery_kwh[idx]
    )
    return arr, arr + dwell, need


def roll(params: EVParams, state: EVState, t_h: float, utc_offset_h: float) -> EVState:
    """The state with every finished session (departure before ``t_h``, UTC) replaced by the
    vehicle's next session, its local day on the clock UTC + ``utc_offset_h`` (h). Pure;
    loops over (few) distinct days, not vehicles."""
    dep = state.departure_h
    first = np.isnan(dep)
    todo = first | (dep < t_h)
    if not todo.any():
        return state
    arr_o, dep_o = state.arrival_h.copy(), dep.copy()
    need_o, sess_o = state.need_kwh.copy(), state.session_kwh.copy()
    after = np.where(first, t_h - 48.0, dep)  # the next session arrives after this time
    idx = np.flatnonzero(todo)
    day = np.floor((after[idx] + utc_offset_h) / 24.0).astype(np.int64)
    for _ in range(8):  # few passes: day d, then d+1 where needed
        if idx.size == 0:
            break
        keep_idx, keep_day = [], []
        for d in np.unique(day):
            sel = idx[day == d]
            a, b, e = _draw_day(params, int(d), sel, utc_offset_h)
            a = np.where(first[sel], np.maximum(a, t_h), a)  # first session: from now on
            ok = (a >= after[sel]) & (b >= t_h) & (b > a)
            arr_o[sel[ok]], dep_o[sel[ok]] = a[ok], b[ok]
            need_o[sel[ok]] = sess_o[sel[ok]] = e[ok]
            keep_idx.append(sel[~ok])
            keep_day.append(np.full((~ok).sum(), d + 1, dtype=np.int64))
        idx = np.concatenate(keep_idx)
        day = np.concatenate(keep_day)
    if idx.size:
        raise BalanceError(f"ev: could not draw a next session for {idx.size} vehicles")
    return EVState(arr_o, dep_o, need_o, sess_o)


def _window(params: EVParams, s: EVState, ctx: Context) -> tuple[np.ndarray, FloatArray]:
    """(plugged in for the whole interval, whole intervals left before departure)."""
    t, dt = ctx.t_h, ctx.dt_h
    plugged = (s.arrival_h <= t + 1e-9) & (s.departure_h >= t + dt - 1e-9)
    m = np.where(plugged, np.floor((s.departure_h - t) / dt + 1e-9), 0.0)
    return plugged, m


def chargeable_kwh(params: EVParams, state: EVState, dt_h: float) -> FloatArray:
    """Most energy (kWh, battery side) each session can take over its whole intervals of
    length ``dt_h`` (the market intervals are on the ``dt_h`` grid from the epoch)."""
    first = np.ceil(state.arrival_h / dt_h - 1e-9) * dt_h
    m = np.maximum(np.floor((state.departure_h - first) / dt_h + 1e-9), 0.0)
    out: FloatArray = m * dt_h * params.charger_kw * params.efficiency
    return out


def _levels(
    params: EVParams, s: EVState, ctx: Context
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(q_max, q_must, urgency) for the interval, kW."""
    plugged, m = _window(params, s, ctx)
    dt, eta, pw = ctx.dt_h, params.efficiency, params.charger_kw
    q_max = np.where(plugged, np.minimum(pw, s.need_kwh / (eta * dt)), 0.0)
    must = (s.need_kwh - eta * pw * np.maximum(m - 1.0, 0.0) * dt) / (eta * dt)
    q_must = np.clip(must, 0.0, q_max)
    cap = eta * pw * np.maximum(m, 1.0) * dt
    urgency = np.where(plugged, s.need_kwh / cap, 0.0)
    return q_max, q_must, urgency


class EV(DeviceType[EVParams, EVState]):
    """EV chargers with daily sessions and urgency bidding (see the module docstring)."""

    KIND = "ev"
    PARAMS = (
        Param(
            "charger_kw",
            "kW",
            choice((3.6, 7.2, 11.0), (0.3, 0.5, 0.2)),
            "(0, inf)",
            "charger limit (AC)",
        ),
        Param("efficiency", "1", const(0.92), "(0, 1]", "charging efficiency (AC → battery)"),
        Param(
            "battery_kwh",
            "kWh",
            normal(60.0, 15.0, 20.0, 100.0),
            "(0, inf)",
            "battery size (caps a session's need)",
        ),
        Param(
            "arrival_hour",
            "h",
            normal(18.0, 1.5, 12.0, 23.0),
            "(-inf, inf)",
            "mean local plug-in hour",
        ),
        Param(
            "arrival_sd",
            "h",
            const(1.0),
            "[0, inf)",
            "day-to-day standard deviation of the arrival",
        ),
        Param("dwell_h", "h", normal(13.0, 1.5, 4.0, 20.0), "(0, inf)", "mean plugged-in time"),
        Param(
            "dwell_sd",
            "h",
            const(1.0),
            "[0, inf)",
            "day-to-day standard deviation of the dwell time",
        ),
        Param(
            "daily_kwh",
            "kWh",
            normal(10.0, 3.0, 2.0, 30.0),
            "[0, inf)",
            "median energy need per session (battery side)",
        ),
        Param("energy_sigma", "1", const(0.4), "[0, inf)", "log-standard deviation of the need"),
    )

    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> EVParams:
        """Parameters plus the seed of the vehicles' session stream (drawn from ``rng``)."""
        seed = int(rng.integers(0, 2**62))
        return EVParams(seed=seed, **{p.name: values[p.name] for p in self.PARAMS})

    def initial_state(
        self, params: EVParams, config: DeviceConfig, rng: np.random.Generator
    ) -> EVState:
        """No session yet: the first one is drawn at the first interval seen."""
        nan = np.full(params.n, np.nan)
        return EVState(nan, nan.copy(), np.zeros(params.n), np.zeros(params.n))

    def limits(
        self, params: EVParams, state: EVState, ctx: Context
    ) -> tuple[FloatArray, FloatArray]:
        """``[0, q_max]``: charging is possible only while plugged in and energy is needed."""
        s = roll(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, _, _ = _levels(params, s, ctx)
        return np.zeros(params.n), q_max

    def bid(self, params: EVParams, state: EVState, ctx: Context) -> Curves:
        """Must-run part at any price, the rest up to the urgency price (2 points per EV)."""
        s = roll(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, q_must, u = _levels(params, s, ctx)
        p = urgency_price(u, ctx)
        return curves_from_arrays(np.column_stack([p, p]), np.column_stack([q_max, q_must]))

    def run(
        self,
        params: EVParams,
        state: EVState,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[EVState, EnergyReport]:
        """Charge at the award (clipped to ``[0, q_max]``) for the interval.

        Reports ``charged_kwh`` (battery side), ``unmet_kwh`` (need left at a departure
        inside this interval, > 0 whenever the award — a binding service or node limit —
        left the session short), ``departed`` (1 where a session ended), ``need_kwh`` after
        the step and ``stored_kwh``: the energy charged into the current session so far
        (battery side, ``session − need``) at the end of the interval. While plugged in it
        is what the grid has put into the car; in the interval of the departure it is what
        the car left with; between sessions it is 0 (the energy left with the driver and
        is used driving, it is no longer stored for the grid). The EV model tracks the
        energy a session needs, not the battery's absolute charge, so this is the part of
        the car's energy the run bought: its end state can be valued against the start
        (0: no session yet).
        """
        s = roll(params, state, ctx.t_h, ctx.utc_offset_h)
        q_max, _, _ = _levels(params, s, ctx)
        p = np.clip(award, 0.0, q_max)
        dt = ctx.dt_h
        charged = params.efficiency * p * dt
        need = s.need_kwh - charged
        check_balance(s.need_kwh - need, params.efficiency * p * dt, self.KIND, s.session_kwh)
        if np.any(need < -1e-9 * (1.0 + s.session_kwh)):
            raise BalanceError("ev: delivered more energy than the session needed")
        need = np.maximum(need, 0.0)
        t = ctx.t_h
        departed = (s.departure_h >= t) & (s.departure_h < t + dt)
        unmet = np.where(departed, need, 0.0)
        new = EVState(s.arrival_h, s.departure_h, need, s.session_kwh)
        return new, report(
            p,
            award,
            dt,
            charged_kwh=charged,
            unmet_kwh=unmet,
            departed=departed.astype(np.float64),
            need_kwh=need,
            stored_kwh=s.session_kwh - need,
        )

    def uncontrolled(
        self, params: EVParams, state: EVState, ctx: Context, net_kw: FloatArray | None
    ) -> FloatArray:
        """Charge at full charger power from plug-in until the session's need is met."""
        return self.limits(params, state, ctx)[1]
