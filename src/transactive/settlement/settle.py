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
baseline (business-as-usual) design, through network charges on its home connections by
the scenario's rate design (``network`` lines, :mod:`transactive.settlement.network_tariff`).
If the baseline design is not among the settled designs the requirement is unknown: no
``network`` lines, and only the zero-sum check runs. Levies and VAT follow
(:mod:`transactive.settlement.levies`).

Amounts are integer minor units (cents), each line's round-half-even(quantity × price ×
100), paid by the line's participant to its counterparty (negative = received).
:func:`settle` checks that every metered kWh got a finite price and that money balances
exactly (:func:`check_balance`, :class:`~transactive.errors.BalanceError`): per design and
settlement period what the participants pay equals what their counterparties receive, and
every DSO nets exactly its requirement.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.nodes.tree import Tree
from transactive.settlement.levies import Levy, levy_lines, vat_lines
from transactive.settlement.network_tariff import (
    TARIFF_CHARGES,
    RateDesign,
    dso_net_receipts,
    network_lines,
    requirement_of,
)
from transactive.settlement.p2p import p2p_lines, retail_meter
from transactive.settlement.totals import (
    MINOR,
    int_sums,
    minor_units,
    period_of,
    positions,
)

#: Award stage whose quantity is a day-ahead position (two-settlement).
DAY_AHEAD = "day-ahead"
#: Counterparty of a meter at the root (the root has no parent owner).
WHOLESALE = "wholesale"


