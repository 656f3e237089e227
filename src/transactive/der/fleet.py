"""Fleets: the registry of device types, :func:`make_fleet` and the :class:`Fleet` handle.

A :class:`Fleet` bundles a device-type module (the physics and bidding functions), the
frozen parameter arrays and the current state. It is immutable: :meth:`Fleet.step` returns
a new fleet with the new state. One market interval for a fleet is::

    curves = fleet.bid(ctx)                        # one curve per device
    power = fleet.respond(ctx, curves, price=p)    # or award=dispatch(...)
    fleet, rep = fleet.step(power, ctx, cleared_price=p)

The same ``(type, n, config, seed)`` always gives the same fleet: parameters are drawn
from ``numpy.random.default_rng(seed)`` in declaration order of the config fields, and the
initial state from an independent stream of the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves
from transactive.der import battery, ev, flexible, household, hvac, pv, water_heater
from transactive.der.base import Context, DeviceModel, EnergyReport, FloatArray, IntArray, respond
from transactive.errors import InvalidInputError

#: Device type name → module implementing :class:`~transactive.der.base.DeviceModel`.
REGISTRY: dict[str, Any] = {
    pv.NAME: pv,
    battery.NAME: battery,
    ev.NAME: ev,
    hvac.NAME: hvac,
    water_heater.NAME: water_heater,
    flexible.SHIFTABLE: flexible.shiftable,
    flexible.CURTAILABLE: flexible.curtailable,
    household.NAME: household,
}

#: Device type name → its default config class.
CONFIGS: dict[str, type] = {
    pv.NAME: pv.PVConfig,
    battery.NAME: battery.BatteryConfig,
    ev.NAME: ev.EVConfig,
    hvac.NAME: hvac.HVACConfig,
    water_heater.NAME: water_heater.WaterHeaterConfig,
    flexible.SHIFTABLE: flexible.ShiftableConfig,
    flexible.CURTAILABLE: flexible.CurtailableConfig,
    household.NAME: household.HouseholdConfig,
}

# The config classes, re-exported so users find them next to make_fleet.
PVConfig = pv.PVConfig
BatteryConfig = battery.BatteryConfig
EVConfig = ev.EVConfig
HVACConfig = hvac.HVACConfig
WaterHeaterConfig = water_heater.WaterHeaterConfig
ShiftableConfig = flexible.ShiftableConfig
CurtailableConfig = flexible.CurtailableConfig
HouseholdConfig = household.HouseholdConfig


@dataclass(frozen=True, slots=True)
class Fleet:
    """``n`` devices of one type: ``model`` (the type's module), ``params`` and ``state``."""

    kind: str
    model: Any
    params: Any
    state: Any

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(self.params.n)

    def limits(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        """Feasible power range over the interval, kW."""
        lo, hi = self.model.limits(self.params, self.state, ctx)
        return lo, hi

    def bid(self, ctx: Context) -> Curves:
        """One bid curve per device for the interval of ``ctx``."""
        c: Curves = self.model.bid(self.params, self.state, ctx)
        return c

    def bid_horizon(self, ctx: Context) -> list[Curves]:
        """One set of curves per interval of the forecast horizon (types that support it)."""
        f = getattr(self.model, "bid_horizon", None)
        if f is None:
            raise InvalidInputError(f"{self.kind} fleets do not bid over a horizon")
        out: list[Curves] = f(self.params, self.state, ctx)
        return out

    def respond(
        self,
        ctx: Context,
        curves: Curves,
        *,
        price: ArrayLike | None = None,
        award: ArrayLike | None = None,
        side: Literal["left", "right"] = "right",
    ) -> FloatArray:
        """Power (kW) per device after clearing; see :func:`transactive.der.base.respond`."""
        return respond(
            self.model, self.params, self.state, ctx, curves, price=price, award=award, side=side
        )

    def step(
        self, power_kw: ArrayLike, ctx: Context, cleared_price: ArrayLike | None = None
    ) -> tuple[Fleet, EnergyReport]:
        """Physics over the interval at ``power_kw``; returns the new fleet and the report."""
        new_state, rep = self.model.step(self.params, self.state, power_kw, ctx, cleared_price)
        return replace(self, state=new_state), rep


def make_fleet(kind: str, n: int, config: Any = None, seed: int = 0) -> Fleet:
    """``n`` devices of type ``kind`` drawn from ``config`` (default config if ``None``).

    kind: one of :data:`REGISTRY` (``pv``, ``battery``, ``ev``, ``hvac``, ``water_heater``,
    ``shiftable``, ``curtailable``, ``household``). Bad configs raise
    :class:`~transactive.errors.InvalidInputError` naming the field.
    """
    if kind not in REGISTRY:
        raise InvalidInputError(f"unknown device type {kind!r}; choose one of {sorted(REGISTRY)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InvalidInputError(f"number of devices must be an integer ≥ 0, not {n!r}")
    cfg = CONFIGS[kind]() if config is None else config
    if not isinstance(cfg, CONFIGS[kind]):
        raise InvalidInputError(
            f"{kind} fleets need a {CONFIGS[kind].__name__}, not {type(cfg).__name__}"
        )
    model: DeviceModel = REGISTRY[kind]
    ss = np.random.SeedSequence(seed)
    p_seed, s_seed = ss.spawn(2)
    params = model.sample(cfg, int(n), np.random.default_rng(p_seed))
    state = model.initial_state(params, np.random.default_rng(s_seed), cfg)
    return Fleet(kind, model, params, state)


@dataclass(frozen=True, slots=True)
class Population:
    """Fleets attached to homes: ``fleets[kind]`` and ``home[kind]`` (home index of each
    device, 0 … n_homes−1)."""

    n_homes: int
    fleets: dict[str, Fleet]
    home: dict[str, IntArray]


def make_population(
    n_homes: int,
    penetration: dict[str, float],
    configs: dict[str, Any] | None = None,
    seed: int = 0,
) -> Population:
    """A device population over ``n_homes`` homes: each type ``kind`` is installed in a
    random ``penetration[kind]`` fraction (0…1) of the homes (at most one per home).

    Every home gets a ``household`` fixed load unless ``penetration`` says otherwise.
    """
    if isinstance(n_homes, bool) or not isinstance(n_homes, int) or n_homes < 0:
        raise InvalidInputError(f"n_homes must be an integer ≥ 0, not {n_homes!r}")
    pen = {household.NAME: 1.0, **penetration}
    configs = configs or {}
    for kind, frac in pen.items():
        if kind not in REGISTRY:
            raise InvalidInputError(f"penetration: unknown device type {kind!r}")
        if not (isinstance(frac, int | float) and 0.0 <= float(frac) <= 1.0):
            raise InvalidInputError(f"penetration[{kind!r}] must be in [0, 1], not {frac!r}")
    for kind in configs:
        if kind not in REGISTRY:
            raise InvalidInputError(f"configs: unknown device type {kind!r}")
    ss = np.random.SeedSequence(seed)
    children = ss.spawn(len(REGISTRY))
    fleets: dict[str, Fleet] = {}
    homes: dict[str, IntArray] = {}
    for (kind, frac), child in zip(sorted(pen.items()), children[: len(pen)], strict=True):
        rng = np.random.default_rng(child)
        k = round(float(frac) * n_homes)
        idx = np.sort(rng.choice(n_homes, size=k, replace=False)).astype(np.int64)
        sub_seed = int(rng.integers(0, 2**63 - 1))
        fleets[kind] = make_fleet(kind, k, configs.get(kind), sub_seed)
        homes[kind] = idx
    return Population(n_homes, fleets, homes)
