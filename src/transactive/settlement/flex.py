"""Flexibility settlement: commitments against baselines and meter readings.

A commitment (:data:`~transactive.core.records.COMMITMENTS`, one row per provider resource
and interval) promises to change the resource's net import by ``committed_kw`` against its
baseline: ``up`` = reduce net import (or raise export), ``down`` = increase it. Per
commitment, with ``committed`` = committed_kw × duration_h (kWh), ``net`` = the metered
import − export of the same design, resource and interval and ``baseline`` the net kWh the
resource would have had (an input aligned to the commitments; the baselines are computed
elsewhere):

* delivered = baseline − net (``up``) or net − baseline (``down``), kWh;
* ``flex_availability``: committed_kw × availability_price, paid by the buyer to the
  provider whatever is delivered (line: committed kWh × availability_price / duration_h);
* ``flex_utilisation``: min(delivered, committed), at least 0, × price, paid by the buyer
  to the provider (over-delivery beyond the commitment is not paid);
* ``flex_penalty``: where delivered falls below committed × (1 − tolerance), the shortfall
  below that band, committed × (1 − tolerance) − max(delivered, 0), × penalty_factor ×
  price, paid by the provider to the buyer (no line where there is no penalty). The
  penalty grows from 0 at the edge of the band, so a kWh more delivered never costs more.

Each line's amount is rounded once to the cent (half to even); its quality is the meter
reading's. The buyer (the DSO) pays flexibility out of its own margin: the revenue
requirement check of :func:`~transactive.settlement.check_balance` leaves these lines out,
the zero-sum check does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from transactive.core.records import COMMITMENTS, SETTLEMENT
from transactive.errors import InvalidInputError
from transactive.settlement.totals import minor_units, positions

FLEX_CHARGES = ("flex_availability", "flex_utilisation", "flex_penalty")


def flex_lines(
    commitments: pd.DataFrame,
    meter: pd.DataFrame,
    baseline_kwh: np.ndarray,
    tolerance_percent: float,
    penalty_factor: float,
    *,
    currency: str = "EUR",
) -> pd.DataFrame:
    """The ``flex_availability``, ``flex_utilisation`` and ``flex_penalty`` lines
    (:data:`~transactive.core.records.SETTLEMENT`) of ``commitments`` against the
    :data:`~transactive.core.records.METER` readings of the same design, resource and
    interval and ``baseline_kwh`` (net kWh, one per commitment); see the module doc.
    Raises :class:`~transactive.errors.InvalidInputError` naming the first bad row."""
    COMMITMENTS.check(commitments)
    if not 0 <= tolerance_percent <= 100 or not np.isfinite(tolerance_percent):
        raise InvalidInputError(f"flex: tolerance {tolerance_percent} % is not within 0 … 100")
    if not penalty_factor >= 0 or not np.isfinite(penalty_factor):
        raise InvalidInputError(f"flex: penalty factor {penalty_factor} is not ≥ 0")
    c = commitments.reset_index(drop=True)
    base = np.asarray(baseline_kwh, dtype=float)
    if base.shape != (len(c),):
        raise InvalidInputError(
            f"flex: {base.shape} baselines for {len(c)} commitments (one per commitment)"
        )
    if c.empty:
        return SETTLEMENT.empty()
    _check_inputs(c, base)
    at = _reading_of(c, meter)
    m = meter.iloc[at]
    net = m["import_kwh"].to_numpy(dtype=float) - m["export_kwh"].to_numpy(dtype=float)
    dt = c["duration_h"].to_numpy(dtype=float)
    committed = c["committed_kw"].to_numpy(dtype=float) * dt
    up = (c["direction"] == "up").to_numpy(dtype=bool)
    delivered = np.where(up, base - net, net - base)
    paid_kwh = np.clip(delivered, 0.0, committed)
    band = committed * (1.0 - tolerance_percent / 100.0)
    short = np.maximum(band - np.maximum(delivered, 0.0), 0.0)
    price = c["price"].to_numpy(dtype=float)
    avail = c["availability_price"].to_numpy(dtype=float)
    ident = {k: c[k].array for k in SETTLEMENT.names[:8]}
    quality = m["quality"].array

    def part(
        mask: np.ndarray,
        charge: str,
        qty: np.ndarray,
        unit: np.ndarray,
        amount: np.ndarray,
        provider_pays: bool,
    ) -> pd.DataFrame:
        n = int(mask.sum())
        payer, payee = c["participant_id"].array[mask], c["buyer"].array[mask]
        return SETTLEMENT.frame(
            {
                **{k: v[mask] for k, v in ident.items()},
                "participant_id": payer if provider_pays else payee,
                "charge": _constant(charge, n),
                "quantity_kwh": qty[mask],
                "price": unit[mask],
                "amount": amount[mask],
                "currency": _constant(currency, n),
                "counterparty_id": payee if provider_pays else payer,
                "quality": quality[mask],
            }
        )

    every = np.ones(len(c), dtype=bool)
    return SETTLEMENT.concat(
        [
            part(every, "flex_availability", committed, avail / dt,
                 minor_units(c["committed_kw"].to_numpy(dtype=float), avail), False),
            part(every, "flex_utilisation", paid_kwh, price, minor_units(paid_kwh, price), False),
            part(short > 0, "flex_penalty", short, penalty_factor * price,
                 minor_units(short, penalty_factor * price), True),
        ]
    )  # fmt: skip


def _check_inputs(c: pd.DataFrame, base: np.ndarray) -> None:
    """Every commitment's numbers finite, committed ≥ 0, direction up | down, a buyer."""
    checks = [
        (~c["direction"].isin(["up", "down"]).to_numpy(dtype=bool), "direction is not up | down"),
        (~(c["committed_kw"].to_numpy(dtype=float) >= 0), "committed_kw is not ≥ 0"),
        (~np.isfinite(c["committed_kw"].to_numpy(dtype=float)), "committed_kw is not finite"),
        (~np.isfinite(c["price"].to_numpy(dtype=float)), "price is not finite"),
        (~np.isfinite(c["availability_price"].to_numpy(dtype=float)), "availability_price "
         "is not finite"),
        (~(c["duration_h"].to_numpy(dtype=float) > 0), "duration_h is not > 0"),
        (c["buyer"].isna().to_numpy(dtype=bool), "has no buyer"),
        (~np.isfinite(base), "baseline is not finite"),
    ]  # fmt: skip
    for bad, what in checks:
        if bad.any():
            r = c[bad].iloc[0]
            raise InvalidInputError(
                f"flex: commitment of {r['resource_id']} ({r['design']}, {r['interval_start']}) "
                f"{what}"
            )