def settle(
    meter: pd.DataFrame,
    awards: pd.DataFrame,
    tree: Tree,
    currency: str,
    baseline: str | None,
    *,
    rate: str | RateDesign = "fixed",
    levies: Sequence[Levy] = (),
    vat_percent: float = 0.0,
    vat_payee: str = "state",
    period: str = "whole",
    trades: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Settlement lines (:data:`~transactive.core.records.SETTLEMENT`) of the evaluated
    period: energy (two-settled where the node has day-ahead awards) priced from the award
    records of the same design, node and interval, the network charges (rate design
    ``rate``) that make every DSO recover what it keeps in design ``baseline`` (None or
    absent: none), the ``levies`` on the homes' imports and ``vat_percent`` VAT per home
    and ``period`` (``whole``, ``month``, ``day``). ``trades``: peer-to-peer trades
    (:mod:`transactive.settlement.p2p`): their lines are added and the energy lines
    settle only the metered energy less the traded. Raises
    :class:`~transactive.errors.BalanceError` when a reading has no price or money does
    not balance."""
    retail = meter if trades is None else retail_meter(meter, trades)
    energy = energy_lines(retail, awards, tree, currency)
    del retail
    designs = {str(d) for d in energy["design"].unique()}
    parts, requirement = [energy], None
    if baseline is not None and baseline in designs:
        margin = dso_net_receipts(energy, tree)
        requirement = requirement_of(margin, baseline)
        parts.append(network_lines(energy, meter, tree, requirement, rate, margin))
    parts.append(levy_lines(meter, tree, levies, currency))
    if trades is not None:
        parts.append(p2p_lines(trades, currency=currency, period=period))
    del energy
    lines = SETTLEMENT.concat(parts, consume=True)  # the parts are ours: joined column by column
    del parts
    if vat_percent:
        vat = vat_lines(lines, tree, vat_percent, vat_payee, period)
        lines = SETTLEMENT.concat([lines, vat], consume=True)
    payees = {lv.payee for lv in levies} | ({vat_payee} if vat_percent else set())
    check_balance(lines, tree, requirement, payees=payees, period=period)
    return lines


def energy_lines(
    meter: pd.DataFrame, awards: pd.DataFrame, tree: Tree, currency: str
) -> pd.DataFrame:
    """The ``energy`` / ``day_ahead`` + ``real_time`` lines of every meter reading."""
    if meter.empty:
        return SETTLEMENT.empty()
    da_rows = (awards["stage"] == DAY_AHEAD).to_numpy(dtype=bool)
    m = meter
    at_rt, at_da = _lookup(m, awards, [~da_rows, da_rows])  # award row positions
    two = at_da >= 0
    a_price = awards["price"].to_numpy(dtype=float)
    price = _take(a_price, at_rt)
    p_da = _take(a_price, at_da)
    q_da = _take(awards["quantity_kw"].to_numpy(dtype=float), at_da)
    del at_rt, at_da
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
    payee = np.append(tree.owner.astype(str), WHOLESALE)  # a root meter pays the wholesale
    labels, code = np.unique(payee, return_inverse=True)
    # the counterparty code of every tree node (small), then of every reading
    node_cp = code[np.where(tree.parent >= 0, tree.parent, payee.size - 1)]
    cp = node_cp.astype(np.min_scalar_type(max(labels.size - 1, 0)))[pos]
    del pos
    net = m["import_kwh"].to_numpy(dtype=float) - m["export_kwh"].to_numpy(dtype=float)
    position = q_da * m["duration_h"].to_numpy(dtype=float)
    del q_da
    # One frame for all lines: tariff readings (energy), then two-settled ones twice
    # (day_ahead, real_time); every column is gathered once by row positions straight into
    # its place (no per-part copies: settling a year of 1,000 homes is ~70 M lines).
    one, both = np.flatnonzero(~two), np.flatnonzero(two)
    del two
    rows = np.concatenate([one, both, both])
    sizes = [one.size, both.size, both.size]
    part = np.repeat(np.arange(3, dtype=np.int8), sizes)
    qty = np.empty(rows.size)
    np.take(net, one, out=qty[: sizes[0]])
    np.take(position, both, out=qty[sizes[0] : sizes[0] + sizes[1]])
    np.subtract(net, position, out=net)  # now the deviation from the day-ahead position
    np.take(net, both, out=qty[sizes[0] + sizes[1] :])
    del net, position
    unit = np.empty(rows.size)
    np.take(price, one, out=unit[: sizes[0]])
    np.take(p_da, both, out=unit[sizes[0] : sizes[0] + sizes[1]])
    np.take(price, both, out=unit[sizes[0] + sizes[1] :])
    del price, p_da, one, both
    cols: dict[str, Any] = {c: m[c].array.take(rows) for c in SETTLEMENT.names[:8]}
    stage = pd.Categorical(cols["stage"])
    if DAY_AHEAD not in stage.categories:
        stage = stage.add_categories([DAY_AHEAD])
    codes = stage.codes.copy()
    codes[sizes[0] : sizes[0] + sizes[1]] = list(stage.categories).index(DAY_AHEAD)
    cols["stage"] = pd.Categorical.from_codes(codes, dtype=stage.dtype)
    return SETTLEMENT.frame(
        {
            **cols,
            "charge": pd.Categorical.from_codes(
                part, dtype=pd.CategoricalDtype(["energy", "day_ahead", "real_time"])
            ),
            "quantity_kwh": qty,
            "price": unit,
            "amount": minor_units(qty, unit),
            "currency": _constant(currency, rows.size),
            "counterparty_id": pd.Categorical.from_codes(
                cp.take(rows), dtype=pd.CategoricalDtype(pd.Index(labels))
            ),
            "quality": m["quality"].array.take(rows),
        },
        copy=False,  # every column is fresh
    )


def check_balance(
    lines: pd.DataFrame,
    tree: Tree,
    requirement: pd.Series | None,
    *,
    payees: Collection[str] = (),
    period: str = "whole",
) -> None:
    """Raise :class:`~transactive.errors.BalanceError` unless money balances exactly, in
    integer minor units: every amount is an integer with a payer and a payee among the
    tree's participants, the wholesale and ``payees`` (levy and tax payees); per design and
    settlement ``period`` (``whole``, ``month``, ``day``; :func:`~transactive.settlement.
    totals.period_of`) the sum paid by the payers equals the sum received by the payees;
    and (``requirement`` given: DSO participant → minor units) every DSO's net receipts
    from the tariff's lines (energy and network; flexibility is its own business) equal its
    requirement over each design."""
    if lines.empty:
        return
    if str(lines["amount"].dtype) != "int64":
        raise BalanceError(
            f"settlement: amounts are {lines['amount'].dtype}, not integer minor units (int64)"
        )
    SETTLEMENT.check(lines)
    _check_zero_sum(lines, period)
    known = pd.unique(
        np.array([*tree.owner.astype(str).tolist(), WHOLESALE, *payees], dtype=object)
    )
    for col in ("participant_id", "counterparty_id"):
        unknown = positions(lines[col], known) < 0
        if unknown.any():
            raise BalanceError(
                f"settlement: {col} {lines[col][unknown].iloc[0]!r} is not a participant"
            )
    if requirement is None:
        return
    tariff = lines["charge"].isin(TARIFF_CHARGES).to_numpy(dtype=bool)
    got = dso_net_receipts(lines, tree, tariff)
    want = requirement.reindex(got.columns).to_numpy(dtype=np.int64)
    values = got.to_numpy(dtype=np.int64)
    off = values != want[None, :]
    if off.any():
        d, j = (int(x[0]) for x in np.nonzero(off))
        dso, design = str(got.columns[j]), str(got.index[d])
        raise BalanceError(
            f"settlement: {dso} nets {values[d, j] / MINOR:.2f} in design {design}, "
            f"not its revenue requirement {want[j] / MINOR:.2f} (off by {values[d, j] - want[j]} "
            "minor units)"
        )


def _check_zero_sum(lines: pd.DataFrame, period: str) -> None:
    """Per design and period: what payers pay = what payees receive (integer sums)."""
    per = period_of(lines["interval_start"], period)
    key = lines["design"].cat.codes.to_numpy().astype(np.int64)
    key *= len(per.categories)
    key += per.codes
    amount = lines["amount"].to_numpy(dtype=np.int64)
    n = len(lines["design"].cat.categories) * len(per.categories)
    total = int_sums(key, amount, n)
    sums = []
    for col in ("participant_id", "counterparty_id"):  # all lines less those without one
        none = np.flatnonzero(lines[col].isna().to_numpy(dtype=bool))
        sums.append(pd.Series(total - int_sums(key[none], amount[none], n)))
    paid, received = sums
    off = paid.to_numpy() != received.to_numpy()
    if off.any():
        k = int(paid.index[np.flatnonzero(off)[0]])
        design = lines["design"].cat.categories[k // len(per.categories)]
        label = per.categories[k % len(per.categories)]
        raise BalanceError(
            f"settlement: in design {design}, period {label} the payers pay "
            f"{int(paid[k])} but the payees receive {int(received[k])} minor units"
        )


def _constant(label: str, n: int) -> pd.Categorical[Any]:
    """``n`` rows of one label, as a categorical (no string per row)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=pd.CategoricalDtype([label]))


