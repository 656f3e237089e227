"""Levies and taxes on the homes' energy.

* A **levy** (scenario ``settlement.levies``: ``{name, per_kwh, on = "import", payee}``) is a
  charge per imported kWh: one ``levy:<name>`` line per home meter reading with an import,
  ``import_kwh`` × ``per_kwh`` (currency/kWh), paid by the home to the levy's ``payee`` (a
  participant id outside the tree such as ``"state"``, which the balance check accepts).
* **VAT** (``settlement.vat_percent``): one ``vat`` line per home participant, design and
  settlement period, ``vat_percent`` of the sum of its taxable lines (everything it pays
  except flexibility and VAT: energy, day-ahead, real-time, network, levies), rounded once
  to the cent (half to even), paid to ``settlement.vat_payee``. A net exporter's VAT is
  negative (a refund). ``quantity_kwh`` 0, ``price`` NaN; ``interval_start`` the first of
  the taxed lines, ``duration_h`` up to the end of the last.

Both default to none / 0: the German default tariff (BDEW's average household price) is an
all-in price that already contains the levies, surcharges and VAT, so adding them again would
count them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import InvalidInputError
from transactive.nodes.tree import Kind, Tree
from transactive.settlement.totals import (
    first_appearance,
    in_labels,
    int_sums,
    minor_units,
    period_of,
    positions,
)

#: VAT rates are exact to 1 / VAT_SCALE percent.
VAT_SCALE = 1_000_000
#: Charges VAT is not levied on.
UNTAXED = ("vat", "flex_availability", "flex_utilisation", "flex_penalty")


@dataclass(frozen=True, slots=True)
class Levy:
    """A levy on the homes' imports: ``per_kwh`` currency/kWh paid to ``payee``."""

    name: str
    per_kwh: float
    payee: str = "state"
    on: str = "import"

    def __post_init__(self) -> None:
        if not self.name or not self.payee:
            raise InvalidInputError(f"levy {self!r}: name and payee must not be empty")
        if not np.isfinite(self.per_kwh):
            raise InvalidInputError(f"levy {self.name!r}: per_kwh {self.per_kwh} is not finite")
        if self.on != "import":
            raise InvalidInputError(f"levy {self.name!r}: on = {self.on!r}; only 'import'")


def levy_lines(
    meter: pd.DataFrame, tree: Tree, levies: Sequence[Levy], currency: str
) -> pd.DataFrame:
    """The ``levy:<name>`` lines of every home meter reading with an import (see the
    module doc)."""
    if not levies or meter.empty:
        return SETTLEMENT.empty()
    pos = positions(meter["node_id"], tree.id)
    imp = meter["import_kwh"].to_numpy(dtype=float)
    rows = np.flatnonzero((pos >= 0) & (tree.kind[np.maximum(pos, 0)] == Kind.HOME) & (imp > 0))
    del pos
    q = imp[rows]
    # the identity of the taxed readings, gathered once and shared by every levy's lines
    ident = {c: meter[c].array.take(rows) for c in (*SETTLEMENT.names[:8], "quality")}
    parts = [
        SETTLEMENT.frame(
            {
                **{c: ident[c] for c in SETTLEMENT.names[:8]},
                "charge": _constant(f"levy:{levy.name}", q.size),
                "quantity_kwh": q,
                "price": np.full(q.size, levy.per_kwh),
                "amount": minor_units(q, levy.per_kwh),
                "currency": _constant(currency, q.size),
                "counterparty_id": _constant(levy.payee, q.size),
                "quality": ident["quality"],
            },
            copy=False,  # fresh arrays, joined (copied) below
        )
        for levy in levies
    ]
    return SETTLEMENT.concat(parts, consume=True)


def vat_lines(
    lines: pd.DataFrame, tree: Tree, vat_percent: float, payee: str, period: str = "whole"
) -> pd.DataFrame:
    """The ``vat`` line of every home participant per design and ``period`` (see the module
    doc); none when ``vat_percent`` is 0."""
    if not 0 <= vat_percent <= 100 or not np.isfinite(vat_percent):
        raise InvalidInputError(f"VAT {vat_percent} % is not within 0 … 100")
    if vat_percent == 0 or lines.empty:
        return SETTLEMENT.empty()
    homes = np.unique(tree.owner[tree.kind == Kind.HOME].astype(str))
    taxed = in_labels(lines["participant_id"], homes) & ~in_labels(
        lines["charge"], np.array(UNTAXED)
    )
    if not taxed.any():
        return SETTLEMENT.empty()
    # one group per (design, period, participant), numbered in order of first appearance
    per = period_of(lines["interval_start"], period)
    codes = [lines["design"].cat.codes, pd.Series(per.codes), lines["participant_id"].cat.codes]
    key = np.zeros(len(lines), dtype=np.int64)
    n_keys = 1
    for code in codes:
        c = np.asarray(code)
        width = int(c[taxed].max()) + 1
        key *= width
        key += c
        n_keys *= width
    key[~taxed] = -1
    group, first = first_appearance(key, n_keys)
    del key
    n = first.size
    base = np.zeros(n + 1, dtype=np.int64)  # slot n: the untaxed lines, dropped
    start = np.full(n + 1, np.iinfo(np.int64).max)
    stop = np.full(n + 1, np.iinfo(np.int64).min)
    estimated = np.zeros(n + 1, dtype=bool)
    slot = np.where(group >= 0, group, n)
    amount = lines["amount"].to_numpy(dtype=np.int64)
    ns = lines["interval_start"].array.asi8
    hours = lines["duration_h"].to_numpy(dtype=float)
    est = in_labels(lines["quality"], np.array(["estimated"]))
    block = 1 << 22  # by blocks of lines: no line-long temporaries
    for i in range(0, slot.size, block):
        g, b = slot[i : i + block], slice(i, i + block)
        base += int_sums(g, amount[b], n + 1)
        np.minimum.at(start, g, ns[b])
        np.maximum.at(stop, g, ns[b] + np.round(hours[b] * 3.6e12).astype(np.int64))
        estimated |= np.bincount(g, est[b], minlength=n + 1) > 0
    base, start, stop, estimated = base[:n], start[:n], stop[:n], estimated[:n]
    f = lines.iloc[first]
    return SETTLEMENT.frame(
        {
            **{c: f[c].array for c in ("design", "participant_id", "resource_id", "node_id")},
            "market_id": _constant(payee, n),
            "stage": f["stage"].array,
            "interval_start": pd.to_datetime(start, utc=True),
            "duration_h": (stop - start) / 3.6e12,
            "charge": _constant("vat", n),
            "quantity_kwh": np.zeros(n),
            "price": np.full(n, np.nan),
            "amount": vat_of(base, vat_percent),
            "currency": f["currency"].array,
            "counterparty_id": _constant(payee, n),
            "quality": np.where(estimated, "estimated", "measured"),
        }
    )


def vat_of(base_minor: np.ndarray, vat_percent: float) -> np.ndarray:
    """VAT on taxable amounts (minor units), rounded once, half to even, in exact integer
    arithmetic (the rate is taken to 1e-6 %) (int64)."""
    num = round(vat_percent * VAT_SCALE)
    den = 100 * VAT_SCALE
    q, r = np.divmod(np.asarray(base_minor, dtype=np.int64) * num, den)
    up = (2 * r > den) | ((2 * r == den) & (q % 2 == 1))
    out: np.ndarray = q + up
    return out


def _constant(label: str, n: int) -> pd.Categorical[Any]:
    """``n`` rows of one label, as a categorical (no string per row)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=pd.CategoricalDtype([label]))
