"""The interface every market design implements, and what a design is built from.

A *market design* is a protocol: the stages it runs every market interval, between which
levels of the node tree (DESIGN.md §3). The simulation runner — and later the live service —
runs designs without knowing their names: it asks a design for the price forecast its
devices plan with, hands it the devices' bids, and gets back a :class:`Clearing` that says
what every device is to do and at which price every node is settled.

A design is one subclass of :class:`Design` registered in :mod:`transactive.designs`
(``@register``). It is built once per run from a :class:`Setting`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray
from transactive.nodes.tree import Offer, Plan
from transactive.nodes.wholesale import MeritOrder, PriceSeries
from transactive.settlement.settle import Rules

if TYPE_CHECKING:
    from transactive.grid.model import Feeder
    from transactive.sim.scenario import Scenario

Wholesale = PriceSeries | MeritOrder


@dataclass(frozen=True)
class Setting:
    """What every design of a run shares.

    plan: the node tree with the devices placed on it; feeders: the network of each DSO area
    (tree ``area`` index); wholesale: the wholesale source over the run's intervals;
    forecast: the wholesale price forecast ($/kWh) for every interval and a horizon beyond;
    tou: the time-of-use tariff ($/kWh) over the same span; horizon: forecast intervals the
    devices see; scenario: the validated scenario (market rules, tariffs, limits).
    """

    plan: Plan
    feeders: tuple[Feeder, ...]
    wholesale: Wholesale
    forecast: FloatArray
    tou: FloatArray
    horizon: int
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
    dlmp: per area and bus, the DLMP and its components ($/kWh), network clearing only.
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


class Design(ABC):
    """A market design: the stages it runs each interval, over the node tree.

    Subclasses set :attr:`name` (the registry key, used in scenarios and records) and
    :attr:`summary`, and implement :meth:`forecast` and :meth:`clear`.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Whether participants pay the DSO's network charge on imports (tariffs include it).
    pays_network_charge: ClassVar[bool] = True

    def __init__(self, setting: Setting) -> None:
        self.setting = setting

    @property
    def rules(self) -> Rules:
        """How this design's records are settled (:mod:`transactive.settlement`)."""
        market = self.setting.scenario.market
        charge = market.network_charge if self.pays_network_charge else 0.0
        return Rules(network_charge=charge, currency=market.currency)

    @property
    def floor(self) -> float:
        """Price floor, $/kWh."""
        return self.setting.scenario.market.floor

    @property
    def cap(self) -> float:
        """Price cap, $/kWh."""
        return self.setting.scenario.market.cap

    def wholesale_at(self, t: int) -> Wholesale:
        """The wholesale source for interval ``t`` alone."""
        w = self.setting.wholesale
        if isinstance(w, PriceSeries):
            return PriceSeries(w.price[t : t + 1])
        return MeritOrder(w.names, w.capacity_kw, w.cost, w.other_load_kw[t : t + 1])

    @abstractmethod
    def forecast(self, t: int) -> FloatArray:
        """The prices ($/kWh) devices plan with at interval ``t``: this interval and the
        following ones over the horizon."""

    @abstractmethod
    def clear(self, t: int, bids: Curves, uncontrolled: Callable[[], FloatArray]) -> Clearing:
        """Run the design's stages for interval ``t``.

        bids: one curve per device (device order); uncontrolled: the devices' power (kW) in
        their business-as-usual mode, computed on demand.
        """

    def _full(self, value: float) -> FloatArray:
        return np.full(self.setting.plan.tree.n, value)
