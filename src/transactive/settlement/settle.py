"""Settle meter readings at the prices their nodes were awarded, then true up the network.

Every meter sits at a node of the tree; its node's award records say at which prices the
node's energy is settled in each interval, and the node's parent's owner is the
counterparty (a home pays its DSO, an aggregator portfolio pays the DSO of its feeder, a DSO
pays the TSO for its substation meter). Per meter and interval (charges of
:data:`~transactive.core.records.SETTLEMENT`):

* tariff designs (the node's award has no ``day-ahead`` stage): ``energy`` =
  (import − export) kWh × the node's award price;
* market designs (two-settlement): ``day_ahead`` = the day-ahead position
  ``q_da_kw × duration_h`` at the node's day-ahead price, and ``real_time`` = the deviation
  (import − export) − ``q_da_kw × duration_h`` at the node's real-time price. A position
  delivered exactly pays the day-ahead price only.

Then every DSO recovers its network revenue requirement, the margin it keeps in the
baseline (business-as-usual) design, through a fixed charge per home connection
(``network`` lines, :mod:`transactive.settlement.network_tariff`). If the baseline design is
not among the settled designs the requirement is unknown: only energy is settled (no
``network`` lines) and only the zero-sum check runs.

Amounts are paid by the line's participant to its counterparty (negative = received).
:func:`settle` checks that every metered kWh got a finite price and that money balances
(:func:`check_balance`, :class:`~transactive.errors.BalanceError`): per design the
participants' net sums to 0 and every DSO nets exactly its requirement, to the cent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.nodes.tree import Tree
from transactive.settlement.network_tariff import (
    dso_table,
    network_lines,
    revenue_requirement,
)
from transactive.settlement.totals import participant_totals, positions

#: Award stage whose quantity is a day-ahead position (two-settlement).
DAY_AHEAD = "day-ahead"
#: Counterparty of a meter at the root (the root has no parent owner).
WHOLESALE = "wholesale"
#: Money balances when every sum is within half a cent (currency).
CENT = 0.005


def settle(
    meter: pd.DataFrame,
    awards: pd.DataFrame,
    tree: Tree,
    currency: str,
    baseline: str | None,
) -> pd.DataFrame:
    """Settlement lines (:data:`~transactive.core.records.SETTLEMENT`) of the evaluated
    period: energy (two-settled where the node has day-ahead awards) priced from the award
    records of the same design, node and interval, plus the fixed network charges that make
    every DSO recover what it keeps in design ``baseline`` (None or absent: energy only).
    Raises :class:`~transactive.errors.BalanceError` when a reading has no price or money
    does not balance."""
    energy = energy_lines(meter, awards, tree, currency)
    designs = set(energy["design"].astype(str))
    if baseline is None or baseline not in designs:
        check_balance(energy, tree, None)
        return energy
    requirement = revenue_requirement(energy, tree, baseline)
    lines = SETTLEMENT.concat([energy, network_lines(energy, meter, tree, requirement)])
    check_balance(lines, tree, requirement)
    return lines


def energy_lines(
    meter: pd.DataFrame, awards: pd.DataFrame, tree: Tree, currency: str
) -> pd.DataFrame:
    """The ``energy`` / ``day_ahead`` + ``real_time`` lines of every meter reading."""
    if meter.empty:
        return SETTLEMENT.empty()
    da_rows = (awards["stage"] == DAY_AHEAD).to_numpy(dtype=bool)
    m = meter.reset_index(drop=True)
    at_rt, at_da = _lookup(m, [awards[~da_rows], awards[da_rows]])
    two = at_da >= 0
    price = _take(awards.loc[~da_rows, "price"], at_rt)
    p_da = _take(awards.loc[da_rows, "price"], at_da)
    q_da = _take(awards.loc[da_rows, "quantity_kw"], at_da)
    missing = ~np.isfinite(price) | (two & ~(np.isfinite(p_da) & np.isfinite(q_da)))
    if missing.any():
        r = m[missing].iloc[0]
        what = "day-ahead award" if two[missing][0] and np.isfinite(price[missing][0]) else "award"
        raise BalanceError(
            f"settlement: meter {r['resource_id']} ({r['design']}, {r['interval_start']}) "
            f"has no {what} price"
        )
    pos = positions(m["node_id"], tree.id)
    if (pos < 0).any():
        raise BalanceError(f"settlement: meter at unknown node {m['node_id'][pos < 0].iloc[0]!r}")
    parent = tree.parent[pos]
    payee = np.append(tree.owner.astype(str), WHOLESALE)  # a root meter pays the wholesale
    labels, code = np.unique(payee, return_inverse=True)
    counterparty = pd.Categorical.from_codes(
        code[np.where(parent >= 0, parent, payee.size - 1)],
        dtype=pd.CategoricalDtype(pd.Index(labels)),
    )
    net = m["import_kwh"].to_numpy(dtype=float) - m["export_kwh"].to_numpy(dtype=float)
    position = q_da * m["duration_h"].to_numpy(dtype=float)
    ident = {c: m[c].array for c in SETTLEMENT.names[:8]}  # .array keeps dtypes (time zone)

    def part(mask: np.ndarray, charge: str, qty: np.ndarray, unit: np.ndarray) -> pd.DataFrame:
        cols = {c: v[mask] for c, v in ident.items()}
        n = int(mask.sum())
        if charge == "day_ahead":
            cols["stage"] = _constant(DAY_AHEAD, n)
        return SETTLEMENT.frame(
            {
                **cols,
                "charge": _constant(charge, n),
                "quantity_kwh": qty[mask],
                "price": unit[mask],
                "amount": qty[mask] * unit[mask],
                "currency": _constant(currency, n),
                "counterparty_id": counterparty[mask],
            }
        )

    return SETTLEMENT.concat(
        [
            part(~two, "energy", net, price),
            part(two, "day_ahead", position, p_da),
            part(two, "real_time", net - position, price),
        ]
    )


def check_balance(lines: pd.DataFrame, tree: Tree, requirement: pd.Series | None) -> None:
    """Raise :class:`~transactive.errors.BalanceError` unless, per design, the net of all
    participants sums to 0 and (``requirement`` given: DSO participant → currency) every
    DSO's net receipts equal its requirement, both to the cent, and every amount is finite
    with a payer and a payee among the tree's participants."""
    if lines.empty:
        return
    amount = lines["amount"].to_numpy(dtype=float)
    if not np.isfinite(amount).all():
        r = lines[~np.isfinite(amount)].iloc[0]
        raise BalanceError(f"settlement: line {r['charge']} of {r['resource_id']} has no amount")
    totals = participant_totals(lines)
    for design, net in totals.groupby("design", observed=True)["net"]:
        if abs(float(net.sum())) > CENT:
            raise BalanceError(
                f"settlement: in design {design} the participants' net sums to "
                f"{float(net.sum()):.4f}, not 0 (a line without a counterparty?)"
            )
    known = pd.unique(np.array([*tree.owner.astype(str).tolist(), WHOLESALE], dtype=object))
    for col in ("participant_id", "counterparty_id"):
        unknown = positions(lines[col], known) < 0
        if unknown.any():
            raise BalanceError(
                f"settlement: {col} {lines[col][unknown].iloc[0]!r} is not a participant"
            )
    if requirement is None:
        return
    got = dso_table(totals, tree)
    want = requirement.reindex(got.columns).to_numpy(dtype=float)
    off = np.abs(got.to_numpy(dtype=float) - want) > CENT
    if off.any():
        d, j = (int(x[0]) for x in np.nonzero(off))
        values = got.to_numpy(dtype=float)
        dso, design, value = str(got.columns[j]), str(got.index[d]), values[d, j]
        raise BalanceError(
            f"settlement: {dso} nets {value:.4f} in design {design}, "
            f"not its revenue requirement {want[j]:.4f}"
        )


