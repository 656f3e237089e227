"""Total DSO (layered): every device bids to its node, nodes to their parents, each DSO
offers the TSO one **network-feasible** curve for its area, and the result flows back down.

Each stage (day-ahead from forecasts, then real-time with what happens):

1. the tree offers up: devices → homes / aggregator portfolios → feeders → DSO;
2. each DSO clears the nodes of other participants in its area (homes, portfolios) on its
   network model (LinDistFlow with voltage and thermal limits and linearised losses,
   :func:`~transactive.market.network.clear_network`) — so what it offers the TSO is what its
   network can carry:

   * against a **price series** (a price-taking area: the substation price does not depend on
     the area's quantity) the network clearing at that price *is* the area's exact
     network-feasible point;
   * against a **merit order** (the areas' quantities move the price) each DSO solves its
     network clearing at a set of substation prices around the forecast
     (:data:`CURVE_POINTS` × the forecast, plus floor and cap) and offers the TSO the
     piecewise-linear curve through those points (sampled with the lossless network model:
     one LP per point); the TSO clears the sum of the areas' curves
     against the merit order, and each DSO clears its network once more at the cleared price.
     The areas' final import is exactly network-feasible at the cleared price; it differs
     from the TSO's reading of the offered curve only by the curve's linear interpolation
     between the sampled prices.

   The day-ahead stage clears on the lossless network model (a schedule from forecasts);
   real time iterates the linearised losses against the AC power flow
   (``dso.loss_iterations``).

3. every cleared node is settled at its bus's DLMP; the DSO pays the TSO the substation price
   for its import and keeps the congestion and loss rent.

:class:`TotalDsoDiversified` adds the synchronisation mitigation: every device shifts its bid
curve by a fixed random price offset (``market.bid_diversity``), so devices that would all
switch at the same price step switch at slightly different prices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, curves_from_arrays, select
from transactive.designs.base import Clearing, Design, Setting, Stage
from transactive.errors import BalanceError
from transactive.market.auction import book_from_curves
from transactive.market.network import NetworkClearing, clear_network
from transactive.nodes.tree import Kind, Offer, offer_up, pass_down, roll_up
from transactive.nodes.wholesale import MeritOrder, clear_wholesale

#: Substation prices, as multiples of the interval's price forecast, at which each DSO
#: samples its network-feasible area curve under a merit order (floor and cap are added).
CURVE_POINTS = (0.5, 0.9, 1.0, 1.1, 2.0)


class TotalDso(Design):
    """Total DSO: network-feasible area curves to the TSO, DLMPs inside each area."""

    name = "total-dso"
    summary = "Total DSO: network-feasible area curves up, DLMPs inside each area"
    stages = ("day-ahead", "real-time")
    diversified: bool = False

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
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
        sc = setting.scenario
        rng = np.random.default_rng([sc.seed, 4])
        self._offset = (
            rng.normal(0.0, sc.market.bid_diversity, setting.plan.n_devices)
            if self.diversified
            else None
        )

    def forecast(self, t: int) -> FloatArray:
        return self.setting.forecast[t : t + self.setting.horizon]

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        if self._offset is not None:
            bids = offset_bids(bids, self._offset, self.floor, self.cap)
        offered = offer_up(self.setting.plan, bids)
        source = self.wholesale_at(t, stage)
        if isinstance(source, MeritOrder):
            lam = self._tso_price(t, offered, source)
        else:
            lam = float(np.clip(source.price[0], self.floor, self.cap))
        return self._clear_areas(stage, offered, lam)

    def _area(
        self, a: int, offered: Offer, lam: float, passes: int | None = None
    ) -> NetworkClearing:
        """Area ``a``'s network clearing at substation price ``lam``; ``passes``: loss
        iterations (default: the scenario's)."""
        sc = self.setting.scenario
        nodes = self._cleared[a]
        tree = self.setting.plan.tree
        return clear_network(
            self.setting.feeders[int(tree.area[self._dso[a]])],
            book_from_curves(np.arange(nodes.size), select(offered.curves, nodes)),
            tree.bus[nodes],
            lam,
            limits=sc.limits,
            interval_hours=sc.intervals.hours,
            loss_iterations=passes or sc.dso.loss_iterations,
        )

    def _tso_price(self, t: int, offered: Offer, source: MeritOrder) -> float:
        """The substation price from the areas' network-feasible curves (module docstring)."""
        f = max(float(self.setting.forecast[t]), 0.01 * (self.cap - self.floor))
        prices = np.unique(np.clip([self.floor, *(f * k for k in CURVE_POINTS), self.cap],
                                   self.floor, self.cap))  # fmt: skip
        total = np.zeros(prices.size)
        for a in range(self._dso.size):
            q = np.array(
                [float(self._area(a, offered, float(p), 1).substation_import_kw[0]) for p in prices]
            )
            total += np.minimum.accumulate(q)  # non-increasing in price (LP round-off)
        curve = curves_from_arrays(prices[None, :], total[None, :])
        lam, _ = clear_wholesale(curve, source, self.floor, self.cap)
        return float(lam[0])

    def _clear_areas(self, stage: Stage, offered: Offer, lam: float) -> Clearing:
        tree = self.setting.plan.tree
        award, price = self._full(np.nan), self._full(np.nan)
        dso_kw = np.zeros(self._dso.size)
        tables = []
        # A day-ahead schedule from forecasts: the lossless network model is close enough (the
        # real-time stage iterates the losses against the AC power flow).
        passes = 1 if stage == "day-ahead" else None
        for a, (d, nodes) in enumerate(zip(self._dso, self._cleared, strict=True)):
            res = self._area(a, offered, lam, passes)
            bus = tree.bus[nodes]
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
            stage=stage,
            device_kw=down.device_kw,
            device_price=down.device_price,
            node_kw=node_kw,
            node_price=node_price,
            status="cleared",
            wholesale_price=lam,
            offer=offered,
            dlmp=pd.concat(tables, ignore_index=True),
        )


class TotalDsoDiversified(TotalDso):
    """Total DSO with diversified bids (a fixed random price offset per device)."""

    name = "total-dso-diversified"
    summary = "Total DSO with diversified device bids (synchronisation mitigation)"
    diversified = True


def offset_bids(bids: Curves, offset: FloatArray, floor: float, cap: float) -> Curves:
    """Every curve's prices shifted by its device's ``offset`` (currency/kWh), kept inside
    ``[floor, cap]`` (a shift keeps each curve non-decreasing in price)."""
    k = bids.curve_index()
    price = np.clip(bids.price + offset[k], floor, cap)
    return Curves(price, bids.quantity, bids.offsets)


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
