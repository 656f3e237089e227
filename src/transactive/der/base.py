"""The common fleet protocol: market context, energy report, response to an award, and the
parameter distributions fleets are drawn from.

Every device type is a module (``pv``, ``battery``, ``ev``, ``hvac``, ``water_heater``,
``flexible``, ``household``) holding ``N`` devices as arrays:

* ``Params`` — a frozen dataclass of per-device parameter arrays (never changes);
* ``State`` — a frozen dataclass of per-device state arrays (replaced, never mutated);
* ``sample(config, n, rng) -> Params`` and ``initial_state(params, rng) -> State``;
* ``limits(params, state, ctx) -> (p_min, p_max)`` — the feasible power (kW, + consumption,
  − production) over the next interval;
* ``bid(params, state, ctx) -> Curves`` — one non-increasing bid curve per device;
* ``step(params, state, power_kw, ctx, cleared_price=None) -> (State, EnergyReport)`` — the
  physics over the interval at the given (awarded) power.

:func:`respond` turns a clearing price or a dispatched quantity into the power each device
runs at; it is the same for every type (read the curve, clip to the device limits), so the
award is honoured exactly whenever it lies inside the device's limits.

Units: power kW (+ buy/consume, − sell/produce), energy kWh, price $/kWh, time UTC, hours
for durations, temperatures °C.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import Curves, quantity_at
from transactive.errors import InvalidInputError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: Relative tolerance of the energy-balance checks.
BALANCE_RTOL = 1e-9


# --- market context ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeatherSample:
    """Weather over one market interval (scalars shared by the fleet, one site).

    ghi, dni, dhi: W/m²; temp_air: °C; wind_speed: m/s; solar_zenith, solar_azimuth: degrees
    (apparent zenith, azimuth clockwise from north) at the interval midpoint; dni_extra: W/m².
    """

    ghi: float = 0.0
    dni: float = 0.0
    dhi: float = 0.0
    temp_air: float = 20.0
    wind_speed: float = 1.0
    solar_zenith: float = 90.0
    solar_azimuth: float = 180.0
    dni_extra: float = 1361.0


@dataclass(frozen=True, slots=True)
class Context:
    """What a fleet knows when it bids for, responds in and steps over one market interval.

    start: interval start (UTC); dt_h: interval length in hours.
    price_forecast: expected clearing prices ($/kWh) of this and the following intervals
        (at least one value); mean and standard deviation default to its statistics.
    price_mean, price_std: $/kWh, the statistics the ramp bidders use (PNNL TESP style).
    floor, cap: price floor and cap of the market, $/kWh.
    weather: the weather over the interval.
    voltage_pu: voltage at each device's bus (per unit, scalar or one per device), from the
        last power flow; used by the smart-inverter functions.
    """

    start: pd.Timestamp
    dt_h: float
    price_forecast: FloatArray
    price_mean: float
    price_std: float
    floor: float = 0.0
    cap: float = 1.0
    weather: WeatherSample = field(default_factory=WeatherSample)
    voltage_pu: FloatArray | float = 1.0

    @property
    def t_h(self) -> float:
        """Interval start in hours since the Unix epoch (UTC)."""
        return float(pd.Timestamp(self.start).value) / 3.6e12


def make_context(
    start: pd.Timestamp | str,
    dt_h: float,
    price_forecast: ArrayLike,
    *,
    floor: float = 0.0,
    cap: float = 1.0,
    weather: WeatherSample | None = None,
    voltage_pu: ArrayLike = 1.0,
    price_mean: float | None = None,
    price_std: float | None = None,
) -> Context:
    """A :class:`Context`, validated. ``price_forecast`` in $/kWh, first value = this interval.

    The standard deviation used by ramp bidders is never below 1 % of ``cap − floor`` so a
    flat forecast still gives a usable ramp.
    """
    ts = pd.Timestamp(start)
    if ts.tzinfo is None:
        raise InvalidInputError("context start has no time zone; give it in UTC")
    if not dt_h > 0:
        raise InvalidInputError(f"dt_h must be > 0 hours, not {dt_h}")
    f = np.atleast_1d(np.asarray(price_forecast, dtype=np.float64))
    if f.size == 0 or not np.all(np.isfinite(f)):
        raise InvalidInputError("price_forecast must be a non-empty array of finite prices")
    if not cap > floor:
        raise InvalidInputError(f"price cap {cap} must exceed the floor {floor}")
    mean = float(f.mean()) if price_mean is None else float(price_mean)
    std = float(f.std()) if price_std is None else float(price_std)
    std = max(std, 0.01 * (cap - floor))
    v = np.asarray(voltage_pu, dtype=np.float64)
    return Context(
        start=ts.tz_convert("UTC"),
        dt_h=float(dt_h),
        price_forecast=f,
        price_mean=mean,
        price_std=std,
        floor=float(floor),
        cap=float(cap),
        weather=weather if weather is not None else WeatherSample(),
        voltage_pu=float(v) if v.ndim == 0 else v,
    )


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """What the devices did over one interval.

    power_kw: average power actually drawn (+) or produced (−), kW.
    energy_kwh: ``power_kw · dt_h``, kWh.
    deviation_kwh: actual − awarded energy, kWh (0 where the award was feasible).
    extra: type-specific per-device quantities (curtailed_kwh, unmet_kwh, throughput_kwh,
        temperature_c, ...), units in the key name.
    """

    power_kw: FloatArray
    energy_kwh: FloatArray
    deviation_kwh: FloatArray
    extra: Mapping[str, FloatArray] = field(default_factory=dict)


def report(
    actual_kw: FloatArray, awarded_kw: FloatArray, dt_h: float, **extra: FloatArray
) -> EnergyReport:
    """Build an :class:`EnergyReport` from the actual and awarded power (kW)."""
    return EnergyReport(
        power_kw=actual_kw,
        energy_kwh=actual_kw * dt_h,
        deviation_kwh=(actual_kw - awarded_kw) * dt_h,
        extra=extra,
    )


# --- protocol and response -----------------------------------------------------------------


class DeviceModel(Protocol):
    """What a device-type module provides (each ``transactive.der.<type>`` module is one)."""

    NAME: str

    def sample(self, config: Any, n: int, rng: np.random.Generator) -> Any: ...

    def initial_state(self, params: Any, rng: np.random.Generator, config: Any = None) -> Any: ...

    def limits(self, params: Any, state: Any, ctx: Context) -> tuple[FloatArray, FloatArray]: ...

    def bid(self, params: Any, state: Any, ctx: Context) -> Curves: ...

    def step(
        self,
        params: Any,
        state: Any,
        power_kw: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None = None,
    ) -> tuple[Any, EnergyReport]: ...


def respond(
    model: DeviceModel,
    params: Any,
    state: Any,
    ctx: Context,
    curves: Curves,
    *,
    price: ArrayLike | None = None,
    award: ArrayLike | None = None,
    side: Literal["left", "right"] = "right",
) -> FloatArray:
    """Power (kW) each device runs at after clearing.

    Give either the clearing ``price`` ($/kWh, scalar or per device; each device reads its
    own curve, ``side`` choosing the limit at a vertical step) or the dispatched ``award``
    (kW per device, e.g. from :func:`transactive.core.curves.dispatch`). The result is the
    award clipped to the device's feasible range for the interval, so an award within the
    device limits is honoured exactly.
    """
    if (price is None) == (award is None):
        raise InvalidInputError("give exactly one of price or award")
    n = curves.n
    if award is not None:
        q = np.broadcast_to(np.asarray(award, dtype=np.float64), (n,)).copy()
        if not np.all(np.isfinite(q)):
            raise InvalidInputError("award must be finite")
    else:
        q = quantity_at(curves, np.asarray(price, dtype=np.float64), side=side)
    lo, hi = model.limits(params, state, ctx)
    out: FloatArray = np.clip(q, lo, hi)
    return out


# --- parameter distributions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dist:
    """A parameter distribution for fleet sampling.

    kind: ``"const"`` (``a``), ``"uniform"`` (``a``…``b``), ``"normal"`` (mean ``a``, sd
    ``b``), ``"lognormal"`` (median ``a``, log-sd ``b``) or ``"choice"`` (``values`` with
    probabilities ``p``). ``low``/``high`` truncate by clipping.
    """

    kind: Literal["const", "uniform", "normal", "lognormal", "choice"] = "const"
    a: float = 0.0
    b: float = 0.0
    low: float = -np.inf
    high: float = np.inf
    values: tuple[float, ...] = ()
    p: tuple[float, ...] = ()

    def sample(self, rng: np.random.Generator, n: int, name: str = "parameter") -> FloatArray:
        """``n`` draws (float64); ``name`` is used in error messages."""
        if self.kind == "const":
            x = np.full(n, float(self.a))
        elif self.kind == "uniform":
            if not self.b >= self.a:
                raise InvalidInputError(f"{name}: uniform needs a ≤ b, got {self.a}, {self.b}")
            x = rng.uniform(self.a, self.b, n)
        elif self.kind == "normal":
            if not self.b >= 0:
                raise InvalidInputError(f"{name}: normal sd must be ≥ 0, got {self.b}")
            x = rng.normal(self.a, self.b, n)
        elif self.kind == "lognormal":
            if not (self.a > 0 and self.b >= 0):
                raise InvalidInputError(f"{name}: lognormal needs median > 0 and sd ≥ 0")
            x = self.a * np.exp(rng.normal(0.0, self.b, n))
        elif self.kind == "choice":
            vals = np.asarray(self.values, dtype=np.float64)
            if vals.size == 0:
                raise InvalidInputError(f"{name}: choice needs values")
            prob = np.asarray(self.p, dtype=np.float64) if self.p else None
            if prob is not None and (
                prob.size != vals.size or np.any(prob < 0) or abs(prob.sum() - 1) > 1e-9
            ):
                raise InvalidInputError(f"{name}: choice probabilities must be ≥ 0 and sum to 1")
            x = rng.choice(vals, size=n, p=prob)
        else:
            raise InvalidInputError(f"{name}: unknown distribution kind {self.kind!r}")
        if not self.low <= self.high:
            raise InvalidInputError(f"{name}: low {self.low} > high {self.high}")
        out: FloatArray = np.clip(x, self.low, self.high).astype(np.float64)
        return out


def const(v: float) -> Dist:
    """A constant."""
    return Dist("const", v)


def uniform(lo: float, hi: float) -> Dist:
    """Uniform on ``[lo, hi]``."""
    return Dist("uniform", lo, hi)


def normal(mean: float, sd: float, low: float = -np.inf, high: float = np.inf) -> Dist:
    """Normal, clipped to ``[low, high]``."""
    return Dist("normal", mean, sd, low, high)


def lognormal(median: float, sigma: float, low: float = 0.0, high: float = np.inf) -> Dist:
    """Log-normal with the given median and log-standard deviation, clipped."""
    return Dist("lognormal", median, sigma, low, high)


def choice(values: tuple[float, ...], p: tuple[float, ...] = ()) -> Dist:
    """One of ``values`` (probabilities ``p``, default equal)."""
    return Dist("choice", values=tuple(values), p=tuple(p))


def sample_config(
    config: Any, n: int, rng: np.random.Generator, type_name: str
) -> dict[str, FloatArray | float]:
    """Draw every :class:`Dist` field of a config dataclass (fields in declaration order, so
    the same seed gives the same fleet); other fields are passed through."""
    if n < 0:
        raise InvalidInputError(f"{type_name}: number of devices must be ≥ 0, not {n}")
    out: dict[str, FloatArray | float] = {}
    for f in fields(config):
        v = getattr(config, f.name)
        if isinstance(v, Dist):
            out[f.name] = v.sample(rng, n, f"{type_name} config field {f.name!r}")
        else:
            out[f.name] = v
    return out


def check(ok: ArrayLike, type_name: str, field_name: str, rule: str, values: ArrayLike) -> None:
    """Raise :class:`InvalidInputError` naming the field unless every ``ok`` is true."""
    okv = np.asarray(ok, dtype=bool)
    if not np.all(okv):
        vals = np.broadcast_to(np.asarray(values, dtype=np.float64), okv.shape)
        bad = vals[~okv]
        raise InvalidInputError(
            f"{type_name} config field {field_name!r} must be {rule}; got e.g. {bad.ravel()[0]!r}"
        )


def as_vector(x: ArrayLike, n: int, name: str = "value") -> FloatArray:
    """``x`` broadcast to a float vector of length ``n``."""
    a = np.asarray(x, dtype=np.float64)
    try:
        out: FloatArray = np.broadcast_to(a, (n,)).astype(np.float64, copy=True)
    except ValueError:
        raise InvalidInputError(f"{name} has shape {a.shape}, expected ({n},) or scalar") from None
    return out


def check_balance(lhs: FloatArray, rhs: FloatArray, what: str, scale: FloatArray | float) -> None:
    """Raise :class:`~transactive.errors.BalanceError` if ``lhs`` and ``rhs`` differ by more than
    :data:`BALANCE_RTOL` relative to ``scale`` (kWh)."""
    from transactive.errors import BalanceError

    err = np.abs(lhs - rhs)
    tol = BALANCE_RTOL * (1.0 + np.abs(scale))
    if np.any(err > tol):
        i = int(np.argmax(err - tol))
        raise BalanceError(f"{what}: energy balance broken at device {i} (error {err[i]:.3e} kWh)")


def hour_of_day_local(t_h: float, tz_offset_h: ArrayLike) -> FloatArray:
    """Local clock hour (0…24) at UTC time ``t_h`` (hours since epoch) for UTC offsets (h)."""
    out: FloatArray = np.mod(t_h + np.asarray(tz_offset_h, dtype=np.float64), 24.0)
    return out


def urgency_price(urgency: FloatArray, ctx: Context) -> FloatArray:
    """Bid price ($/kWh) of a deadline-bound energy need with ``urgency`` ``u`` = energy still
    needed / energy that can still be delivered before the deadline (0 … 1).

    The price is the ``u``-quantile of a normal price forecast, ``mean + σ·Φ⁻¹(u)``: a device
    that needs a fraction ``u`` of the remaining time buys in roughly the cheapest ``u`` of
    the intervals. It rises with urgency, reaches the cap at ``u ≥ 1`` and is clipped to
    ``[floor, cap]``.
    """
    from scipy.special import ndtri

    u = np.clip(urgency, 1e-3, 1.0 - 1e-3)
    p = ctx.price_mean + ctx.price_std * ndtri(u)
    out: FloatArray = np.where(urgency >= 1.0 - 1e-9, ctx.cap, np.clip(p, ctx.floor, ctx.cap))
    return out


def ramp_bid_price(
    deviation: FloatArray,
    k_up: FloatArray,
    k_down: FloatArray,
    range_up: FloatArray,
    range_down: FloatArray,
    ctx: Context,
) -> FloatArray:
    """PNNL TESP / GridLAB-D *ramp* bid price ($/kWh) of a thermostatic load.

    ``deviation`` is how far (°C) the temperature sits on the *uncomfortable* side of the
    setpoint (T − T_set when cooling, T_set − T when heating). With ``T_limit`` the comfort
    limit on the side the temperature is on::

        price = mean + deviation · k · σ / |T_limit − T_set|

    with ``k = k_up`` and ``|T_limit − T_set| = range_up`` (the uncomfortable side) for
    ``deviation ≥ 0``, else ``k_down`` and ``range_down``; clipped to ``[floor, cap]``.
    ``mean``, ``σ``: the price forecast statistics of ``ctx``.
    """
    up = deviation >= 0
    k = np.where(up, k_up, k_down)
    rng_ = np.where(up, range_up, range_down)
    p = ctx.price_mean + deviation * k * ctx.price_std / rng_
    out: FloatArray = np.clip(p, ctx.floor, ctx.cap)
    return out


def ramp_setpoint_offset(
    price: ArrayLike,
    k_up: FloatArray,
    k_down: FloatArray,
    range_up: FloatArray,
    range_down: FloatArray,
    ctx: Context,
) -> FloatArray:
    """The inverse of :func:`ramp_bid_price`: how far (°C) the setpoint moves towards the
    uncomfortable side after clearing at ``price``::

        offset = (price − mean) · |T_limit − T_set| / (k · σ)

    using the uncomfortable side (``k_up``, ``range_up``) for ``price ≥ mean``, clipped to
    ``[−range_down, +range_up]``. A cooling setpoint rises by ``offset``, a heating setpoint
    falls by it. A device whose bid price was at least the clearing price then has its
    temperature at or beyond the new setpoint — it runs; otherwise it does not.
    """
    p = np.asarray(price, dtype=np.float64)
    up = p >= ctx.price_mean
    k = np.where(up, k_up, k_down)
    rng_ = np.where(up, range_up, range_down)
    off = (p - ctx.price_mean) * rng_ / (k * ctx.price_std)
    out: FloatArray = np.clip(off, -range_down, range_up)
    return out
