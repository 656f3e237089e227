"""The common device interface: market context, energy report, the abstract
:class:`DeviceType` every device class implements, the response to an award, and the
parameter distributions fleets are drawn from.

Every device type is a class (``PV``, ``Battery``, ``EV``, ``HVAC``, ``WaterHeater``,
``Shiftable``, ``Curtailable``, ``Household``) that holds no data itself; a fleet of ``N``
devices is the class instance plus

* ``Params`` — a frozen dataclass of per-device parameter arrays (never changes);
* ``State`` — a frozen dataclass of per-device state arrays (replaced, never mutated).

The class declares its parameters once (``PARAMS``, :class:`~transactive.der.params.Param`)
and implements ``build`` (drawn values → ``Params``), ``initial_state``, ``limits``,
``bid``, ``run`` (the physics behind :meth:`DeviceType.step`) and ``uncontrolled`` (the
business-as-usual power).

:func:`respond` turns a clearing price or a dispatched quantity into the power each device
runs at; it is the same for every type (read the curve, clip to the device limits), so the
award is honoured exactly whenever it lies inside the device's limits.

Units: power kW (+ buy/consume, − sell/produce), energy kWh, price $/kWh, time UTC, hours
for durations, temperatures °C, reactive power kvar (+ absorbed, like load).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import Curves, quantity_at
from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from transactive.der.params import DeviceConfig, Param

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
    utc_offset_h: the region clock's UTC offset at the interval start, hours (e.g. +1 or +2
        for Europe/Berlin, daylight saving included); every local-time rule of the devices
        (household profiles, EV plug-in, hot-water draws, appliance windows) reads it.
    """

    start: pd.Timestamp
    dt_h: float
    price_forecast: FloatArray
    price_mean: float
    price_std: float
    floor: float
    cap: float
    weather: WeatherSample = field(default_factory=WeatherSample)
    voltage_pu: FloatArray | float = 1.0
    utc_offset_h: float = 0.0

    @property
    def t_h(self) -> float:
        """Interval start in hours since the Unix epoch (UTC)."""
        return float(self.start.value) / 3.6e12

    @property
    def local_h(self) -> float:
        """Interval start on the region's local clock, hours since the epoch (``t_h +
        utc_offset_h``)."""
        return self.t_h + self.utc_offset_h


def make_context(
    start: pd.Timestamp | str,
    dt_h: float,
    price_forecast: ArrayLike,
    *,
    floor: float,
    cap: float,
    weather: WeatherSample | None = None,
    voltage_pu: ArrayLike = 1.0,
    price_mean: float | None = None,
    price_std: float | None = None,
    utc_offset_h: float = 0.0,
) -> Context:
    """A :class:`Context`, validated. ``price_forecast`` in $/kWh, first value = this interval;
    ``floor`` and ``cap``: the market's price band, $/kWh (required: there is no default band).
    ``utc_offset_h``: the region clock's UTC offset at ``start`` (h, −14 … +14; the runner
    passes the scenario time zone's; 0 = local time is UTC).

    The standard deviation used by ramp bidders is never below 1 % of ``cap − floor`` so a
    flat forecast still gives a usable ramp.
    """
    import pandas as pd  # here: importing the device types must not load pandas

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
    if not -14.0 <= utc_offset_h <= 14.0:
        raise InvalidInputError(f"utc_offset_h must be within −14 … +14 h, not {utc_offset_h}")
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
        utc_offset_h=float(utc_offset_h),
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


# --- the device interface ------------------------------------------------------------------


class DeviceParams(Protocol):
    """What every ``Params`` dataclass provides: the number of devices."""

    @property
    def n(self) -> int: ...


ParamsT = TypeVar("ParamsT", bound=DeviceParams)
StateT = TypeVar("StateT")


