"""Retail-tariff designs: devices face a tariff, no market forms below the substation.

* :class:`FlatUncontrolled` (``bau-flat``) — business as usual: a flat tariff, every device in
  its uncontrolled mode (EVs charge at plug-in, heat pumps hold their set point, home
  batteries self-consume). It is the reference every other design is compared with.
* :class:`TouUncontrolled` (``bau-tou``) — a time-of-use tariff that devices do not react to
  (the tariff most homes with a TOU meter face: the money changes, the load does not).
* :class:`TouResponsive` (``tou-responsive``) — devices optimise against the time-of-use
  tariff: they read their bid curves at the tariff and plan with the tariff ahead.

The areas' net load is bought by the retailer (the DSO node) a day ahead, as a price-taker
(under a merit order its size still sets the price). Homes and aggregator nodes are settled at
the tariff; the DSO and TSO nodes at the wholesale price.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transactive.core.curves import Curves, FloatArray, block_curves, quantity_at
from transactive.designs.base import Clearing, Design, Stage
from transactive.nodes.tree import Kind, roll_up
from transactive.nodes.wholesale import clear_wholesale


class _Tariff(Design):
    stages = ("tariff",)
    #: Whether devices react to the tariff (else they run uncontrolled).
    responsive: bool = False

    def tariff(self, t: int) -> float:
        """The tariff (currency/kWh) of interval ``t``."""
        return float(self.forecast(t)[0])

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        price = self.tariff(t)
        device_kw = quantity_at(bids, price) if self.responsive else uncontrolled()
        plan = self.setting.plan
        node_kw = roll_up(plan, device_kw)
        total = float(node_kw[0])
        taker = block_curves([self.cap if total >= 0 else self.floor], [total])
        lam = float(clear_wholesale(taker, self.wholesale_at(t, stage), self.floor, self.cap)[0][0])
        upstream = np.isin(plan.tree.kind, [Kind.TSO, Kind.DSO])
        return Clearing(
            stage="tariff",
            device_kw=device_kw,
            device_price=np.full(plan.n_devices, price),
            node_kw=node_kw,
            node_price=np.where(upstream, lam, price),
            status="tariff",
            wholesale_price=lam,
        )


class FlatUncontrolled(_Tariff):
    """Business as usual: a flat retail tariff, devices uncontrolled."""

    name = "bau-flat"
    summary = "business as usual: flat tariff, uncontrolled devices"

    def forecast(self, t: int) -> FloatArray:
        return np.full(self.setting.horizon, self.setting.scenario.tariff.flat)


class TouUncontrolled(_Tariff):
    """A time-of-use tariff, devices uncontrolled."""

    name = "bau-tou"
    summary = "time-of-use tariff, uncontrolled devices"

    def forecast(self, t: int) -> FloatArray:
        return self.setting.tou[t : t + self.setting.horizon]


class TouResponsive(TouUncontrolled):
    """A time-of-use tariff, devices optimise against it."""

    name = "tou-responsive"
    summary = "time-of-use tariff, price-responsive devices"
    responsive = True
