"""The wholesale interface: what sits above the DSO at the substation.

Two sources (configuration picks one):

* :class:`PriceSeries` — a price per interval (CSV ``start,price`` with price in
  currency/MWh, converted to currency/kWh here): a user's file or a shipped series (SMARD
  day-ahead, :data:`transactive.sim.regions.SHIPPED_PRICES`). The wholesale market is a
  price-taker's world: it buys and sells any quantity at that price. Read with
  :func:`read_price_series`.
* :class:`MeritOrder` — a modelled supply curve: generator types with capacity and marginal
  cost (a shipped table, ``data/wholesale/merit_order.csv``, or your own) serving the rest
  of the system's load; the area's net curve bids into it, so a large area moves the price.

:func:`clear_wholesale` clears the area's net curve (one per interval) against the source
with the uniform-price auction and returns the wholesale price and the area's award.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, block_curves, concat, quantity_at
from transactive.core.time import Intervals
from transactive.core.units import per_mwh_to_per_kwh
from transactive.errors import InvalidInputError
from transactive.market.auction import book_from_curves, clear


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """Wholesale price per interval, $/kWh."""

    price: FloatArray


@dataclass(frozen=True, slots=True)
class MeritOrder:
    """Generator blocks and the rest of the system's load.

    capacity_kw, cost: per generator type (kW; $/kWh marginal cost).
    other_load_kw: price-taking load of the rest of the system per interval, kW.
    """

    names: tuple[str, ...]
    capacity_kw: FloatArray
    cost: FloatArray
    other_load_kw: FloatArray


#: A "price year" for :func:`read_price_series` with ``same_week=True``: 52 weeks (keeps
#: weekdays aligned).
PRICE_YEAR = pd.Timedelta(weeks=52)


def read_price_series(
    path: str | Path, intervals: Intervals, *, same_week: bool = False
) -> PriceSeries:
    """Prices for every interval from a CSV ``start,price`` (currency/MWh, ISO 8601 UTC
    starts; ``#`` lines are comments).

    Each interval takes the price of the latest row starting at or before it (hourly prices
    hold for every 5- or 15-minute interval of the hour). ``same_week``: the series stands
    for a typical year (the shipped SMARD years): an interval outside it is read at the same
    position in the series' first 52 weeks (``t0 + (t − t0) mod 52 weeks``, so weekdays stay
    aligned), and one more than a row step (the median spacing) after its row lies in a gap
    of the series (an error). Problems name the line.
    """
    name = str(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except FileNotFoundError:
        raise InvalidInputError(f"{name}: no such file") from None
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{name}: empty file: expected a header 'start,price'") from None
    missing = {"start", "price"} - {c.strip() for c in df.columns}
    if missing:
        raise InvalidInputError(f"{name}:1: missing column(s) {', '.join(sorted(missing))}")
    df.columns = [c.strip() for c in df.columns]
    t = pd.to_datetime(df["start"].str.strip(), errors="coerce", utc=True, format="ISO8601")
    p = pd.to_numeric(df["price"].str.strip(), errors="coerce")
    for bad, col, what in (
        (t.isna(), "start", "not an ISO 8601 time"),
        (~np.isfinite(p.to_numpy(dtype=float)), "price", "not a finite number ($/MWh)"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInputError(
                f"{name}:{i + 2}: column '{col}': {df[col].iloc[i]!r} is {what}"
            )
    order = np.argsort(t.to_numpy(), kind="stable")
    ts = t.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")[order]  # UTC
    ps = p.to_numpy(dtype=float)[order]
    starts = intervals.starts.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    step = np.median(np.diff(ts)) if ts.size > 1 else np.timedelta64(1, "h")
    if same_week and ts.size and ((starts < ts[0]) | (starts > ts[-1] + step)).any():
        year = PRICE_YEAR.to_timedelta64()
        starts = ts[0] + (starts - ts[0]) % year
    k = np.searchsorted(ts, starts, side="right") - 1
    if (k < 0).any():
        raise InvalidInputError(
            f"{name}: no price at or before {intervals.starts[int(np.argmax(k < 0))].isoformat()}"
        )
    gap = (starts - ts[k] >= step) if same_week else np.zeros(starts.size, dtype=bool)
    if gap.any():
        i = int(np.argmax(gap))
        raise InvalidInputError(
            f"{name}: no price for {intervals.starts[i].isoformat()} (the series has a gap or "
            f"ends at {pd.Timestamp(ts[k[i]]).isoformat()})"
        )
    return PriceSeries(per_mwh_to_per_kwh(ps[k]))


def read_merit_order(
    other_load_kw: FloatArray, path: str | Path | None = None, scale_kw: float | None = None
) -> MeritOrder:
    """A merit order serving ``other_load_kw`` (per interval). Capacities in the table are
    per unit of system peak (``capacity_per_peak``) and scaled by ``scale_kw`` (default: the
    peak of the whole system, other load included, is met with the table's reserve margin).
    """
    src = (
        path
        if path is not None
        else resources.files("transactive") / "data/wholesale/merit_order.csv"
    )
    df = pd.read_csv(str(src), comment="#")
    for col in ("name", "capacity_per_peak", "marginal_cost_per_mwh"):
        if col not in df.columns:
            raise InvalidInputError(f"{src}: missing column '{col}'")
    if (df["capacity_per_peak"] < 0).any():
        raise InvalidInputError(f"{src}: negative capacity_per_peak")
    load = np.asarray(other_load_kw, dtype=np.float64)
    if not (np.isfinite(load).all() and (load >= 0).all()):
        raise InvalidInputError("other_load_kw must be finite and ≥ 0 kW")
    scale = float(scale_kw if scale_kw is not None else load.max(initial=0.0))
    return MeritOrder(
        tuple(df["name"].astype(str)),
        df["capacity_per_peak"].to_numpy(dtype=float) * scale,
        per_mwh_to_per_kwh(df["marginal_cost_per_mwh"].to_numpy(dtype=float)),
        load,
    )


def clear_wholesale(
    area: Curves, source: PriceSeries | MeritOrder, floor: float, cap: float
) -> tuple[FloatArray, FloatArray]:
    """Clear the area's net curve (one per interval) at the wholesale level.

    Returns ``(price $/kWh, area_award kW)`` per interval; the award is the area's net
    import (+) or export (−) at the substation.
    """
    T = area.n
    if isinstance(source, PriceSeries):
        if source.price.size != T:
            raise InvalidInputError(f"{source.price.size} wholesale prices for {T} intervals")
        price = np.clip(source.price, floor, cap)
        # The wholesale market buys and sells any quantity at its price: a step as large as
        # anything the area could take or give.
        depth = 1.0 + np.abs(quantity_at(area, floor, "left")) + np.abs(quantity_at(area, cap))
        sells, buys = block_curves(price, -depth), block_curves(price, depth)
        curves = concat([area, sells, buys])
        ids = np.arange(3 * T)
        interval = np.tile(np.arange(T), 3)
        result = clear(book_from_curves(ids, curves, interval, T), floor, cap)
        return result.price, result.awards[:T]
    if source.other_load_kw.size != T:
        raise InvalidInputError(f"{source.other_load_kw.size} other-load values for {T} intervals")
    G = source.capacity_kw.size
    gens = block_curves(
        np.tile(np.clip(source.cost, floor, cap), T), -np.tile(source.capacity_kw, T)
    )
    curves = concat([area, gens])
    interval = np.concatenate([np.arange(T), np.repeat(np.arange(T), G)])
    book = book_from_curves(np.arange(T + T * G), curves, interval, T)
    result = clear(book, floor, cap, unresponsive_demand=source.other_load_kw)
    return result.price, result.awards[:T]
