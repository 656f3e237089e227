"""Layered (Total DSO) designs: every device bids to its node, nodes to their parents, each
DSO bids one curve for its area to the TSO, and the result flows back down the tree.

* :class:`Layered` — the tree clears at one price per node: the TSO clears the sum of the
  areas' curves against the wholesale source; each node passes its award down at its
  internal price, which rises above its parent's where its import limit binds (a congested
  substation or feeder) and falls where its export limit binds. With ``dso.clearing =
  "network"`` it clears like :class:`LayeredNetwork`.
* :class:`LayeredNetwork` — the TSO's price is found as above; then each DSO clears the
  nodes of other participants in its area (homes, aggregator portfolios) on its network
  (LinDistFlow with voltage and thermal limits, :func:`~transactive.market.network.clear_network`)
  at that price, and every such node is settled at its bus's DLMP.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, select
from transactive.designs.base import Clearing, Design, Setting
from transactive.errors import BalanceError
from transactive.market.auction import book_from_curves
from transactive.market.network import clear_network
from transactive.nodes.tree import Kind, Offer, offer_up, pass_down, roll_up
from transactive.nodes.wholesale import clear_wholesale


class Layered(Design):
    """Total DSO with a price per node of the tree."""

    name = "layered"
    summary = "Total DSO: devices → homes → feeders → DSO → TSO and back down"
    network: bool = False

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        self.network = self.network or setting.scenario.dso.clearing == "network"
        tree = setting.plan.tree
        dso = np.flatnonzero(tree.kind == Kind.DSO)
        # Per area: the nodes the DSO clears on its network — the first nodes below it that
        # belong to another participant (its own feeder nodes are part of its network).
        self._cleared: list[np.ndarray] = []
        for d in dso:
            own = tree.owner[d]
            area = tree.area == tree.area[d]
            foreign = area & (tree.owner != own) & (tree.owner[np.maximum(tree.parent, 0)] == own)
            self._cleared.append(np.flatnonzero(foreign))
        self._dso = dso

    def forecast(self, t: int) -> FloatArray:
        return self.setting.forecast[t : t + self.setting.horizon]

    def clear(self, t: int, bids: Curves, uncontrolled: Callable[[], FloatArray]) -> Clearing:
        offered = offer_up(self.setting.plan, bids)
        lam, q = clear_wholesale(
            select(offered.curves, [0]), self.wholesale_at(t), self.floor, self.cap
        )
        if self.network:
            return self._clear_network(t, offered, float(lam[0]))
        award, price = self._full(np.nan), self._full(np.nan)
        award[0], price[0] = q[0], lam[0]
        down = pass_down(offered, award, price, self.floor, self.cap)
        return Clearing(
            stage="real-time",
            device_kw=down.device_kw,
            device_price=down.device_price,
            node_kw=down.node_kw,
            node_price=down.node_price,
            status="cleared",
            wholesale_price=float(lam[0]),
            offer=offered,
        )

    def _clear_network(self, t: int, offered: Offer, lam: float) -> Clearing:
        sc = self.setting.scenario
        tree = self.setting.plan.tree
        award, price = self._full(np.nan), self._full(np.nan)
        dso_kw = np.zeros(self._dso.size)
        tables = []
        for a, (d, nodes) in enumerate(zip(self._dso, self._cleared, strict=True)):
            feeder = self.setting.feeders[int(tree.area[d])]
            bus = tree.bus[nodes]
            res = clear_network(
                feeder,
                book_from_curves(np.arange(nodes.size), select(offered.curves, nodes)),
                bus,
                lam,
                limits=sc.limits,
                interval_hours=sc.intervals.hours,
                loss_iterations=sc.dso.loss_iterations,
            )
            dlmp = res.dlmp[0]
            award[nodes] = res.awards
            price[nodes] = np.clip(dlmp[bus], self.floor, self.cap)
            dso_kw[a] = float(res.substation_import_kw[0])
            check_area_balance(res.awards, dso_kw[a], float(res.losses_kw[0]))
            on = ~np.isnan(dlmp)
            tables.append(
                pd.DataFrame(
                    {
                        "area": str(tree.id[d]),
                        "bus": np.asarray(res.bus_names)[on],
                        "dlmp": dlmp[on],
                        "energy": res.energy[0][on],
                        "loss": res.loss[0][on],
                        "congestion": res.congestion[0][on],
                        "voltage": res.voltage[0][on],
                    }
                )
            )
        down = pass_down(offered, award, price, self.floor, self.cap)
        node_price = down.node_price  # NaN at the DSO's own feeder nodes: not settled
        node_kw = np.where(
            np.isnan(down.node_kw), roll_up(self.setting.plan, down.device_kw), down.node_kw
        )
        node_kw[self._dso], node_price[self._dso] = dso_kw, lam
        node_kw[0], node_price[0] = dso_kw.sum(), lam
        return Clearing(
            stage="real-time",
            device_kw=down.device_kw,
            device_price=down.device_price,
            node_kw=node_kw,
            node_price=node_price,
            status="cleared",
            wholesale_price=lam,
            offer=offered,
            dlmp=pd.concat(tables, ignore_index=True),
        )


class LayeredNetwork(Layered):
    """Total DSO with locational prices: each DSO clears its area on its network model."""

    name = "layered-network"
    summary = "Total DSO clearing its network with DLMPs"
    network = True


def check_area_balance(award: FloatArray, import_kw: float, losses_kw: float) -> None:
    """Energy balance of an area market: what the nodes take is what the substation imports
    minus the network losses the clearing accounted for. With energy balanced, money
    balances too: the nodes pay their prices, the DSO pays the wholesale price for the import
    and keeps the difference (congestion and loss rent)."""
    taken = float(award.sum())
    if abs(taken + losses_kw - import_kw) > 1e-6 * (1.0 + abs(import_kw)):
        raise BalanceError(
            f"area market: nodes take {taken} kW + {losses_kw} kW losses, "
            f"the substation imports {import_kw} kW"
        )
