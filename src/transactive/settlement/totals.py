"""Money per participant from settlement lines."""

from __future__ import annotations

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
