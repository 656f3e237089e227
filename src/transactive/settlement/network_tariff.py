"""The revenue-neutral network tariff: every DSO recovers the same network revenue in every
design.

**Revenue requirement.** A DSO's requirement ``R`` is what it keeps in the business-as-usual
(baseline) design over the evaluated period: the retail revenue from the meters it serves
minus what it pays the TSO for its substation meter (losses included), i.e. its net
receipts from the energy lines. It is computed per DSO (area), in the scenario's currency.

**Rate design.** In every design, after energy has been settled at that design's prices, a
DSO's energy margin ``M`` (net receipts from energy: retail or DLMP revenue − wholesale
cost) differs from ``R``; the difference is recovered by a **fixed charge per home
connection** of the area for the period, ``(R − M) / number of home connections``, paid by
each home to its DSO (``network`` lines; negative = a rebate). In the baseline it is zero
by construction. A fixed per-connection charge does not change the marginal price of any
kWh, so it neither distorts the price signal a design sends nor charges storage twice (once
on charging, once on the home's later import). Aggregator portfolio meters are sub-meters
behind the homes' connections and pay no network charge, so the aggregator's bids already
contain every charge it pays. The DSO's own substation meter pays none either.

A ``network`` line is one per home connection and design for the whole period: its
``interval_start`` is the first settled interval, ``duration_h`` the period's length,
``quantity_kwh`` 0 and ``price`` NaN (a fixed charge has no unit price); ``amount`` is the
charge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.nodes.tree import Kind, Tree
from transactive.settlement.totals import participant_totals, positions


def dso_net_receipts(lines: pd.DataFrame, tree: Tree) -> pd.DataFrame:
    """What every DSO receives minus what it pays (currency), index: design, columns: the
    DSO participants (0 where a DSO has no line in a design)."""
    return dso_table(participant_totals(lines), tree)


def dso_table(totals: pd.DataFrame, tree: Tree) -> pd.DataFrame:
    """:func:`dso_net_receipts` from :func:`~transactive.settlement.participant_totals`."""
    dsos = pd.Index(tree.owner[tree.kind == Kind.DSO].astype(str), name="participant_id")
    designs = pd.Index(pd.unique(totals["design"].astype(str)), name="design")
    t = totals[totals["participant_id"].astype(str).isin(dsos)]
    table = -t.pivot_table(
        index=t["design"].astype(str),
        columns=t["participant_id"].astype(str),
        values="net",
        aggfunc="sum",
    )
    return table.reindex(index=designs, columns=dsos).fillna(0.0)


def revenue_requirement(energy: pd.DataFrame, tree: Tree, baseline: str) -> pd.Series:
    """Every DSO's revenue requirement (currency, indexed by DSO participant): its net
    receipts from the ``energy`` lines of design ``baseline`` over the settled period."""
    table = dso_net_receipts(energy, tree)
    if baseline not in table.index:
        raise BalanceError(f"network tariff: baseline design {baseline!r} has no settlement")
    return pd.Series(
        table.loc[baseline].to_numpy(dtype=float), index=table.columns, name="requirement"
    )


def network_lines(
    energy: pd.DataFrame, meter: pd.DataFrame, tree: Tree, requirement: pd.Series
) -> pd.DataFrame:
    """The fixed ``network`` line of every home connection (a home node with a meter) per
    design, so that each DSO's net receipts equal ``requirement`` (see the module doc)."""
    if energy.empty:
        return SETTLEMENT.empty()
    pos = positions(meter["node_id"], tree.id)
    homes = meter[(pos >= 0) & (tree.kind[np.maximum(pos, 0)] == Kind.HOME)]
    homes = homes.groupby(["design", "node_id"], observed=True, sort=False).head(1)
    hpos = positions(homes["node_id"], tree.id)
    dso = _dso_owner_of(tree)[hpos].astype(str)
    design = homes["design"].astype(str).to_numpy()

    margin = dso_net_receipts(energy, tree)
    short = requirement.reindex(margin.columns).to_numpy(dtype=float) - margin.to_numpy(float)
    n = (
        pd.crosstab(pd.Series(design, name="design"), pd.Series(dso, name="dso"))
        .reindex(index=margin.index, columns=margin.columns)
        .fillna(0)
        .to_numpy(dtype=float)
    )
    stranded = (np.abs(short) > 0.005) & (n == 0)
    if stranded.any():
        d, j = (int(x[0]) for x in np.nonzero(stranded))
        raise BalanceError(
            f"network tariff: {margin.columns[j]} must recover {short[d, j]:.2f} in design "
            f"{margin.index[d]} but has no metered home connection"
        )
    per_home = np.divide(short, n, out=np.zeros_like(short), where=n > 0)
    di = margin.index.get_indexer(design)
    ji = margin.columns.get_indexer(dso)
    amount = per_home[di, ji]

    ns = pd.Series(energy["interval_start"].array.asi8, index=energy.index)  # UTC ns
    end = ns + np.round(energy["duration_h"].to_numpy(dtype=float) * 3.6e12).astype(np.int64)
    first_ns = ns.groupby(energy["design"], observed=True).min()
    hours = (end.groupby(energy["design"], observed=True).max() - first_ns) / 3.6e12
    first = pd.Series(pd.to_datetime(first_ns.to_numpy(), utc=True), index=first_ns.index)
    first.index, hours.index = first.index.astype(str), hours.index.astype(str)
    return SETTLEMENT.frame(
        {
            "design": homes["design"].array,
            "market_id": dso,
            "stage": homes["stage"].array,
            "interval_start": first.reindex(design).to_numpy(),
            "duration_h": hours.reindex(design).to_numpy(dtype=float),
            "participant_id": tree.owner[hpos],
            "resource_id": homes["resource_id"].array,
            "node_id": homes["node_id"].array,
            "charge": "network",
            "quantity_kwh": 0.0,
            "price": np.nan,
            "amount": amount,
            "currency": energy["currency"].astype(str).iloc[0],
            "counterparty_id": dso,
        }
    )


def _dso_owner_of(tree: Tree) -> np.ndarray:
    """The owner of each node's DSO (the node's area's DSO), '' above the areas."""
    dso = np.flatnonzero(tree.kind == Kind.DSO)
    owner_of_area = {int(tree.area[d]): tree.owner[d] for d in dso}
    return np.array([owner_of_area.get(int(a), "") for a in tree.area], dtype=object)
