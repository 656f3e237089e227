"""Money per participant from settlement lines."""

from __future__ import annotations

import numpy as np
import pandas as pd


def participant_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """Per design and participant: ``paid`` (to counterparties), ``received`` and ``net``
    (paid − received), currency. :func:`transactive.settlement.check_balance` checks that
    the ``net`` of all participants of a design sums to 0."""
    paid = lines.groupby(["design", "participant_id"], observed=True)["amount"].sum()
    got = lines.groupby(["design", "counterparty_id"], observed=True)["amount"].sum()
    got.index = got.index.set_names(["design", "participant_id"])
    out = pd.concat({"paid": paid, "received": got}, axis=1).fillna(0.0)
    out["net"] = out["paid"] - out["received"]
    return out.reset_index()


def positions(column: pd.Series, labels: np.ndarray) -> np.ndarray:
    """Position of each row's label of ``column`` in ``labels`` (unique; −1 where absent
    or missing); a categorical column looks up its categories only, not every row."""
    index = pd.Index(np.asarray(labels).astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        at = index.get_indexer(column.cat.categories.astype(str))
        codes = column.cat.codes.to_numpy()
        return np.where(codes >= 0, at[np.maximum(codes, 0)], -1)
    return index.get_indexer(column.astype(str))


def by_design_participant(values: pd.Series, lines: pd.DataFrame, who: str) -> pd.Series:
    """Sum of ``values`` per (design, ``who`` column) of ``lines``, index labels as str."""
    out = values.groupby([lines["design"], lines[who]], observed=True).sum()
    out.index = pd.MultiIndex.from_arrays(
        [out.index.get_level_values(i).astype(str) for i in (0, 1)],
        names=["design", "participant_id"],
    )
    return out
