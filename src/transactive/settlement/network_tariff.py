"""The revenue-neutral network tariff: every DSO recovers the same network revenue in every
design, to the cent, under the scenario's rate design.

**Revenue requirement.** A DSO's requirement ``R`` is what it keeps in the business-as-usual
(baseline) design over the evaluated period: the retail revenue from the meters it serves
minus what it pays the TSO for its substation meter (losses included), i.e. its net
receipts from the energy lines, in integer minor units (cents). It is computed per DSO
(area).

**Rate design.** In every design, after energy has been settled at that design's prices, a
DSO's energy margin ``M`` differs from ``R``; the shortfall ``R − M`` (cents) is charged to
the area's home connections (``network`` lines; negative = a rebate), split with the
largest-remainder method so the DSO recovers ``R`` exactly. In the baseline it is zero by
construction. How it is split is the rate design (:class:`RateDesign`):

* ``fixed`` (:data:`FIXED`, the default): equally per home connection for the period. It
  does not change the marginal price of any kWh, so it neither distorts the price signal a
  design sends nor charges storage twice;
* ``volumetric`` (:data:`VOLUMETRIC`): in proportion to each connection's imported kWh;
* ``demand`` (:data:`DEMAND`): in proportion to each connection's peak interval import
  (kW) in the period.

Where an area's connections imported nothing (volumetric, demand) the shortfall is shared
equally. Aggregator portfolio meters are sub-meters behind the homes' connections and pay
no network charge; the DSO's own substation meter pays none either.

A ``network`` line is one per home connection and design for the whole period: its
``interval_start`` is the first settled interval, ``duration_h`` the period's length;
``quantity_kwh`` is the imported kWh and ``price`` the rate (currency/kWh) for
``volumetric``, 0 and NaN otherwise; ``quality`` is ``estimated`` if a reading of the
connection in the period is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes.tree import Kind, Tree
from transactive.settlement.totals import (
    MINOR,
    first_appearance,
    largest_remainder,
    net_matrix,
    positions,
)

#: Charges the revenue requirement is computed from and checked on (energy and network).
TARIFF_CHARGES = ("energy", "day_ahead", "real_time", "network")


@dataclass(frozen=True, slots=True)
class Connections:
    """The home connections of a design's meter readings, one entry per (design, home):
    ``imported_kwh`` over the period, ``peak_kw`` (largest interval import / duration) and
    whether any reading was ``estimated``."""

    imported_kwh: np.ndarray
    peak_kw: np.ndarray
    estimated: np.ndarray


class RateDesign(Protocol):
    """How a DSO's shortfall is split over its home connections."""

    @property
    def name(self) -> str:
        """The scenario name (``settlement.network_rate``)."""
        ...

    def weights(self, c: Connections) -> np.ndarray:
        """Each connection's share weight (≥ 0)."""
        ...

    def quantity_kwh(self, c: Connections) -> np.ndarray:
        """The quantity each connection's line shows (kWh; 0 where the rate is not per kWh)."""
        ...


@dataclass(frozen=True, slots=True)
class _Fixed:
    name: str = "fixed"

    def weights(self, c: Connections) -> np.ndarray:
        return np.ones(c.imported_kwh.size)

    def quantity_kwh(self, c: Connections) -> np.ndarray:
        return np.zeros(c.imported_kwh.size)


@dataclass(frozen=True, slots=True)
class _Volumetric:
    name: str = "volumetric"

    def weights(self, c: Connections) -> np.ndarray:
        return c.imported_kwh

    def quantity_kwh(self, c: Connections) -> np.ndarray:
        return c.imported_kwh


@dataclass(frozen=True, slots=True)
class _Demand:
    name: str = "demand"

    def weights(self, c: Connections) -> np.ndarray:
        return c.peak_kw

    def quantity_kwh(self, c: Connections) -> np.ndarray:
        return np.zeros(c.peak_kw.size)


