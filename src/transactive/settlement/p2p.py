"""Settlement lines of peer-to-peer trades (:mod:`transactive.market.p2p`).

Per trade (a row of the trades table with ``kwh > 0``) two
:data:`~transactive.core.records.SETTLEMENT` lines, both paid by the buyer:

* ``p2p_energy``: kWh × the trade's price (currency/kWh), to the seller;
* ``p2p_network``: kWh × the trade's network charge, to the DSO (no line where the charge
  is 0).

Each amount is rounded once to the minor unit (half to even, as every settlement line), so
per trade the buyer pays exactly what the seller and the DSO receive, and the lines sum to
zero over payers and payees by construction (:func:`p2p_balance` checks it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError, InvalidInputError
from transactive.settlement.totals import minor_units, period_of

P2P_CHARGES = ("p2p_energy", "p2p_network")
_NEEDED = ("interval_start", "buyer", "seller", "buyer_order", "buyer_bus", "kwh", "price",
           "network_charge")  # fmt: skip


def p2p_lines(
    trades: pd.DataFrame,
    *,
    currency: str,
    dso: str | None = None,
    duration_h: float | None = None,
    design: str = "p2p",
    market_id: str = "p2p",
    period: str | None = None,
) -> pd.DataFrame:
    """The ``p2p_energy`` and ``p2p_network`` lines of ``trades`` (module docstring).
    Columns of ``trades`` override the arguments where present: ``dso`` (payee of the
    network charge), ``duration_h``, ``design``, ``buyer_node`` (the buyer's node; its
    meter is ``meter:<node>``; default: the buyer's order id at the buyer's bus).
    ``period`` (``whole``, ``month``, ``day``; None = a line per trade): one line per payer,
    payee, resource and unit price over each settlement period instead, ``interval_start``
    its first trade's interval and ``duration_h`` the span to the end of its last — as the
    network lines do; rounding a 15-minute trade of a few Wh to the cent would lose the
    charge. Raises InvalidInputError naming the first bad trade."""
    missing = [c for c in _NEEDED if c not in trades.columns]
    if missing:
        raise InvalidInputError(f"p2p settlement: trades lack columns {missing}")
    t = trades[trades["kwh"].to_numpy(dtype=float) > 0].reset_index(drop=True)
    if t.empty:
        return SETTLEMENT.empty()
    kwh = t["kwh"].to_numpy(dtype=float)
    price = t["price"].to_numpy(dtype=float)
    charge = t["network_charge"].to_numpy(dtype=float)
    for name, v in (("price", price), ("network_charge", charge), ("kwh", kwh)):
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInputError(
                f"p2p settlement: trade {t['buyer_order'].iloc[i]} → "
                f"{t['seller'].iloc[i]} has a non-finite {name}"
            )
    if (charge < 0).any():
        raise InvalidInputError("p2p settlement: a network charge is negative")
    n_all = len(t)
    if "buyer_node" in t.columns:
        nod = t["buyer_node"].astype(str)
        res = "meter:" + nod
    else:
        nod, res = t["buyer_bus"].astype(str), t["buyer_order"].astype(str)
    payee = (
        t["dso"].to_numpy(dtype=str) if "dso" in t.columns else np.full(n_all, dso, dtype=object)
    )
    if "dso" not in t.columns and dso is None:
        raise InvalidInputError("p2p settlement: no DSO to pay the network charge to")
    dur = (
        t["duration_h"].to_numpy(dtype=float)
        if "duration_h" in t.columns
        else np.full(n_all, np.nan if duration_h is None else float(duration_h))
    )
    if not (np.isfinite(dur) & (dur > 0)).all():
        raise InvalidInputError("p2p settlement: every trade needs a duration_h > 0")
    des = t["design"].to_numpy(dtype=str) if "design" in t.columns else np.full(n_all, design)

    def part(mask: np.ndarray, charge_name: str, unit: np.ndarray, payee: Any) -> pd.DataFrame:
        n = int(mask.sum())
        return SETTLEMENT.frame(
            {
                "design": des[mask],
                "market_id": market_id,
                "stage": "p2p",
                "interval_start": t["interval_start"].to_numpy()[mask],
                "duration_h": dur[mask],
                "participant_id": t["buyer"].to_numpy(dtype=str)[mask],
                "resource_id": res.to_numpy(dtype=str)[mask],
                "node_id": nod.to_numpy(dtype=str)[mask],
                "charge": np.full(n, charge_name),
                "quantity_kwh": kwh[mask],
                "price": unit[mask],
                "amount": minor_units(kwh[mask], unit[mask]),
                "currency": np.full(n, currency),
                "counterparty_id": payee if np.ndim(payee) == 0 else np.asarray(payee)[mask],
                "quality": np.full(n, "measured"),
            }
        )

    every = np.ones(len(t), dtype=bool)
    lines = SETTLEMENT.concat(
        [
            part(every, "p2p_energy", price, t["seller"].to_numpy(dtype=str)),
            part(charge > 0, "p2p_network", charge, payee),
        ]
    )
    return lines if period is None else _per_period(lines, period)


def _per_period(lines: pd.DataFrame, period: str) -> pd.DataFrame:
    """Lines summed per design, settlement period, payer, payee, resource, node, charge and
    unit price; each sum's amount rounded once."""
    start = pd.DatetimeIndex(lines["interval_start"])
    end = start + pd.to_timedelta(lines["duration_h"].to_numpy(dtype=float), unit="h")
    keys = ["design", "market_id", "stage", "participant_id", "resource_id", "node_id",
            "charge", "price", "currency", "counterparty_id", "quality"]  # fmt: skip
    frame = lines[keys].assign(
        _period=period_of(lines["interval_start"], period),
        _start=start,
        _end=end,
        quantity_kwh=lines["quantity_kwh"],
    )
    g = frame.groupby([*keys, "_period"], observed=True, sort=False).agg(
        quantity_kwh=("quantity_kwh", "sum"), first=("_start", "min"), last=("_end", "max")
    )
    g = g.reset_index()
    qty = g["quantity_kwh"].to_numpy(dtype=float)
    unit = g["price"].to_numpy(dtype=float)
    hours = (g["last"] - g["first"]).dt.total_seconds().to_numpy() / 3600.0
    return SETTLEMENT.frame(
        {
            **{k: g[k] for k in keys if k not in ("price",)},
            "interval_start": g["first"],
            "duration_h": hours,
            "quantity_kwh": qty,
            "price": unit,
            "amount": minor_units(qty, unit),
        }
    )