def _constant(label: str, n: int) -> pd.Categorical[Any]:
    """``n`` rows of one label, as a categorical (no string per row)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=pd.CategoricalDtype([label]))


def _lookup(meter: pd.DataFrame, tables: list[pd.DataFrame]) -> list[np.ndarray]:
    """For every meter row, the position of the row of each table with the same design,
    node and interval (−1: none), on one integer key per row (no string joins); raises
    :class:`~transactive.errors.BalanceError` if a table has a key twice."""
    frames = [meter, *tables]
    labels = {c: _labels_of([f[c] for f in frames]) for c in ("design", "node_id")}
    ns = [np.asarray(pd.DatetimeIndex(f["interval_start"]).asi8) for f in frames]  # UTC ns
    t_code, t_uniq = pd.factorize(np.concatenate(ns))
    n_node = labels["node_id"].size + 1
    keys, offset = [], 0
    for f, n in zip(frames, ns, strict=True):
        design = positions(f["design"], labels["design"]).astype(np.int64)
        node = positions(f["node_id"], labels["node_id"]).astype(np.int64) + 1  # −1 → 0
        keys.append((design * n_node + node) * len(t_uniq) + t_code[offset : offset + n.size])
        offset += n.size
    out = []
    for key in keys[1:]:
        index = pd.Index(key)
        if not index.is_unique:
            raise BalanceError("settlement: a node has more than one award per stage and interval")
        out.append(index.get_indexer(keys[0]))
    return out


def _take(column: pd.Series, at: np.ndarray) -> np.ndarray:
    """``column``'s values at positions ``at`` (NaN where −1)."""
    values = column.to_numpy(dtype=float)
    return np.where(at >= 0, values[np.maximum(at, 0)] if values.size else np.nan, np.nan)


def _labels_of(columns: list[pd.Series]) -> np.ndarray:
    """The distinct labels of several label columns (categories only, for categoricals)."""
    parts = [
        c.cat.categories.astype(str) if isinstance(c.dtype, pd.CategoricalDtype) else c.astype(str)
        for c in columns
    ]
    return np.asarray(pd.unique(np.concatenate([np.asarray(p, dtype=object) for p in parts])))
