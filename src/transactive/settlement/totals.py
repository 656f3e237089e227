"""Money per participant from settlement lines, and the integer-money helpers.

Money is held in integer minor units (cents): a line's amount is rounded once, half to
even, and every sum of money is an integer sum. Currency (a float) appears only at the
display edge (:func:`to_currency`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError

#: Minor units (cents) per unit of currency (EUR, USD).
MINOR = 100
#: Settlement periods: the evaluated period as one, calendar months or days (UTC).
PERIODS = ("whole", "month", "day")
#: The label of the one period of ``period="whole"``.
WHOLE = "all"


def minor_units(quantity: np.ndarray, price: np.ndarray | float) -> np.ndarray:
    """round-half-even(quantity × price × 100): the amount of each line in minor units
    (int64); quantity kWh, price currency/kWh (both finite: checked by the callers)."""
    out = np.multiply(np.asarray(quantity, dtype=float), price)
    out *= MINOR  # in place, the same operations in the same order: one temporary array
    return np.rint(out, out=out).astype(np.int64)


def to_currency(minor: Any) -> Any:
    """Minor units → currency (float), for display and statistics only."""
    return minor / MINOR


def format_minor(minor: object) -> str:
    """``-1234`` → ``"-12.34"``: exact decimal text of an amount in minor units."""
    value = int(minor)  # type: ignore[call-overload]
    sign = "-" if value < 0 else ""
    whole, cents = divmod(abs(value), MINOR)
    return f"{sign}{whole}.{cents:02d}"


def int_sums(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact integer sums of int64 ``values`` per ``group`` (0 … n − 1), int64. Where every
    partial sum stays below 2**53 in magnitude (max |value| × rows), float64 adds integers
    exactly, so the fast ``bincount`` is used; otherwise an integer groupby."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return np.zeros(n, dtype=np.int64)
    if _float_exact(values):
        return np.bincount(group, values.astype(float), minlength=n).astype(np.int64)
    return _int_groupby(group, values, n)


def _float_exact(values: np.ndarray) -> bool:
    """Whether float64 sums of any subset of int64 ``values`` are exact (< 2**53)."""
    bound = max(abs(int(values.min())), abs(int(values.max()))) if values.size else 0
    return float(bound) * values.size < 2.0**53


def _int_groupby(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    sums = pd.Series(values).groupby(np.asarray(group)).sum()
    out = np.zeros(n, dtype=np.int64)
    out[sums.index.to_numpy()] = sums.to_numpy(dtype=np.int64)
    return out


def net_matrix(
    lines: pd.DataFrame, labels: np.ndarray, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """Net paid (paid − received, minor units, int64) per design (rows, in category order of
    the designs present) and participant of ``labels`` (columns), from the lines selected by
    ``mask``; summed per (design, participant) category code, then mapped to ``labels``
    (one integer key array per side, no row copies)."""
    d_codes = lines["design"].cat.codes.to_numpy()
    designs = lines["design"].cat.categories if len(lines) else pd.Index([])
    present = np.flatnonzero(
        np.bincount(d_codes.astype(np.intp) + 1, minlength=len(designs) + 1)[1:]
    )
    k = len(labels)
    amount = lines["amount"].to_numpy(dtype=np.int64)
    weight = amount.astype(float) if _float_exact(amount) else None
    net = np.zeros((len(designs), k), dtype=np.int64)
    for col, sign in (("participant_id", 1), ("counterparty_id", -1)):
        codes, cats = _codes_of(lines[col])
        width = len(cats) + 1
        key = d_codes.astype(np.int64)  # (design + 1) × width + code + 1: bin 0 … = missing
        key += 1
        key *= width
        key += codes
        key += 1
        if mask is not None:
            key[~mask] = 0  # a missing design's bin, dropped below
        n_bins = (len(designs) + 1) * width
        if weight is not None:
            sums = np.bincount(key, weight, minlength=n_bins).astype(np.int64)
        else:
            sums = _int_groupby(key, amount, n_bins)
        del key
        at = np.asarray(pd.Index(np.asarray(labels).astype(str)).get_indexer(cats.astype(str)))
        hit = at >= 0  # categories are unique, so are their labels
        net[:, at[hit]] += sign * sums.reshape(len(designs) + 1, width)[1:, 1:][:, hit]
    table = net[present]
    return pd.DataFrame(
        table,
        index=pd.Index(np.asarray(designs)[present].astype(str), name="design"),
        columns=pd.Index(np.asarray(labels).astype(str), name="participant_id"),
    )


def _codes_of(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Category codes (−1 missing) and categories of a label column (factorized if it is
    not categorical)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), column.cat.categories
    codes, uniq = pd.factorize(np.asarray(column, dtype=object))
    return codes, pd.Index(uniq)


def participant_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """Per design and participant: ``paid`` (to counterparties), ``received`` and ``net``
    (paid − received), integer minor units. :func:`transactive.settlement.check_balance`
    checks that the ``net`` of all participants of a design sums to 0."""
    amount = lines["amount"]
    paid = amount.groupby([lines["design"], lines["participant_id"]], observed=True).sum()
    got = amount.groupby([lines["design"], lines["counterparty_id"]], observed=True).sum()
    paid.index = paid.index.set_names(["design", "participant_id"])
    got.index = got.index.set_names(["design", "participant_id"])
    out = pd.concat({"paid": paid, "received": got}, axis=1).fillna(0).astype(np.int64)
    out["net"] = out["paid"] - out["received"]
    return out.reset_index()


def period_of(starts: pd.Series, period: str) -> pd.Categorical[Any]:
    """The settlement period of every row by its ``interval_start`` (UTC): ``"all"`` for
    ``whole``, ``"YYYY-MM"`` for ``month``, ``"YYYY-MM-DD"`` for ``day`` (a categorical,
    no string per row)."""
    if period not in PERIODS:
        raise InvalidInputError(f"settlement period {period!r} is not one of {PERIODS}")
    n = len(starts)
    if period == "whole":
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([WHOLE]))
    ns = np.asarray(pd.DatetimeIndex(starts).asi8).view("datetime64[ns]")
    coarse = ns.astype("datetime64[M]" if period == "month" else "datetime64[D]")
    codes, uniq = pd.factorize(coarse, sort=True)
    labels = pd.Index(np.datetime_as_string(np.asarray(uniq)).astype(object))
    return pd.Categorical.from_codes(codes, categories=labels)


def positions(column: pd.Series, labels: np.ndarray) -> np.ndarray:
    """Position of each row's label of ``column`` in ``labels`` (unique; −1 where absent
    or missing); a categorical column looks up its categories only, not every row."""
    index = pd.Index(np.asarray(labels).astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        lut = np.append(index.get_indexer(column.cat.categories.astype(str)), -1)
        return np.asarray(lut[column.cat.codes.to_numpy()])  # code −1 (missing) → the last, −1
    return index.get_indexer(column.astype(str))


def by_design_participant(values: pd.Series, lines: pd.DataFrame, who: str) -> pd.Series:
    """Sum of ``values`` per (design, ``who`` column) of ``lines``, index labels as str."""
    out = values.groupby([lines["design"], lines[who]], observed=True).sum()
    out.index = pd.MultiIndex.from_arrays(
        [out.index.get_level_values(i).astype(str) for i in (0, 1)],
        names=["design", "participant_id"],
    )
    return out


def largest_remainder(total: np.ndarray, group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Split ``total[g]`` (int64 minor units) over the rows of each group ``g`` in proportion
    to ``weight`` (≥ 0): every row gets the floor of its exact share and the cents left over
    go, one each, to the rows with the largest fractional remainders (ties: the earlier row),
    so each group's shares sum to its total exactly. A group whose weights sum to 0 shares
    equally."""
    total = np.asarray(total, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    w = np.asarray(weight, dtype=float)
    n_groups = total.size
    count = np.bincount(group, minlength=n_groups)
    wsum = np.bincount(group, w, minlength=n_groups)
    w = np.where(wsum[group] > 0, w, 1.0)  # no weight at all: equal shares
    wsum = np.where(wsum > 0, wsum, count)
    exact = total[group] * (w / np.where(wsum > 0, wsum, 1.0)[group])
    base = np.floor(exact).astype(np.int64)
    given = np.zeros(n_groups, dtype=np.int64)
    np.add.at(given, group, base)
    left = total - given  # ≈ 0 … count − 1; exact integers whatever the float error
    q, r = np.divmod(left, np.maximum(count, 1))
    order = np.lexsort((np.arange(group.size), -(exact - base), group))
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank = np.empty(group.size, dtype=np.int64)
    rank[order] = np.arange(group.size) - start[group[order]]
    out: np.ndarray = base + q[group] + (rank < r[group])
    return out


def first_appearance(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct keys (0 … ``n_keys`` − 1; negative: the row has none) in order of
    first appearance: each row's number (−1 for none) and the first row of each number. On
    a dense table when ``n_keys`` is at most 4 × the rows (no hashing), else factorized."""
    key = np.asarray(key, dtype=np.int64)
    if n_keys > 4 * key.size + 1024:
        code, uniq = pd.factorize(key)
        first = np.full(uniq.size, -1, dtype=np.int64)
        first[code[::-1]] = np.arange(code.size - 1, -1, -1)
        real = np.flatnonzero(np.asarray(uniq) >= 0)  # codes are already in order of appearance
        number = np.full(uniq.size, -1, dtype=np.int64)
        number[real] = np.arange(real.size)
        return number[code], first[real]
    slot = np.where(key >= 0, key, n_keys)  # slot n_keys: rows without a key
    first_row = np.full(n_keys + 1, key.size, dtype=np.int64)
    first_row[slot[::-1]] = np.arange(key.size - 1, -1, -1)  # the last write is the first row
    seen = np.flatnonzero(first_row[:n_keys] < key.size)
    order = seen[np.argsort(first_row[seen], kind="stable")]
    number = np.full(n_keys + 1, -1, dtype=np.int64)
    number[order] = np.arange(order.size)
    return number[slot], first_row[order]


def in_labels(column: pd.Series, labels: np.ndarray) -> np.ndarray:
    """Whether each row's label of ``column`` is among ``labels`` (bool; a categorical
    column looks up its categories only)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        index = pd.Index(np.asarray(labels).astype(str))
        lut = np.append(index.get_indexer(column.cat.categories.astype(str)) >= 0, False)
        return np.asarray(lut[column.cat.codes.to_numpy()])
    return positions(column, labels) >= 0
