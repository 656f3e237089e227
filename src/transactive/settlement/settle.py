"""Settle meter readings at the prices their nodes were awarded.

Every meter sits at a node of the tree; its node's award record says at which price the
node's energy is settled in each interval, and the node's parent's owner is the
counterparty (a home pays its DSO, a DSO pays the TSO). Per meter and interval:

* ``energy``: (import − export) kWh × the node's award price;
* ``network_charge``: import kWh × the design's network charge, for meters of participants
  connected to a DSO's network (not for the DSO's own substation meter).

Amounts are paid by the line's participant to its counterparty (negative = received), so
every line has both sides and money balances by construction; :func:`settle` also checks
that every metered kWh got a finite price (:class:`~transactive.errors.BalanceError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.nodes.tree import Kind, Tree


@dataclass(frozen=True, slots=True)
class Rules:
    """How a design settles: network charge (currency/kWh on imports) and the currency."""

    network_charge: float
    currency: str


def settle(
    meter: pd.DataFrame, awards: pd.DataFrame, tree: Tree, rules: Mapping[str, Rules]
) -> pd.DataFrame:
    """Settlement lines (:data:`~transactive.core.records.SETTLEMENT`) for every meter
    reading, priced from the award records of the same design, node and interval."""
    if meter.empty:
        return SETTLEMENT.empty()
    key = ["design", "node_id", "interval_start"]
    prices = awards[[*key, "price"]]
    # Label columns on one category list each, so the join runs on integer codes.
    same = {c: _union(meter[c], prices[c]) for c in ("design", "node_id")}
    m = meter.assign(design=same["design"][0], node_id=same["node_id"][0]).merge(
        prices.assign(design=same["design"][1], node_id=same["node_id"][1]), on=key, how="left"
    )
    if len(m) != len(meter):
        raise BalanceError("settlement: a node has more than one award per interval")
    missing = ~np.isfinite(m["price"].to_numpy(dtype=float))
    if missing.any():
        r = m[missing].iloc[0]
        raise BalanceError(
            f"settlement: meter {r['resource_id']} ({r['design']}, {r['interval_start']}) "
            f"has no award price"
        )
    pos = pd.Index(tree.id.astype(str)).get_indexer(m["node_id"].astype(str))
    if (pos < 0).any():
        raise BalanceError(f"settlement: meter at unknown node {m['node_id'][pos < 0].iloc[0]!r}")
    parent = tree.parent[pos]
    counterparty = np.where(parent >= 0, tree.owner[np.maximum(parent, 0)], "wholesale")
    dso_owner = _dso_owner_of(tree)[pos]
    on_network = (tree.area[pos] >= 0) & (tree.owner[pos] != dso_owner)
    design = m["design"].astype(str)
    charge = design.map({d: r.network_charge for d, r in rules.items()}).to_numpy(dtype=float)
    currency = design.map({d: r.currency for d, r in rules.items()}).to_numpy(dtype=object)
    imp = m["import_kwh"].to_numpy(dtype=float)
    net = imp - m["export_kwh"].to_numpy(dtype=float)
    price = m["price"].to_numpy(dtype=float)
    ident = {c: m[c].array for c in SETTLEMENT.names[:8]}  # .array keeps dtypes (time zone)
    energy = SETTLEMENT.frame(
        {
            **ident,
            "charge": "energy",
            "quantity_kwh": net,
            "price": price,
            "amount": net * price,
            "currency": currency,
            "counterparty_id": counterparty,
        }
    )
    pays = on_network & (charge != 0) & (imp > 0)
    network = SETTLEMENT.frame(
        {
            **{c: v[pays] for c, v in ident.items()},
            "charge": "network_charge",
            "quantity_kwh": imp[pays],
            "price": charge[pays],
            "amount": imp[pays] * charge[pays],
            "currency": currency[pays],
            "counterparty_id": counterparty[pays],
        }
    )
    return SETTLEMENT.concat([energy, network])


def _union(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Two label columns as categoricals over the same categories."""
    cats = pd.Index(a.astype("category").cat.categories).union(
        pd.Index(b.astype("category").cat.categories)
    )
    return a.astype(pd.CategoricalDtype(cats)), b.astype(pd.CategoricalDtype(cats))


def participant_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """Per design and participant: ``paid`` (to counterparties), ``received`` and ``net``
    (paid − received), currency. Every line has a payer and a payee, so the ``net`` of all
    participants of a design sums to 0 by construction."""
    paid = lines.groupby(["design", "participant_id"], observed=True)["amount"].sum()
    got = lines.groupby(["design", "counterparty_id"], observed=True)["amount"].sum()
    got.index = got.index.set_names(["design", "participant_id"])
    out = pd.concat({"paid": paid, "received": got}, axis=1).fillna(0.0)
    out["net"] = out["paid"] - out["received"]
    return out.reset_index()


def _dso_owner_of(tree: Tree) -> np.ndarray:
    """The owner of each node's DSO (the node's area's DSO), '' above the areas."""
    dso = np.flatnonzero(tree.kind == Kind.DSO)
    owner_of_area = {int(tree.area[d]): tree.owner[d] for d in dso}
    return np.array([owner_of_area.get(int(a), "") for a in tree.area], dtype=object)