FIXED: RateDesign = _Fixed()
VOLUMETRIC: RateDesign = _Volumetric()
DEMAND: RateDesign = _Demand()
#: The rate designs by their scenario name (``settlement.network_rate``).
RATE_DESIGNS: dict[str, RateDesign] = {r.name: r for r in (FIXED, VOLUMETRIC, DEMAND)}


def rate_design(name: str | RateDesign) -> RateDesign:
    """The rate design of a scenario name (or the design itself)."""
    if not isinstance(name, str):
        return name
    if name not in RATE_DESIGNS:
        raise InvalidInputError(f"network rate {name!r} is not one of {', '.join(RATE_DESIGNS)}")
    return RATE_DESIGNS[name]


def dso_net_receipts(
    lines: pd.DataFrame, tree: Tree, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """What every DSO receives minus what it pays (minor units, int64), index: design,
    columns: the DSO participants (0 where a DSO has no line in a design); ``mask``: only
    those lines."""
    dsos = tree.owner[tree.kind == Kind.DSO].astype(str)
    if lines.empty:
        return pd.DataFrame(
            np.zeros((0, dsos.size), dtype=np.int64),
            index=pd.Index([], name="design"),
            columns=pd.Index(dsos, name="participant_id"),
        )
    return -net_matrix(lines, dsos, mask)


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
    return table.reindex(index=designs, columns=dsos).fillna(0).astype(np.int64)


def revenue_requirement(energy: pd.DataFrame, tree: Tree, baseline: str) -> pd.Series:
    """Every DSO's revenue requirement (minor units, int64, indexed by DSO participant): its
    net receipts from the ``energy`` lines of design ``baseline`` over the settled period."""
    return requirement_of(dso_net_receipts(energy, tree), baseline)


def requirement_of(table: pd.DataFrame, baseline: str) -> pd.Series:
    """:func:`revenue_requirement` from the DSOs' net receipts from energy per design."""
    if baseline not in table.index:
        raise BalanceError(f"network tariff: baseline design {baseline!r} has no settlement")
    return pd.Series(
        table.loc[baseline].to_numpy(dtype=np.int64), index=table.columns, name="requirement"
    )


def network_lines(
    energy: pd.DataFrame,
    meter: pd.DataFrame,
    tree: Tree,
    requirement: pd.Series,
    rate: str | RateDesign = "fixed",
    margin: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``network`` line of every home connection (a home node with a meter) per design,
    so that each DSO's net receipts equal ``requirement`` (minor units) to the cent, split
    by ``rate`` (see the module doc); ``margin``: :func:`dso_net_receipts` of ``energy``
    if the caller has it."""
    design_rate = rate_design(rate)
    if energy.empty:
        return SETTLEMENT.empty()
    margin = dso_net_receipts(energy, tree) if margin is None else margin
    pos = positions(meter["node_id"], tree.id)
    d_all = positions(meter["design"], margin.index.to_numpy())
    rows = np.flatnonzero((pos >= 0) & (tree.kind[np.maximum(pos, 0)] == Kind.HOME) & (d_all >= 0))
    conn, first = _connections(d_all[rows], pos[rows], tree.n)
    n_conn = first.size
    imp = meter["import_kwh"].to_numpy(dtype=float)[rows]
    kw = imp / meter["duration_h"].to_numpy(dtype=float)[rows]
    est = (meter["quality"] == "estimated").to_numpy(dtype=bool)[rows]
    peak = np.full(n_conn, np.nan)
    np.fmax.at(peak, conn, kw)  # the largest, NaN ignored (a groupby max)
    c = Connections(
        imported_kwh=np.bincount(conn, imp, minlength=n_conn),
        peak_kw=peak,
        estimated=np.bincount(conn, est, minlength=n_conn) > 0,
    )
    del imp, kw, est, conn
    hpos = pos[rows[first]]
    design_of = d_all[rows[first]].astype(np.int64)
    first = rows[first]  # meter rows now
    dso = _dso_owner_of(tree)[hpos].astype(str)
    j = margin.columns.get_indexer(dso)
    want = requirement.reindex(margin.columns).fillna(0).to_numpy(dtype=np.int64)
    short = want[None, :] - margin.to_numpy(dtype=np.int64)  # (design, DSO), minor units
    group = design_of * margin.shape[1] + j
    n = np.bincount(group, minlength=short.size).reshape(short.shape)
    stranded = (short != 0) & (n == 0)
    if stranded.any():
        d, k = (int(x[0]) for x in np.nonzero(stranded))
        raise BalanceError(
            f"network tariff: {margin.columns[k]} must recover {short[d, k] / MINOR:.2f} in "
            f"design {margin.index[d]} but has no metered home connection"
        )
    weight = design_rate.weights(c)
    amount = largest_remainder(short.ravel(), group, weight)
    qty = design_rate.quantity_kwh(c)
    wsum = np.bincount(group, weight, minlength=short.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_per_kwh = np.where(qty != 0, short.ravel()[group] / MINOR / wsum[group], np.nan)

    first_ns, hours = _period_of(energy)
    designs = margin.index.astype(str)
    h = meter.iloc[first]
    return SETTLEMENT.frame(
        {
            "design": h["design"].array,
            "market_id": dso,
            "stage": h["stage"].array,
            "interval_start": pd.to_datetime(first_ns.reindex(designs).to_numpy(), utc=True)[
                design_of
            ],
            "duration_h": hours.reindex(designs).to_numpy(dtype=float)[design_of],
            "participant_id": tree.owner[hpos],
            "resource_id": h["resource_id"].array,
            "node_id": h["node_id"].array,
            "charge": "network",
            "quantity_kwh": qty,
            "price": rate_per_kwh,
            "amount": amount,
            "currency": str(energy["currency"].iloc[0]),
            "counterparty_id": dso,
            "quality": np.where(c.estimated, "estimated", "measured"),
        }
    )


def _connections(
    design: np.ndarray, node: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The connection (design, node) of every row, numbered in order of first appearance
    (0 … n − 1), and the first row of each."""
    key = design.astype(np.int64)
    key *= n_nodes
    key += node
    return first_appearance(key, int(key.max()) + 1 if key.size else 0)


def _period_of(energy: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per design (str index): the first settled interval start (UTC ns) and the length of
    the settled period (h); by blocks of rows, so no line-long temporaries."""
    ns = energy["interval_start"].array.asi8  # UTC ns
    hours_of = energy["duration_h"].to_numpy(dtype=float)
    codes = energy["design"].cat.codes.to_numpy()
    designs = energy["design"].cat.categories
    big = np.iinfo(np.int64)
    lo = np.full(len(designs), big.max, dtype=np.int64)
    hi = np.full(len(designs), big.min, dtype=np.int64)
    present = np.zeros(len(designs), dtype=bool)
    block = 1 << 22
    for i in range(0, ns.size, block):
        n = ns[i : i + block]
        end = n + np.round(hours_of[i : i + block] * 3.6e12).astype(np.int64)
        c = codes[i : i + block]
        for d in np.flatnonzero(np.bincount(c[c >= 0], minlength=len(designs))):
            sel = c == d
            lo[d] = min(lo[d], int(n[sel].min()))
            hi[d] = max(hi[d], int(end[sel].max()))
            present[d] = True
    index = pd.Index(designs[present].astype(str), name="design")
    first_ns = pd.Series(lo[present], index=index)
    hours = pd.Series((hi[present] - lo[present]) / 3.6e12, index=index)
    return first_ns, hours


def _dso_owner_of(tree: Tree) -> np.ndarray:
    """The owner of each node's DSO (the node's area's DSO), '' above the areas."""
    dso = np.flatnonzero(tree.kind == Kind.DSO)
    owner_of_area = {int(tree.area[d]): tree.owner[d] for d in dso}
    return np.array([owner_of_area.get(int(a), "") for a in tree.area], dtype=object)