def p2p_balance(lines: pd.DataFrame) -> dict[str, int]:
    """Net receipts per participant of the p2p lines (minor units, + received), after
    checking that every amount is the integer round-half-even(kWh × price × 100) of its
    own line (the audit trail) and that they sum to zero; BalanceError otherwise."""
    p = lines[lines["charge"].isin(P2P_CHARGES)]
    if str(p["amount"].dtype) != "int64":
        raise BalanceError(f"p2p settlement: amounts are {p['amount'].dtype}, not int64")
    want = minor_units(p["quantity_kwh"].to_numpy(dtype=float), p["price"].to_numpy(dtype=float))
    off = p["amount"].to_numpy() != want
    if off.any():
        r = p[off].iloc[0]
        raise BalanceError(
            f"p2p settlement: {r['charge']} line of {r['participant_id']} → "
            f"{r['counterparty_id']} is {r['amount']}, not {r['quantity_kwh']} kWh × "
            f"{r['price']} = {want[off][0]} minor units"
        )
    paid = p.groupby("participant_id", observed=True)["amount"].sum()
    got = p.groupby("counterparty_id", observed=True)["amount"].sum()
    net = got.sub(paid, fill_value=0).astype(np.int64)
    if int(net.sum()) != 0:  # pragma: no cover - every line has a payer and a payee
        raise BalanceError(f"p2p settlement does not balance: {int(net.sum())} minor units")
    return {str(k): int(v) for k, v in net.items()}


def retail_meter(meter: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """``meter`` (:data:`~transactive.core.records.METER`) with the traded energy taken out
    of the readings of the buyers' and sellers' nodes (``buyer_node`` / ``seller_node``,
    same design and interval): what the retailer still settles. A trade is a position: if
    the meter differs from it (a home traded what it planned, the devices did a little
    else), the difference is the retailer's, at the node's price, either sign. A trade
    without a meter reading raises InvalidInputError."""
    t = trades[trades["kwh"].to_numpy(dtype=float) > 0]
    if t.empty:
        return meter
    kwh = t["kwh"].to_numpy(dtype=float)
    keys = pd.MultiIndex.from_arrays(
        [
            np.tile(t["design"].to_numpy(dtype=str), 2),
            np.concatenate([t["buyer_node"].to_numpy(dtype=str),
                            t["seller_node"].to_numpy(dtype=str)]),
            times := np.tile(_ns(t["interval_start"]), 2),
        ]
    )  # fmt: skip
    index = pd.MultiIndex.from_arrays(
        [
            meter["design"].astype(str).to_numpy(),
            meter["node_id"].astype(str).to_numpy(),
            _ns(meter["interval_start"]),
        ]
    )
    at = index.get_indexer(keys)
    if (at < 0).any():
        k = int(np.argmax(at < 0))
        raise InvalidInputError(
            f"p2p settlement: trade at node {keys[k][1]} ({keys[k][0]}, "
            f"{pd.Timestamp(int(times[k]), tz='UTC')}) has no meter reading"
        )
    traded = np.bincount(at, np.concatenate([kwh, -kwh]), len(meter))
    net = meter["import_kwh"].to_numpy(dtype=float) - meter["export_kwh"].to_numpy(dtype=float)
    left = net - traded
    out = meter.copy()
    out["import_kwh"] = np.clip(left, 0.0, None)
    out["export_kwh"] = np.clip(-left, 0.0, None)
    return out


def _ns(col: pd.Series) -> np.ndarray:
    """UTC instants as int64 ns."""
    return np.asarray(pd.DatetimeIndex(pd.to_datetime(col, utc=True)).asi8)