class DeviceType(ABC, Generic[ParamsT, StateT]):
    """One device type: parameter declaration, sampling, physics, bidding, uncontrolled mode.

    Instances hold no data (all device data is in ``Params``/``State`` arrays), compare
    equal by type and pickle by reference. Subclasses set ``KIND`` and ``PARAMS``; their
    config class ``Config`` is generated from ``PARAMS``.
    """

    KIND: ClassVar[str]
    PARAMS: ClassVar[tuple[Param, ...]]
    Config: ClassVar[type[DeviceConfig]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "PARAMS" in cls.__dict__:
            from transactive.der.params import config_class

            cls.Config = config_class(
                cls.KIND, cls.PARAMS, cls.__module__, f"{cls.__qualname__}.Config"
            )

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # --- parameters ------------------------------------------------------------------------

    @classmethod
    def param(cls, name: str) -> Param:
        """The declaration of parameter ``name``."""
        for p in cls.PARAMS:
            if p.name == name:
                return p
        raise KeyError(f"{cls.KIND} has no parameter {name!r}")

    @classmethod
    def config(cls, **dists: Dist | float) -> DeviceConfig:
        """The default config with some parameters replaced (numbers become constants)."""
        return cls.Config().with_(**dists)

    def sample(self, config: DeviceConfig, n: int, rng: np.random.Generator) -> ParamsT:
        """Draw ``n`` devices: every parameter in declaration order, bounds checked, then
        :meth:`build` (which may draw more from ``rng``)."""
        if config.KIND != self.KIND:
            raise InvalidInputError(
                f"{self.KIND} fleets need a {self.KIND} config, not a {config.KIND!r} one"
            )
        return self.build(config.sample(n, rng), rng)

    def make_params(self, **values: ArrayLike) -> ParamsT:
        """``Params`` from explicit values (scalars broadcast; the fleet size is the size of
        the largest array); parameters not given take their default's typical value
        (:func:`~transactive.der.params.typical`). Bounds are checked."""
        from transactive.der.params import typical

        names = {p.name for p in self.PARAMS}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidInputError(f"{self.KIND}: unknown parameter(s) {', '.join(unknown)}")
        arrays = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in values.items()}
        n = max((a.size for a in arrays.values()), default=1)
        out: dict[str, FloatArray] = {}
        for p in self.PARAMS:
            x = as_vector(arrays.get(p.name, typical(p.default)), n, p.name)
            p.check(x, self.KIND)
            out[p.name] = x
        return self.build(out, np.random.default_rng(0))

    @abstractmethod
    def build(self, values: Mapping[str, FloatArray], rng: np.random.Generator) -> ParamsT:
        """``Params`` from the drawn (bounds-checked) parameter arrays; checks the rules
        between parameters. ``rng`` continues the parameter stream."""

    @abstractmethod
    def initial_state(
        self, params: ParamsT, config: DeviceConfig, rng: np.random.Generator
    ) -> StateT:
        """The state at the start (``rng``: the state stream of the fleet's seed)."""

    # --- market interval -------------------------------------------------------------------

    @abstractmethod
    def limits(self, params: ParamsT, state: StateT, ctx: Context) -> tuple[FloatArray, FloatArray]:
        """Feasible power ``(p_min, p_max)`` over the interval, kW (+ consumption)."""

    @abstractmethod
    def bid(self, params: ParamsT, state: StateT, ctx: Context) -> Curves:
        """One non-increasing bid curve per device for the interval."""

    def bid_horizon(self, params: ParamsT, state: StateT, ctx: Context) -> list[Curves]:
        """One set of curves per interval of the forecast horizon (types that support it)."""
        raise InvalidInputError(f"{self.KIND} fleets do not bid over a horizon")

    def step(
        self,
        params: ParamsT,
        state: StateT,
        power_kw: ArrayLike,
        ctx: Context,
        cleared_price: ArrayLike | None = None,
    ) -> tuple[StateT, EnergyReport]:
        """The physics over the interval at ``power_kw`` (kW per device, the award; clipped
        to what the device can do, the difference reported as deviation). The report's
        ``extra["q_kvar"]`` is the reactive power (kvar, + absorbed; 0 unless the type's
        physics says otherwise)."""
        award = as_vector(power_kw, params.n, "power_kw")
        if not np.all(np.isfinite(award)):
            raise InvalidInputError(f"{self.KIND}: power_kw must be finite")
        new, rep = self.run(params, state, award, ctx, cleared_price)
        if "q_kvar" not in rep.extra:
            rep = EnergyReport(
                rep.power_kw,
                rep.energy_kwh,
                rep.deviation_kwh,
                {**rep.extra, "q_kvar": np.zeros(params.n)},
            )
        return new, rep

    @abstractmethod
    def run(
        self,
        params: ParamsT,
        state: StateT,
        award: FloatArray,
        ctx: Context,
        cleared_price: ArrayLike | None,
    ) -> tuple[StateT, EnergyReport]:
        """:meth:`step` after the award (finite, one per device, kW) is validated."""

    @abstractmethod
    def uncontrolled(
        self, params: ParamsT, state: StateT, ctx: Context, net_kw: FloatArray | None
    ) -> FloatArray:
        """Business-as-usual power (kW per device) over the interval, within the limits.
        ``net_kw``: per device, the rest of its home's net load (kW, + import), used by
        types that react to it (behind-the-meter batteries)."""

    def respond(
        self,
        params: ParamsT,
        state: StateT,
        ctx: Context,
        curves: Curves,
        *,
        price: ArrayLike | None = None,
        award: ArrayLike | None = None,
        side: Literal["left", "right"] = "right",
    ) -> FloatArray:
        """Power (kW) each device runs at after clearing.

        Give either the clearing ``price`` ($/kWh, scalar or per device; each device reads
        its own curve, ``side`` choosing the limit at a vertical step) or the dispatched
        ``award`` (kW per device, e.g. from :func:`transactive.core.curves.dispatch`). The
        result is the award clipped to the device's feasible range for the interval, so an
        award within the device limits is honoured exactly.
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
        lo, hi = self.limits(params, state, ctx)
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

    def validate(self, name: str = "parameter") -> None:
        """Raise :class:`InvalidInputError` (message starting with ``f"{name}: "``) unless
        the arguments make a distribution."""
        if self.kind == "uniform" and not self.b >= self.a:
            raise InvalidInputError(f"{name}: uniform needs a ≤ b, got {self.a}, {self.b}")
        if self.kind == "normal" and not self.b >= 0:
            raise InvalidInputError(f"{name}: normal sd must be ≥ 0, got {self.b}")
        if self.kind == "lognormal" and not (self.a > 0 and self.b >= 0):
            raise InvalidInputError(f"{name}: lognormal needs median > 0 and sd ≥ 0")
        if self.kind == "choice":
            prob = np.asarray(self.p, dtype=np.float64)
            if len(self.values) == 0:
                raise InvalidInputError(f"{name}: choice needs values")
            if self.p and (
                prob.size != len(self.values) or np.any(prob < 0) or abs(prob.sum() - 1) > 1e-9
            ):
                raise InvalidInputError(f"{name}: choice probabilities must be ≥ 0 and sum to 1")
        if self.kind not in ("const", "uniform", "normal", "lognormal", "choice"):
            raise InvalidInputError(f"{name}: unknown distribution kind {self.kind!r}")
        if not self.low <= self.high:
            raise InvalidInputError(f"{name}: low {self.low} > high {self.high}")

    def sample(self, rng: np.random.Generator, n: int, name: str = "parameter") -> FloatArray:
        """``n`` draws (float64); ``name`` is used in error messages."""
        self.validate(name)
        if self.kind == "const":
            x = np.full(n, float(self.a))
        elif self.kind == "uniform":
            x = rng.uniform(self.a, self.b, n)
        elif self.kind == "normal":
            x = rng.normal(self.a, self.b, n)
        elif self.kind == "lognormal":
            x = self.a * np.exp(rng.normal(0.0, self.b, n))
        else:
            prob = np.asarray(self.p, dtype=np.float64) if self.p else None
            x = rng.choice(np.asarray(self.values, dtype=np.float64), size=n, p=prob)
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


def check(ok: ArrayLike, type_name: str, field_name: str, rule: str, values: ArrayLike) -> None:
    """Raise :class:`InvalidInputError` naming the field unless every ``ok`` is true."""
    okv = np.asarray(ok, dtype=bool)
    if not np.all(okv):
        vals = np.broadcast_to(np.asarray(values, dtype=np.float64), okv.shape)
        bad = vals[~okv]
        raise InvalidInputError(
            f"{type_name} parameter {field_name!r} must be {rule}; got e.g. {bad.ravel()[0]!r}"
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


def hour_of_day_local(t_h: ArrayLike, utc_offset_h: float) -> FloatArray:
    """Local clock hour (0…24) at UTC time(s) ``t_h`` (hours since epoch) for the region
    clock's UTC offset ``utc_offset_h`` (h, :attr:`Context.utc_offset_h`)."""
    out: FloatArray = np.mod(np.asarray(t_h, dtype=np.float64) + utc_offset_h, 24.0)
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
