"""The tree of transactive nodes, built once, and the two operations over all of it.

A :class:`Tree` holds every node as arrays: id, kind, parent, owner (participant), area,
bus (where physical) and import/export limits (kW). Parents come before their children, so
the levels (depths) are known without a search. Devices hang off nodes (``device_node``).

A :class:`Plan` fixes, once per tree and device placement, which curves each node receives
at each level. Then, every interval:

* :func:`offer_up` — from the deepest level to the root, each node's curve is the sum of
  its children's curves (its devices' and its child nodes'), clipped to its limits; each
  level is one vectorised :func:`~transactive.nodes.layer.offer` call, so every level is
  aggregated exactly once per interval;
* :func:`pass_down` — from the nodes a market awarded (any set of nodes: the TSO, a DSO's
  nodes under network clearing) down to the devices, each node disaggregates its award to
  its children at its internal price, with the energy balance checked at every node;
* :func:`roll_up` — where devices ran without a market (tariffs), each node's quantity is
  the sum of its devices'.

A node only ever receives its own children's curves (the privacy model of DESIGN.md §1);
:attr:`Offer.received` records which curves each node got, for audit and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from transactive.core.curves import (
    Curves,
    FloatArray,
    IntArray,
    aggregate,
    clip,
    concat,
    select,
)
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes.layer import BALANCE_ATOL_KW, Layer, make_layer
from transactive.nodes.layer import pass_down as layer_pass_down

ObjArray = NDArray[np.object_]


class Kind(StrEnum):
    """What a node is."""

    TSO = "tso"
    DSO = "dso"
    FEEDER = "feeder"
    MICROGRID = "microgrid"
    HOME = "home"
    AGGREGATOR = "aggregator"


@dataclass(frozen=True)
class Tree:
    """Named nodes as arrays, parents before children (``parent[i] < i``; the root has −1).

    id, kind, owner: per node (owner = participant id); area: index of the DSO area the node
    belongs to (−1 above the areas); bus: bus position in its area's feeder (−1 where not
    physical); import_limit, export_limit: kW ≥ 0 (``inf`` for none).
    """

    id: ObjArray
    kind: ObjArray
    parent: IntArray
    owner: ObjArray
    area: IntArray
    bus: IntArray
    import_limit: FloatArray
    export_limit: FloatArray

    def __post_init__(self) -> None:
        n = self.id.size
        for name in ("kind", "parent", "owner", "area", "bus", "import_limit", "export_limit"):
            if getattr(self, name).size != n:
                raise InvalidInputError(
                    f"tree: {name} has {getattr(self, name).size} values for {n} nodes"
                )
        if n == 0:
            raise InvalidInputError("tree: no nodes")
        if len(set(self.id.tolist())) != n:
            dup = next(x for x in self.id.tolist() if list(self.id).count(x) > 1)
            raise InvalidInputError(f"tree: node id {dup!r} is not unique")
        roots = np.flatnonzero(self.parent < 0)
        if roots.size != 1 or roots[0] != 0:
            raise InvalidInputError("tree: node 0 must be the only root (parent −1)")
        if (self.parent[1:] >= np.arange(1, n)).any():
            i = 1 + int(np.argmax(self.parent[1:] >= np.arange(1, n)))
            raise InvalidInputError(f"tree: node {self.id[i]!r} is listed before its parent")
        if not ((self.import_limit >= 0).all() and (self.export_limit >= 0).all()):
            raise InvalidInputError("tree: limits must be ≥ 0 kW (inf for none)")

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.id.size)

    @cached_property
    def depth(self) -> IntArray:
        """Depth of every node (root 0)."""
        d = np.zeros(self.n, dtype=np.int64)
        for i in range(1, self.n):  # parents first: one pass, once per tree
            d[i] = d[self.parent[i]] + 1
        return d

    def children(self, i: int) -> IntArray:
        """Positions of the child nodes of node ``i``."""
        return np.flatnonzero(self.parent == i)


class TreeBuilder:
    """Collects nodes (parents first) and freezes them into a :class:`Tree`."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, Kind, int, str, int, int, float, float]] = []
        self._pos: dict[str, int] = {}

    def add(
        self,
        node_id: str,
        kind: Kind,
        parent: str | None,
        owner: str,
        *,
        area: int = -1,
        bus: int = -1,
        import_limit: float = np.inf,
        export_limit: float = np.inf,
    ) -> int:
        """Add a node under ``parent`` (``None`` for the root); returns its position."""
        if node_id in self._pos:
            raise InvalidInputError(f"tree: node id {node_id!r} is not unique")
        if parent is not None and parent not in self._pos:
            raise InvalidInputError(f"tree: parent {parent!r} of {node_id!r} is not in the tree")
        p = -1 if parent is None else self._pos[parent]
        self._pos[node_id] = len(self._rows)
        self._rows.append((node_id, kind, p, owner, area, bus, import_limit, export_limit))
        return self._pos[node_id]

    def build(self) -> Tree:
        """The tree of every node added."""
        cols = list(zip(*self._rows, strict=True)) if self._rows else [()] * 8
        return Tree(
            id=np.array(cols[0], dtype=object),
            kind=np.array([str(k) for k in cols[1]], dtype=object),
            parent=np.array(cols[2], dtype=np.int64),
            owner=np.array(cols[3], dtype=object),
            area=np.array(cols[4], dtype=np.int64),
            bus=np.array(cols[5], dtype=np.int64),
            import_limit=np.array(cols[6], dtype=np.float64),
            export_limit=np.array(cols[7], dtype=np.float64),
        )


