"""The interface every market design implements, and what a design is built from.

A *market design* is a protocol: the stages it runs, between which levels of the node tree
(DESIGN.md §3). The simulation runner — and later the live service — runs designs without
knowing their names: it asks a design for the prices its devices plan with, hands it the
devices' bids, and gets back a :class:`Clearing` that says what every device is to do and at
which price every node is settled.

Stages: a tariff design runs one ``"tariff"`` stage per interval. A two-settlement design runs
a ``"day-ahead"`` stage (each day is scheduled from the day-ahead forecasts — the runner steps
a copy of the devices through the day with forecast weather, loads and arrivals, see
:mod:`transactive.sim.forecast`) and a ``"real-time"`` stage per interval with what actually
happens; day-ahead positions are settled at day-ahead prices, deviations at real-time prices
(:mod:`transactive.settlement`).

A design is one subclass of :class:`Design` registered in :mod:`transactive.designs.registry`.
It is built once per run from a :class:`Setting`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, IntArray
from transactive.nodes.tree import Offer, Plan
from transactive.nodes.wholesale import MeritOrder, PriceSeries

if TYPE_CHECKING:
    from transactive.grid.model import Feeder
    from transactive.sim.scenario import Scenario

Wholesale = PriceSeries | MeritOrder
Stage = Literal["tariff", "day-ahead", "real-time"]


@dataclass(frozen=True)
class Setting:
    """What every design of a run shares.

    plan: the node tree with the devices placed on it; feeders: the network of each DSO area
    (tree ``area`` index); day_ahead, real_time: the wholesale source of each stage over the
    run's intervals; forecast: the day-ahead price (currency/kWh) of every interval and a
    horizon beyond — what devices plan with; tou: the time-of-use tariff over the same span;
    horizon: forecast intervals the devices see; device_area, device_bus: each device's area
    and bus (position in its area's feeder); scenario: the validated scenario.
    """

    plan: Plan
    feeders: tuple[Feeder, ...]
    day_ahead: Wholesale
    real_time: Wholesale
    forecast: FloatArray
    tou: FloatArray
    horizon: int
    device_area: IntArray
    device_bus: IntArray
    scenario: Scenario


@dataclass(frozen=True)
class Clearing:
    """One interval's outcome of a design.

    stage: the stage that produced it (``"tariff"``, ``"real-time"``, …);
    device_kw: what each device is to run at (kW, + consume), in device order;
    device_price: the price each device sees and is settled at ($/kWh);
    node_kw, node_price: every node's award (kW) and award price ($/kWh), tree order;
    status: the status of the top market (``"cleared"``, ``"tariff"``, …);
    wholesale_price: the wholesale price of the interval ($/kWh);
    offer: the curves offered up the tree, if the design collected them (for the bid records);
    direct_bids: True when devices bid straight into the top market (no tree in between);
    dlmp: per area and bus, the DLMP and its components ($/kWh), network clearing only;
    intervened_kw: per device, what the DSO's intervention changed (kW, after − before),
    designs where the DSO intervenes only;
    trades: the interval's peer-to-peer trades (:data:`transactive.market.p2p.TRADE_COLUMNS`
    plus design, area, duration_h, buyer_node, seller_node, dso), designs with a p2p stage.
    """

    stage: str
    device_kw: FloatArray
    device_price: FloatArray
    node_kw: FloatArray
    node_price: FloatArray
    status: str
    wholesale_price: float
    offer: Offer | None = None
    direct_bids: bool = False
    dlmp: pd.DataFrame | None = None
    intervened_kw: FloatArray | None = None
    trades: pd.DataFrame | None = None


class Design(ABC):
    """A market design: the stages it runs, over the node tree.

    Subclasses set :attr:`name` (the registry key, used in scenarios and records),
    :attr:`summary` and :attr:`stages`, and implement :meth:`forecast` and :meth:`clear`.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    #: The stages run each interval, in order: ``("tariff",)`` or ``("day-ahead",
    #: "real-time")`` (the day-ahead stage is run a day at a time, ahead).
    stages: ClassVar[tuple[Stage, ...]] = ("real-time",)

    def __init__(self, setting: Setting) -> None:
        self.setting = setting

    @property
    def two_settlement(self) -> bool:
        """Whether the design schedules a day ahead and settles deviations in real time."""
        return "day-ahead" in self.stages

    @property
    def floor(self) -> float:
        """Price floor, currency/kWh."""
        return self.setting.scenario.market.floor

    @property
    def cap(self) -> float:
        """Price cap, currency/kWh."""
        return self.setting.scenario.market.cap

    def wholesale_at(self, t: int, stage: Stage) -> Wholesale:
        """The wholesale source of ``stage`` for interval ``t`` alone (the day-ahead source
        for tariff designs: a retailer buys its customers' load a day ahead)."""
        w = self.setting.real_time if stage == "real-time" else self.setting.day_ahead
        if isinstance(w, PriceSeries):
            return PriceSeries(w.price[t : t + 1])
        return MeritOrder(w.names, w.capacity_kw, w.cost, w.other_load_kw[t : t + 1])

    @abstractmethod
    def forecast(self, t: int) -> FloatArray:
        """The prices (currency/kWh) devices plan with at interval ``t``: this interval and the
        following ones over the horizon."""

    @abstractmethod
    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        """Run ``stage`` of interval ``t``.

        bids: one curve per device (device order); uncontrolled: the devices' power (kW) in
        their business-as-usual mode, computed on demand.
        """

    def _full(self, value: float) -> FloatArray:
        return np.full(self.setting.plan.tree.n, value)
