"""Fleets: :func:`make_fleet`, :func:`make_population` and the :class:`Fleet` handle.

A :class:`Fleet` bundles a device type (an instance of a
:class:`~transactive.der.base.DeviceType` class: the physics and bidding), the frozen
parameter arrays and the current state. It is immutable and picklable: :meth:`Fleet.step`
returns a new fleet with the new state. One market interval for a fleet is::

    curves = fleet.bid(ctx)                        # one curve per device
    power = fleet.respond(ctx, curves, price=p)    # or award=dispatch(...)
    fleet, rep = fleet.step(power, ctx, cleared_price=p)

or, business as usual, ``fleet.step(fleet.uncontrolled(ctx), ctx)``.

The same ``(kind, n, config, seed)`` always gives the same fleet: parameters are drawn
from ``numpy.random.default_rng(seed)`` in declaration order of the type's ``PARAMS``, and
the initial state from an independent stream of the same seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import Curves
from transactive.der.base import (
    Context,
    DeviceType,
    EnergyReport,
    FloatArray,
    IntArray,
    ParamsT,
    StateT,
    as_vector,
)
from transactive.der.devices import CONFIGS, DEVICE_TYPES
from transactive.der.params import DeviceConfig
from transactive.errors import InvalidInputError

__all__ = ["CONFIGS", "Fleet", "Population", "make_fleet", "make_population"]


@dataclass(frozen=True, slots=True)
class Fleet(Generic[ParamsT, StateT]):
    """``n`` devices of one kind: ``model`` (the device type), ``params`` and ``state``."""

    kind: str
    model: DeviceType[ParamsT, StateT]
    params: ParamsT
    state: StateT

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(self.params.n)

    def limits(self, ctx: Context) -> tuple[FloatArray, FloatArray]:
        """Feasible power range over the interval, kW."""
        return self.model.limits(self.params, self.state, ctx)

    def bid(self, ctx: Context) -> Curves:
        """One bid curve per device for the interval of ``ctx``."""
        return self.model.bid(self.params, self.state, ctx)

    def bid_horizon(self, ctx: Context) -> list[Curves]:
        """One set of curves per interval of the forecast horizon (types that support it)."""
        return self.model.bid_horizon(self.params, self.state, ctx)

    def respond(
        self,
        ctx: Context,
        curves: Curves,
        *,
        price: ArrayLike | None = None,
        award: ArrayLike | None = None,
        side: Literal["left", "right"] = "right",
    ) -> FloatArray:
        """Power (kW) per device after clearing; see :meth:`DeviceType.respond`."""
        return self.model.respond(
            self.params, self.state, ctx, curves, price=price, award=award, side=side
        )

    def uncontrolled(self, ctx: Context, net_kw: ArrayLike | None = None) -> FloatArray:
        """Business-as-usual power (kW per device) over the interval; ``net_kw`` (kW per
        device, + import): the rest of each device's home net load, which behind-the-meter
        batteries follow (required for batteries, ignored by the other types)."""
        net = None if net_kw is None else as_vector(net_kw, self.n, "net_kw")
        return self.model.uncontrolled(self.params, self.state, ctx, net)

    def step(
        self, power_kw: ArrayLike, ctx: Context, cleared_price: ArrayLike | None = None
    ) -> tuple[Fleet[ParamsT, StateT], EnergyReport]:
        """Physics over the interval at ``power_kw``; returns the new fleet and the report."""
        new_state, rep = self.model.step(self.params, self.state, power_kw, ctx, cleared_price)
        return replace(self, state=new_state), rep


def make_fleet(
    kind: str, n: int, config: DeviceConfig | None = None, seed: int = 0
) -> Fleet[Any, Any]:
    """``n`` devices of type ``kind`` drawn from ``config`` (default config if ``None``).

    kind: one of :data:`~transactive.der.devices.DEVICE_TYPES` (``pv``, ``battery``,
    ``ev``, ``hvac``, ``water_heater``, ``shiftable``, ``curtailable``, ``household``).
    Bad configs raise :class:`~transactive.errors.InvalidInputError` naming the parameter.
    """
    if kind not in DEVICE_TYPES:
        raise InvalidInputError(
            f"unknown device type {kind!r}; choose one of {sorted(DEVICE_TYPES)}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InvalidInputError(f"number of devices must be an integer ≥ 0, not {n!r}")
    model = DEVICE_TYPES[kind]()
    cfg = model.Config() if config is None else config
    if not isinstance(cfg, DeviceConfig):
        raise InvalidInputError(
            f"{kind} fleets need a {kind} config (DeviceConfig), not {type(cfg).__name__}"
        )
    ss = np.random.SeedSequence(seed)
    p_seed, s_seed = ss.spawn(2)
    params = model.sample(cfg, int(n), np.random.default_rng(p_seed))
    state = model.initial_state(params, cfg, np.random.default_rng(s_seed))
    return Fleet(kind, model, params, state)


@dataclass(frozen=True, slots=True)
class Population:
    """Fleets attached to homes: ``fleets[kind]`` and ``home[kind]`` (home index of each
    device, 0 … n_homes−1)."""

    n_homes: int
    fleets: dict[str, Fleet[Any, Any]]
    home: dict[str, IntArray]


def make_population(
    n_homes: int,
    penetration: Mapping[str, float],
    configs: Mapping[str, DeviceConfig] | None = None,
    seed: int = 0,
) -> Population:
    """A device population over ``n_homes`` homes: each type ``kind`` is installed in a
    random ``penetration[kind]`` fraction (0…1) of the homes (at most one per home).

    Every home gets a ``household`` fixed load unless ``penetration`` says otherwise.
    """
    if isinstance(n_homes, bool) or not isinstance(n_homes, int) or n_homes < 0:
        raise InvalidInputError(f"n_homes must be an integer ≥ 0, not {n_homes!r}")
    pen = {"household": 1.0, **penetration}
    configs = configs or {}
    for kind, frac in pen.items():
        if kind not in DEVICE_TYPES:
            raise InvalidInputError(f"penetration: unknown device type {kind!r}")
        if not (isinstance(frac, int | float) and 0.0 <= float(frac) <= 1.0):
            raise InvalidInputError(f"penetration[{kind!r}] must be in [0, 1], not {frac!r}")
    for kind in configs:
        if kind not in DEVICE_TYPES:
            raise InvalidInputError(f"configs: unknown device type {kind!r}")
    ss = np.random.SeedSequence(seed)
    children = ss.spawn(len(DEVICE_TYPES))
    fleets: dict[str, Fleet[Any, Any]] = {}
    homes: dict[str, IntArray] = {}
    for (kind, frac), child in zip(sorted(pen.items()), children[: len(pen)], strict=True):
        rng = np.random.default_rng(child)
        k = round(float(frac) * n_homes)
        idx = np.sort(rng.choice(n_homes, size=k, replace=False)).astype(np.int64)
        sub_seed = int(rng.integers(0, 2**63 - 1))
        fleets[kind] = make_fleet(kind, k, configs.get(kind), sub_seed)
        homes[kind] = idx
    return Population(n_homes, fleets, homes)