@dataclass(frozen=True)
class Level:
    """One depth of a :class:`Plan`: its nodes and the curves they receive.

    nodes: positions (in the tree) of the nodes at this depth; devices: the devices attached
    to them; kids: the child nodes (next depth). The layer maps the children — devices first,
    then kids — to the position of their parent within ``nodes``.
    """

    nodes: IntArray
    devices: IntArray
    kids: IntArray
    layer: Layer


@dataclass(frozen=True)
class Plan:
    """A tree with devices placed on it: the static structure every interval reuses."""

    tree: Tree
    device_node: IntArray  # node position of every device
    levels: tuple[Level, ...]  # by depth, root first

    @property
    def n_devices(self) -> int:
        """Number of devices."""
        return int(self.device_node.size)


def make_plan(tree: Tree, device_node: IntArray) -> Plan:
    """The per-level structure of ``tree`` with devices attached at ``device_node``."""
    dev = np.asarray(device_node, dtype=np.int64)
    if dev.size and (dev.min() < 0 or dev.max() >= tree.n):
        raise InvalidInputError("devices attached to a node outside the tree")
    depth = tree.depth
    local = np.zeros(tree.n, dtype=np.int64)  # position of each node within its level
    levels = []
    for d in range(int(depth.max()) + 1):
        nodes = np.flatnonzero(depth == d)
        local[nodes] = np.arange(nodes.size)
        devices = np.flatnonzero(depth[dev] == d) if dev.size else np.zeros(0, dtype=np.int64)
        kids = np.flatnonzero(depth == d + 1)
        parent = np.concatenate([local[dev[devices]], local[tree.parent[kids]]])
        layer = make_layer(parent, nodes.size, tree.import_limit[nodes], tree.export_limit[nodes])
        levels.append(Level(nodes, devices, kids, layer))
    return Plan(tree, dev, tuple(levels))


@dataclass(frozen=True)
class Offer:
    """The curves of one interval at every level of a plan.

    curves: one per node (tree order), the node's curve after clipping (kW vs $/kWh);
    children: per level, the curves the level's nodes received (devices first, then kids);
    summed: per level, each node's children summed before clipping (reused by
    :func:`pass_down`, so every level is aggregated once per interval).
    """

    plan: Plan
    curves: Curves
    children: tuple[Curves, ...]
    summed: tuple[Curves, ...]
    device_curves: Curves = field(repr=False)

    def received(self, i: int) -> list[str]:
        """Ids of what node ``i`` received a curve from: its devices (``"device:<k>"``) and
        its child nodes."""
        lv = self.plan.levels[int(self.plan.tree.depth[i])]
        mine = lv.layer.parent == int(np.flatnonzero(lv.nodes == i)[0])
        items = [f"device:{k}" for k in lv.devices] + [str(self.plan.tree.id[k]) for k in lv.kids]
        return [x for x, m in zip(items, mine, strict=True) if m]


def offer_up(plan: Plan, device_curves: Curves) -> Offer:
    """Every node's curve for one interval, deepest level first (one aggregation per level)."""
    if device_curves.n != plan.n_devices:
        raise InvalidInputError(f"{device_curves.n} device curves for {plan.n_devices} devices")
    n = plan.tree.n
    below: Curves | None = None  # the curves of the level below, in its node order
    per_level: list[Curves] = [device_curves] * len(plan.levels)
    children: list[Curves] = [device_curves] * len(plan.levels)
    summed: list[Curves] = [device_curves] * len(plan.levels)
    for d in range(len(plan.levels) - 1, -1, -1):
        lv = plan.levels[d]
        parts = [select(device_curves, lv.devices)]
        if below is not None:
            parts.append(below)
        kids = concat(parts)
        children[d] = kids
        summed[d] = aggregate(kids, lv.layer.parent, lv.layer.n)
        below = clip(summed[d], lv.layer.export_limit, lv.layer.import_limit)
        per_level[d] = below
    # Node curves in tree order: gather from the levels.
    order = np.concatenate([lv.nodes for lv in plan.levels])
    stacked = concat(per_level)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return Offer(plan, select(stacked, inverse), tuple(children), tuple(summed), device_curves)


