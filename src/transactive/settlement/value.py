"""Value per stakeholder: what each group paid over the evaluated period, what its stored
energy gained or lost, and the change against business as usual.

Stakeholders (one row each per design): homes by ownership group (``"homes: <group>"``,
e.g. ``"homes: pv+battery"``), every aggregator, **each DSO separately** (its row shows that
it recovers its revenue requirement in every design) and the TSO (the wholesale
counterparty), each under its participant id. The rows partition the participants, so
``members × amount`` sums to 0 over a design's rows.

Columns (means per member over the evaluated period; currency as settled):

* ``members``: participants in the stakeholder (homes of the group; 1 for a DSO);
* ``energy_kwh``: net metered import (import − export) of the participants' own meters
  (kWh); the TSO, which has no meter, shows minus what it delivers;
* ``amount``: what it paid (+) / received (−), every settlement line (energy, day-ahead,
  real-time, network, levies, VAT), in currency: the integer sum of the lines' minor units
  / 100;
* ``end_state``: the value of the change of its devices' stored energy, (stored at the end
  − stored at the start) kWh × ``storage_price`` (currency/kWh; the caller passes the mean
  day-ahead price of the period). The start is the stored energy at the end of the last
  dispatch interval before the design's first settled interval (the warm-up's last); if the
  dispatch holds none, the end of the first settled interval (that interval's change is
  then not valued). Without a ``stored_kwh`` dispatch column the end state is 0;
* ``net_cost`` = ``amount − end_state``: energy left in storage is value kept, energy
  drained from the initial state is value consumed;
* ``change_vs_bau``: ``net_cost`` − the same stakeholder's ``net_cost`` in the baseline
  design (NaN without the baseline);
* ``all_in_price``: ``amount`` / imported kWh over the group (currency/kWh): imports are
  the positive parts of each meter's net energy per interval; export revenue is credited
  in the amount, not subtracted from the kWh. NaN where nothing was imported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.settlement.totals import (
    MINOR,
    by_design_participant,
    participant_totals,
    positions,
)

#: Charges whose ``quantity_kwh`` is metered energy.
ENERGY_CHARGES = ("energy", "day_ahead", "real_time")

VALUE_COLUMNS = [
    "design",
    "stakeholder",
    "members",
    "energy_kwh",
    "amount",
    "end_state",
    "net_cost",
    "change_vs_bau",
    "all_in_price",
]


def value_table(
    lines: pd.DataFrame,
    participants: pd.DataFrame,
    groups: Mapping[str, str],
    dispatch: pd.DataFrame,
    *,
    baseline: str | None,
    storage_price: float | Mapping[str, float],
) -> pd.DataFrame:
    """Value per stakeholder and design (see the module doc). ``participants``: columns
    participant_id, role (tso, dso, home, aggregator); ``groups``: home participant id →
    ownership label; ``dispatch``: :data:`~transactive.core.records.DISPATCH` records, with
    an optional ``stored_kwh`` column (kWh at the end of each interval, per device);
    ``storage_price``: currency/kWh, one for all designs or one per design."""
    if lines.empty:
        return pd.DataFrame({c: [] for c in VALUE_COLUMNS})
    who = participants["participant_id"].astype(str).to_numpy()
    role = participants["role"].astype(str).to_numpy()
    stakeholder = _stakeholders(who, role, groups)
    members = pd.Series(stakeholder).value_counts()
    designs = list(dict.fromkeys(lines["design"].astype(str)))
    price = _per_design(storage_price, designs)

    index = pd.MultiIndex.from_product([designs, who], names=["design", "participant_id"])
    totals = participant_totals(lines)
    amount = _on(by_design_participant(totals["net"], totals, "participant_id"), index)  # cents
    own = lines[lines["charge"].isin(ENERGY_CHARGES).to_numpy(dtype=bool)]
    qty = own["quantity_kwh"]
    energy = _on(by_design_participant(qty, own, "participant_id"), index)
    # The root (TSO) has no meter: its energy is minus what it delivers.
    to_root = own["counterparty_id"].isin(who[role == "tso"]).to_numpy(dtype=bool)
    sold = own[to_root]
    energy -= _on(by_design_participant(sold["quantity_kwh"], sold, "counterparty_id"), index)
    keys = [own[c] for c in ("design", "participant_id", "resource_id", "interval_start")]
    per_interval = qty.groupby(keys, observed=True, sort=False).sum().clip(lower=0.0)
    imported = per_interval.groupby(level=[0, 1], observed=True).sum()
    imported.index = pd.MultiIndex.from_arrays(
        [imported.index.get_level_values(i).astype(str) for i in (0, 1)]
    )
    imported = _on(imported, index)
    stored = _on(stored_change(dispatch, lines), index)
    end_state = stored * price.reindex(index.get_level_values(0)).to_numpy()

    frame = pd.DataFrame(
        {
            "design": index.get_level_values(0),
            "stakeholder": np.tile(stakeholder, len(designs)),
            "energy_kwh": energy.to_numpy(),
            "amount": amount.to_numpy(),
            "end_state": end_state.to_numpy(),
            "imported": imported.to_numpy(),
        }
    )
    out = frame.groupby(["design", "stakeholder"], sort=False).sum().reset_index()
    out["amount"] = out["amount"] / MINOR  # exact integer sums of cents, then currency
    n = out["stakeholder"].map(members).to_numpy(dtype=float)
    out.insert(2, "members", n.astype(np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["all_in_price"] = np.where(out["imported"] > 0, out["amount"] / out["imported"], np.nan)
    for c in ("energy_kwh", "amount", "end_state"):
        out[c] = out[c] / n
    out["net_cost"] = out["amount"] - out["end_state"]
    if baseline is not None and baseline in designs:
        bau = out[out["design"] == baseline].set_index("stakeholder")["net_cost"]
        out["change_vs_bau"] = out["net_cost"] - out["stakeholder"].map(bau)
    else:
        out["change_vs_bau"] = np.nan
    return out[VALUE_COLUMNS]


def stored_change(dispatch: pd.DataFrame, lines: pd.DataFrame) -> pd.Series:
    """Change of stored energy per (design, participant) over each design's settled period
    (kWh; see the module doc for the start), from the dispatch's ``stored_kwh`` column;
    empty without it."""
    empty = pd.Series([], dtype=float, index=pd.MultiIndex.from_arrays([[], []]))
    if "stored_kwh" not in dispatch.columns or dispatch.empty:
        return empty
    start = lines.groupby("design", observed=True)["interval_start"].min()
    start_ns = start.array.asi8  # UTC ns of each design's first settled interval
    pos = positions(dispatch["design"], start.index.astype(str).to_numpy())
    stored = dispatch["stored_kwh"].to_numpy(dtype=float)
    d = dispatch[(pos >= 0) & np.isfinite(stored)]
    if d.empty:
        return empty
    t = pd.to_datetime(d["interval_start"], utc=True).array.asi8
    order = np.argsort(t, kind="stable")
    d = d.iloc[order]
    warmup = t[order] < start_ns[pos[(pos >= 0) & np.isfinite(stored)][order]]
    key = ["design", "participant_id", "resource_id"]
    last_warm = _plain(d[warmup].groupby(key, observed=True)["stored_kwh"].last())
    evaluated = d[~warmup].groupby(key, observed=True)["stored_kwh"]
    first = _plain(evaluated.first())
    begin = last_warm.reindex(first.index).fillna(first)
    change = (_plain(evaluated.last()) - begin).groupby(level=[0, 1]).sum()
    change.index = pd.MultiIndex.from_arrays(
        [change.index.get_level_values(i).astype(str) for i in (0, 1)]
    )
    return change.astype(float)


def _plain(s: pd.Series) -> pd.Series:
    """``s`` with its (categorical) index levels as strings: one row per device and design,
    so cheap, and two such series align whatever their categories' code widths."""
    s.index = pd.MultiIndex.from_arrays(
        [s.index.get_level_values(i).astype(str) for i in range(s.index.nlevels)],
        names=s.index.names,
    )
    return s