def _lookup(meter: pd.DataFrame, awards: pd.DataFrame, masks: list[np.ndarray]) -> list[np.ndarray]:
    """For every meter row, the position (in ``awards``; among the rows selected by each
    mask) of the award with the same design, node and interval (−1: none), on one integer key per
    row (no string joins, no row copies); raises :class:`~transactive.errors.BalanceError`
    if a selection has a key twice."""
    frames = [meter, awards]
    labels = {c: _labels_of([f[c] for f in frames]) for c in ("design", "node_id")}
    ns = [np.asarray(pd.DatetimeIndex(f["interval_start"]).asi8) for f in frames]  # UTC ns
    t_codes, n_t = _time_codes(ns)
    n_node = labels["node_id"].size + 1
    n_key = (labels["design"].size + 1) * n_node * n_t
    keys = []
    for f, t in zip(frames, t_codes, strict=True):
        key = positions(f["design"], labels["design"]).astype(np.int64, copy=False)
        key += 1  # −1 (missing) → 0
        key *= n_node
        key += positions(f["node_id"], labels["node_id"])
        key += 1
        key *= n_t
        key += t  # in place: these are as long as the tables
        keys.append(key)
    dense = n_key <= 4 * (ns[0].size + ns[1].size) + 1024
    out = []
    for mask in masks:
        row = np.flatnonzero(mask)
        k = keys[1][row]
        if dense:  # a table over every possible key: two passes, no hashing
            table = np.full(n_key, -1, dtype=np.int64)
            table[k] = row
            unique = bool((table[k] == row).all())  # a repeat overwrote one
            at = table[keys[0]]
        else:
            index = pd.Index(k)
            unique = index.is_unique
            if unique:
                at = index.get_indexer(pd.Index(keys[0]))
                at = np.where(at >= 0, row[np.maximum(at, 0)] if row.size else -1, -1)
        if not unique:
            raise BalanceError("settlement: a node has more than one award per stage and interval")
        out.append(at)
    return out


def _time_codes(ns: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Integer codes (0 … n − 1, the same code for the same instant in every array) of
    several arrays of UTC ns, and n. Times on a common grid (the usual case) are coded
    by their step from the earliest, without hashing; otherwise by factorizing."""
    sizes = [a.size for a in ns]
    if sum(sizes) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in ns], 1
    lo = min(int(a.min()) for a in ns if a.size)
    hi = max(int(a.max()) for a in ns if a.size)
    if lo != np.iinfo(np.int64).min and hi - lo < 2**62:  # no NaT, no overflow
        sample = np.concatenate([a[:: max(1, a.size // 4096)] for a in ns]) - lo
        step = int(np.gcd.reduce(sample))
        if step == 0:
            return [np.zeros(n, dtype=np.int64) for n in sizes], 1
        span = (hi - lo) // step + 1
        if span <= 4 * sum(sizes) + 1024:
            codes = [a - lo for a in ns]
            block = 1 << 20  # the remainders by blocks: no second table-long array
            if all(
                not (c[i : i + block] % step).any() for c in codes for i in range(0, c.size, block)
            ):  # every time is on the sample's grid
                for c in codes:
                    c //= step
                return codes, span
    code, uniq = pd.factorize(np.concatenate(ns))
    return list(np.split(code.astype(np.int64), np.cumsum(sizes)[:-1])), len(uniq)


def _take(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` at positions ``at`` (NaN where −1)."""
    if not values.size:
        return np.full(at.size, np.nan)
    out = values.take(at, mode="wrap")  # −1 takes the last; set to NaN below
    out[at < 0] = np.nan
    return out


def _labels_of(columns: list[pd.Series]) -> np.ndarray:
    """The distinct labels of several label columns (categories only, for categoricals)."""
    parts = [
        c.cat.categories.astype(str) if isinstance(c.dtype, pd.CategoricalDtype) else c.astype(str)
        for c in columns
    ]
    return np.asarray(pd.unique(np.concatenate([np.asarray(p, dtype=object) for p in parts])))