def _reading_of(c: pd.DataFrame, meter: pd.DataFrame) -> np.ndarray:
    """Position in ``meter`` of the reading of each commitment's design, resource and
    interval, on integer keys; raises naming the first commitment without one."""
    keys = []
    labels = {
        k: pd.unique(np.concatenate([_labels(c[k]), _labels(meter[k])]))
        for k in ("design", "resource_id")
    }
    ns = [np.asarray(pd.DatetimeIndex(f["interval_start"]).asi8) for f in (c, meter)]
    t_code, t_uniq = pd.factorize(np.concatenate(ns))
    for f, t in zip((c, meter), (t_code[: len(c)], t_code[len(c) :]), strict=True):
        d = positions(f["design"], labels["design"]).astype(np.int64)
        r = positions(f["resource_id"], labels["resource_id"]).astype(np.int64)
        keys.append((d * labels["resource_id"].size + r) * len(t_uniq) + t)
    index = pd.Index(keys[1])
    if not index.is_unique:
        raise InvalidInputError("flex: a resource has more than one meter reading per interval")
    at = index.get_indexer(keys[0])
    if (at < 0).any():
        r = c[at < 0].iloc[0]
        raise InvalidInputError(
            f"flex: commitment of {r['resource_id']} ({r['design']}, {r['interval_start']}) "
            "has no meter reading"
        )
    return np.asarray(at)


def _labels(col: pd.Series) -> np.ndarray:
    """The distinct labels of a column (categories only, for a categorical)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return np.asarray(col.cat.categories.astype(str), dtype=object)
    return np.asarray(col.astype(str).unique(), dtype=object)


def _constant(label: str, n: int) -> pd.Categorical[Any]:
    """``n`` rows of one label, as a categorical (no string per row)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=pd.CategoricalDtype([label]))