def _stakeholders(who: np.ndarray, role: np.ndarray, groups: Mapping[str, str]) -> np.ndarray:
    """Stakeholder label of every participant: ``homes: <group>`` or its id."""
    home = role == "home"
    missing = [w for w in who[home] if w not in groups]
    if missing:
        raise InvalidInputError(f"value table: home {missing[0]!r} has no ownership group")
    label = np.array(who, dtype=object)
    label[home] = ["homes: " + str(groups[w]) for w in who[home]]
    return label


def _per_design(price: float | Mapping[str, float], designs: list[str]) -> pd.Series:
    """The storage price of every design (currency/kWh), checked finite."""
    if isinstance(price, Mapping):
        missing = [d for d in designs if d not in price]
        if missing:
            raise InvalidInputError(f"value table: no storage price for design {missing[0]!r}")
        out = pd.Series({d: float(price[d]) for d in designs})
    else:
        out = pd.Series(float(price), index=designs)
    if not np.isfinite(out.to_numpy()).all():
        raise InvalidInputError(f"value table: storage price {dict(out)} is not finite")
    return out


def _on(values: pd.Series, index: pd.MultiIndex) -> pd.Series:
    """``values`` (indexed by design, participant) on ``index``, 0 where absent."""
    values.index = values.index.set_names(index.names)
    return values.reindex(index, fill_value=0.0).astype(float)


def day_ahead_price(awards: pd.DataFrame, root: str) -> dict[str, float]:
    """Per design, the mean price (currency/kWh) of the root node's day-ahead awards (the
    tariff stage's, or the only stage's, without a day-ahead stage): the price the end state
    of storage is valued at (energy left in a battery could have been bought a day ahead)."""
    a = awards[(awards["node_id"].astype(str) == root).to_numpy(dtype=bool)]
    ahead = a[a["stage"].astype(str).isin(["day-ahead", "tariff"]).to_numpy(dtype=bool)]
    out = a.groupby(a["design"].astype(str))["price"].mean()  # else: its only stage
    out.update(ahead.groupby(ahead["design"].astype(str))["price"].mean())
    return {str(k): float(v) for k, v in out.items()}
