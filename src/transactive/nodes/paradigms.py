"""Market paradigms for one interval of a distribution area, on plain arrays.

Every function takes the devices' bid curves (one per device, kW vs $/kWh) and returns an
:class:`AreaClearing`: each device's award and the price it is settled at.

* :func:`tariff` — ``baseline`` / ``tou``: a retail price; devices read their own curve at it.
* :func:`grand_central` — Minimal DSO: every device bids straight into the wholesale market.
* :func:`layered` — Total DSO: devices → their node (home or aggregator, clipped to its
  limit) → DSO (clipped to the substation limit) → wholesale, and back down at each node's
  internal price.
* :func:`layered_network` — as layered, but the DSO clears its nodes on the feeder model
  (LinDistFlow, :func:`~transactive.market.network.clear_network`) at the wholesale price
  and settles every node at its bus's DLMP.

Energy balances at every node (:func:`~transactive.nodes.layer.pass_down`) and in the area
market (:func:`check_area_balance`) are checked on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, IntArray, block_curves, quantity_at
from transactive.errors import BalanceError
from transactive.grid.limits import Limits
from transactive.grid.model import Feeder
from transactive.market.auction import book_from_curves
from transactive.market.network import clear_network
from transactive.nodes.layer import Layer, make_layer, offer, pass_down
from transactive.nodes.wholesale import MeritOrder, PriceSeries, clear_wholesale

Wholesale = PriceSeries | MeritOrder


@dataclass(frozen=True)
class AreaClearing:
    """One interval's outcome for an area.

    awards: kW per device (+ bought, − sold), in the order of the curves.
    device_price: $/kWh each device is settled at.
    price: the interval's price shown to the area ($/kWh; energy-weighted mean of the node
        prices under network clearing); wholesale: $/kWh; area_kw: net import (kW).
    dlmp: per bus DLMP and its components ($/kWh), network clearing only.
    """

    awards: FloatArray
    device_price: FloatArray
    price: float
    wholesale: float
    area_kw: float
    dlmp: pd.DataFrame | None = None


def tariff(
    curves: Curves, price: float, source: Wholesale, floor: float, cap: float
) -> AreaClearing:
    """Devices read their curves at a retail ``price``; the area's net load is bought at the
    wholesale market as a price-taker (which sets the wholesale price it pays)."""
    awards = quantity_at(curves, price)
    area = float(awards.sum())
    taker = block_curves([cap], [area]) if area >= 0 else block_curves([floor], [area])
    lam, _ = clear_wholesale(taker, source, floor, cap)
    return AreaClearing(awards, np.full(curves.n, price), price, float(lam[0]), area)


def grand_central(curves: Curves, source: Wholesale, floor: float, cap: float) -> AreaClearing:
    """Every device bids straight into the wholesale market; nothing in between clips."""
    top = make_layer(np.zeros(curves.n, dtype=np.int64), 1)
    lam, q = clear_wholesale(offer(top, curves), source, floor, cap)
    internal, awards = pass_down(top, curves, q, floor, cap, lam)
    p = float(internal[0])
    return AreaClearing(awards, np.full(curves.n, p), p, float(lam[0]), float(q[0]))


def layered(
    curves: Curves,
    node_of_device: IntArray,
    node_limit_kw: FloatArray,
    substation_limit_kw: float,
    source: Wholesale,
    floor: float,
    cap: float,
) -> AreaClearing:
    """Total DSO with a uniform area price: devices → nodes (limit per node, kW) → DSO
    (substation limit, kW) → wholesale, and back down."""
    nodes = make_layer(node_of_device, node_limit_kw.size, node_limit_kw, node_limit_kw)
    node_curves = offer(nodes, curves)
    dso = _dso(nodes.n, substation_limit_kw)
    lam, q = clear_wholesale(offer(dso, node_curves), source, floor, cap)
    area_price, node_award = pass_down(dso, node_curves, q, floor, cap, lam)
    node_price = np.full(nodes.n, area_price[0])
    check_area_balance(node_award, float(q[0]), 0.0)
    return _down(nodes, curves, node_award, node_price, float(lam[0]), float(q[0]), floor, cap)


def layered_network(
    curves: Curves,
    node_of_device: IntArray,
    node_limit_kw: FloatArray,
    node_bus: IntArray,
    feeder: Feeder,
    substation_limit_kw: float,
    source: Wholesale,
    floor: float,
    cap: float,
    interval_hours: float,
) -> AreaClearing:
    """Total DSO with locational prices: the nodes' curves (each at its bus) are cleared on
    the feeder at the wholesale price found for the area's net curve; nodes are settled at
    their bus's DLMP. Reverse flow is allowed (it is reported, not forbidden)."""
    nodes = make_layer(node_of_device, node_limit_kw.size, node_limit_kw, node_limit_kw)
    node_curves = offer(nodes, curves)
    lam, _ = clear_wholesale(
        offer(_dso(nodes.n, substation_limit_kw), node_curves), source, floor, cap
    )
    res = clear_network(
        feeder,
        book_from_curves(np.arange(nodes.n), node_curves),
        node_bus,
        float(lam[0]),
        limits=Limits(max_reverse_flow_kw=None),
        interval_hours=interval_hours,
        loss_iterations=2,
    )
    dlmp = res.dlmp[0]
    node_price = np.clip(dlmp[node_bus], floor, cap)
    area = float(res.substation_import_kw[0])
    check_area_balance(res.awards, area, float(res.losses_kw[0]))
    out = _down(nodes, curves, res.awards, node_price, float(lam[0]), area, floor, cap)
    on = ~np.isnan(dlmp)
    table = pd.DataFrame(
        {
            "bus": np.asarray(res.bus_names)[on],
            "dlmp": dlmp[on],
            "energy": res.energy[0][on],
            "loss": res.loss[0][on],
            "congestion": res.congestion[0][on],
            "voltage": res.voltage[0][on],
        }
    )
    return AreaClearing(out.awards, out.device_price, out.price, out.wholesale, area, table)


def check_area_balance(award: FloatArray, import_kw: float, losses_kw: float) -> None:
    """Energy balance of the area market: what the nodes take is what the substation
    imports minus the network losses the clearing accounted for (none in uniform clearing).
    With energy balanced, money balances too: the nodes pay their prices, the DSO pays the
    wholesale price for the import and keeps the difference (congestion and loss rent)."""
    taken = float(award.sum())
    if abs(taken + losses_kw - import_kw) > 1e-6 * (1.0 + abs(import_kw)):
        raise BalanceError(
            f"area market: nodes take {taken} kW + {losses_kw} kW losses, "
            f"the substation imports {import_kw} kW"
        )


def _dso(n_nodes: int, limit_kw: float) -> Layer:
    """The DSO: one node over all the area's nodes, clipped to the substation limit (kW)."""
    return make_layer(np.zeros(n_nodes, dtype=np.int64), 1, limit_kw, limit_kw)


def _down(
    nodes: Layer,
    curves: Curves,
    node_award: FloatArray,
    node_price: FloatArray,
    wholesale: float,
    area: float,
    floor: float,
    cap: float,
) -> AreaClearing:
    """Pass each node's award down to its devices at the node's price."""
    _, awards = pass_down(nodes, curves, node_award, floor, cap, node_price)
    price = float(np.average(node_price, weights=np.abs(node_award) + 1e-12))
    return AreaClearing(awards, node_price[nodes.parent], price, wholesale, area)
