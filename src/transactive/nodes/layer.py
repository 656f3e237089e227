"""A layer of transactive nodes: the two operations every node has, vectorised over nodes.

Every node — home energy manager, aggregator, feeder, DSO — has one interface up and one
down (DESIGN.md, "The one idea"):

* **up** (:func:`offer`): the node's bid curve is the sum of its children's curves, clipped
  to its own physical band ``[−export_limit, +import_limit]`` (service, transformer or tie
  limit);
* **down** (:func:`pass_down`): given the quantity its parent awarded it, the node finds its
  own *internal* price — the price at which its children's summed curve takes exactly that
  quantity — and reads every child's curve there, sharing any step at that price pro rata.
  When the node's limit does not bind, the internal price is the parent's price; when it
  binds, the internal price rises (import limit) or falls (export limit) until the children
  fit, so the children that value the energy most keep it.

A layer is many nodes of one kind at once: ``parent[i]`` is the node of child ``i``. A node
sees only its own children's curves (not their children): that is the privacy model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from transactive.core.curves import (
    Curves,
    FloatArray,
    IntArray,
    aggregate,
    clip,
    dispatch,
    price_interval,
)
from transactive.errors import BalanceError, InvalidInputError

BALANCE_ATOL_KW = 1e-6


@dataclass(frozen=True, slots=True)
class Layer:
    """``n`` nodes of one kind and the map from their children to them.

    parent: node index (0 … n−1) of every child.
    import_limit, export_limit: per node, kW ≥ 0 (``inf`` for none).
    """

    parent: IntArray
    import_limit: FloatArray
    export_limit: FloatArray

    def __post_init__(self) -> None:
        n = self.import_limit.size
        if self.export_limit.size != n:
            raise InvalidInputError("import_limit and export_limit need one value per node")
        if self.parent.size and (self.parent.min() < 0 or self.parent.max() >= n):
            raise InvalidInputError(f"child assigned to a node outside 0 … {n - 1}")
        for name, v in (("import_limit", self.import_limit), ("export_limit", self.export_limit)):
            if not (v >= 0).all():
                raise InvalidInputError(f"{name} must be ≥ 0 kW (inf for no limit)")

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.import_limit.size)


def make_layer(
    parent: ArrayLike,
    n: int,
    import_limit: ArrayLike = np.inf,
    export_limit: ArrayLike = np.inf,
) -> Layer:
    """A layer of ``n`` nodes; limits in kW (scalar or one per node)."""
    return Layer(
        np.asarray(parent, dtype=np.int64).ravel(),
        np.broadcast_to(np.asarray(import_limit, dtype=np.float64), (n,)).copy(),
        np.broadcast_to(np.asarray(export_limit, dtype=np.float64), (n,)).copy(),
    )


def offer(layer: Layer, children: Curves) -> Curves:
    """Each node's curve: its children's curves summed, clipped to its band (kW vs $/kWh)."""
    if children.n != layer.parent.size:
        raise InvalidInputError(f"{children.n} child curves for {layer.parent.size} children")
    return clip(aggregate(children, layer.parent, layer.n), layer.export_limit, layer.import_limit)


def pass_down(
    layer: Layer,
    children: Curves,
    award: ArrayLike,
    floor: float,
    cap: float,
    parent_price: ArrayLike | None = None,
    summed: Curves | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Disaggregate each node's award (kW) to its children.

    Returns ``(internal_price, child_award)``: the node's internal price ($/kWh, one per
    node) and every child's quantity (kW). The internal price is the parent's price
    (``parent_price``, per node) whenever the children take the award at that price, else
    the price at which they do (midpoint of the range, see
    :func:`~transactive.core.curves.price_at`). The children of each node sum to its
    award — checked; an award the children cannot take at any price in ``[floor, cap]``
    raises :class:`~transactive.errors.BalanceError`. ``summed``: the children's curves
    summed per node (before clipping), when the caller has them from :func:`offer`.
    """
    q = np.broadcast_to(np.asarray(award, dtype=np.float64), (layer.n,))
    if summed is None:
        summed = aggregate(children, layer.parent, layer.n)
    lo, hi = price_interval(summed, q, floor, cap)
    internal = 0.5 * (lo + hi)
    if parent_price is not None:
        pp = np.broadcast_to(np.asarray(parent_price, dtype=np.float64), (layer.n,))
        internal = np.where((lo <= pp) & (pp <= hi), pp, internal)
    if np.isnan(internal).any():
        i = int(np.argmax(np.isnan(internal)))
        raise BalanceError(f"node {i}: its children cannot take the awarded {q[i]} kW")
    child = dispatch(children, internal, q, layer.parent)
    got = np.bincount(layer.parent, weights=child, minlength=layer.n)
    err = np.abs(got - q)
    if (err > BALANCE_ATOL_KW + 1e-9 * np.abs(q)).any():
        i = int(np.argmax(err))
        raise BalanceError(f"node {i}: children take {got[i]} kW of an award of {q[i]} kW")
    return internal, child