@dataclass(frozen=True)
class Passed:
    """The result of :func:`pass_down`.

    node_kw: award of every node (kW; NaN above the nodes the market awarded);
    node_price: the price each node was awarded at ($/kWh; NaN likewise);
    internal_price: each node's internal price ($/kWh), the price its children saw;
    device_kw: every device's award (kW); device_price: the award price of its node.
    """

    node_kw: FloatArray
    node_price: FloatArray
    internal_price: FloatArray
    device_kw: FloatArray
    device_price: FloatArray


def pass_down(
    offered: Offer, award_kw: FloatArray, price: FloatArray, floor: float, cap: float
) -> Passed:
    """Disaggregate the awards of some nodes to every device below them.

    ``award_kw`` and ``price`` hold, per node (tree order), the quantity and price a market
    awarded it, NaN for the nodes it did not award; every device must sit below exactly one
    awarded node. Each awarded node passes its award to its children at its internal price
    (its parent's price while its limits do not bind), level by level; the children of
    every node sum to its award (checked).
    """
    plan = offered.plan
    tree = plan.tree
    node_kw = np.array(award_kw, dtype=np.float64)
    node_price = np.array(price, dtype=np.float64)
    internal = np.full(tree.n, np.nan)
    device_kw = np.full(plan.n_devices, np.nan)
    for d, lv in enumerate(plan.levels):
        active = np.isfinite(node_kw[lv.nodes])
        if not active.any():
            continue
        child_parent = lv.layer.parent
        take = active[child_parent]
        remap = np.cumsum(active) - 1
        sub = make_layer(
            remap[child_parent[take]],
            int(active.sum()),
            lv.layer.import_limit[active],
            lv.layer.export_limit[active],
        )
        nodes = lv.nodes[active]
        kids_curves = select(offered.children[d], np.flatnonzero(take))
        p_int, child_kw = layer_pass_down(
            sub,
            kids_curves,
            node_kw[nodes],
            floor,
            cap,
            node_price[nodes],
            summed=select(offered.summed[d], np.flatnonzero(active)),
        )
        got = np.bincount(sub.parent, weights=child_kw, minlength=sub.n)
        err = np.abs(got - node_kw[nodes])
        if (err > BALANCE_ATOL_KW + 1e-9 * np.abs(node_kw[nodes])).any():
            i = nodes[int(np.argmax(err))]
            raise BalanceError(
                f"node {tree.id[i]!r}: its children take {got[np.argmax(err)]} kW of an award "
                f"of {node_kw[i]} kW"
            )
        internal[nodes] = p_int
        full = np.full(child_parent.size, np.nan)
        full[take] = child_kw
        n_dev = lv.devices.size
        device_kw[lv.devices[take[:n_dev]]] = full[:n_dev][take[:n_dev]]
        kid_take = take[n_dev:]
        kids = lv.kids[kid_take]
        already = np.isfinite(node_kw[kids])
        if already.any():
            raise InvalidInputError(
                f"node {tree.id[kids[already][0]]!r} is awarded twice (by a market and its parent)"
            )
        node_kw[kids] = full[n_dev:][kid_take]
        node_price[kids] = internal[tree.parent[kids]]
    if np.isnan(device_kw).any():
        k = int(np.argmax(np.isnan(device_kw)))
        raise BalanceError(f"device {k} (node {tree.id[plan.device_node[k]]!r}) got no award")
    return Passed(node_kw, node_price, internal, device_kw, node_price[plan.device_node])


def roll_up(plan: Plan, device_kw: FloatArray) -> FloatArray:
    """Each node's net power (kW): the sum of every device below it."""
    tree = plan.tree
    total: FloatArray = np.asarray(
        np.bincount(plan.device_node, weights=device_kw, minlength=tree.n), dtype=np.float64
    )
    for lv in plan.levels[:0:-1]:  # deepest level first, one vectorised sum per level
        np.add.at(total, tree.parent[lv.nodes], total[lv.nodes])
    return total
