"""Retail-tariff designs: devices face a tariff, no market forms below the substation.

The areas' net load is bought at the wholesale market as a price-taker (its size still sets
the wholesale price under a merit order). Every home and aggregator node is settled at the
tariff; the DSO and TSO nodes at the wholesale price. Tariffs include the network charge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transactive.core.curves import Curves, FloatArray, block_curves, quantity_at
from transactive.designs.base import Clearing, Design
from transactive.nodes.tree import Kind, roll_up
from transactive.nodes.wholesale import clear_wholesale


class _Tariff(Design):
    pays_network_charge = False

    def tariff(self, t: int) -> float:
        """The tariff ($/kWh) of interval ``t``."""
        return float(self.forecast(t)[0])

    def _settle(self, t: int, device_kw: FloatArray) -> Clearing:
        plan = self.setting.plan
        node_kw = roll_up(plan, device_kw)
        total = float(node_kw[0])
        taker = block_curves([self.cap if total >= 0 else self.floor], [total])
        lam = float(clear_wholesale(taker, self.wholesale_at(t), self.floor, self.cap)[0][0])
        price = self.tariff(t)
        upstream = np.isin(plan.tree.kind, [Kind.TSO, Kind.DSO])
        node_price = np.where(upstream, lam, price)
        return Clearing(
            stage="tariff",
            device_kw=device_kw,
            device_price=np.full(plan.n_devices, price),
            node_kw=node_kw,
            node_price=node_price,
            status="tariff",
            wholesale_price=lam,
        )


class BusinessAsUsual(_Tariff):
    """Business as usual: a flat retail tariff and devices in their uncontrolled mode (EVs
    charge at plug-in, thermostats hold their set point, home batteries self-consume)."""

    name = "baseline"
    summary = "flat tariff, uncontrolled devices"

    def forecast(self, t: int) -> FloatArray:
        return np.full(self.setting.horizon, self.setting.scenario.tariff.flat)

    def clear(self, t: int, bids: Curves, uncontrolled: Callable[[], FloatArray]) -> Clearing:
        return self._settle(t, uncontrolled())


class TimeOfUse(_Tariff):
    """A time-of-use tariff: devices read their bid curves at the tariff of the interval and
    plan with the tariff ahead."""

    name = "tou"
    summary = "time-of-use tariff, price-responsive devices"

    def forecast(self, t: int) -> FloatArray:
        return self.setting.tou[t : t + self.setting.horizon]

    def clear(self, t: int, bids: Curves, uncontrolled: Callable[[], FloatArray]) -> Clearing:
        return self._settle(t, quantity_at(bids, self.tariff(t)))
