"""Uniform-price double auction (pay-as-clear), for one or many market intervals at once.

Rules
-----
* **Bids.** Each bid is a curve (:mod:`transactive.core.curves`): a buy block of ``x`` kW at
  ``b`` $/kWh, a sell block, a ramp, or any non-increasing curve (a battery's curve may buy at
  low prices and sell at high ones; its buying and selling parts are cleared on their sides).
  Every bid price lies in ``[floor, cap]``. A *price-taking* (unresponsive) buyer bids at the
  cap, a price-taking seller at the floor; ``unresponsive_demand`` / ``unresponsive_supply``
  add such quantities per interval without a bid id.
* **Price.** The clearing price is where aggregate demand meets aggregate supply. When a
  range ``[a, b]`` of prices clears the market (demand and supply flat and equal there), the
  price is its midpoint ``(a + b) / 2`` (k = ½ double auction). The result does not depend
  on the order in which bids were submitted.
* **Quantity.** At the clearing price the traded quantity is the largest both sides accept:
  ``V = min(demand just below p*, supply just above p*)``.
* **Awards and ties.** Bids strictly in the money are awarded in full; curves are read at
  the price. Blocks priced exactly at the clearing price are *marginal*: on each side they
  share what is left of ``V`` pro rata to their size (one common fraction per side and
  interval), so equal bids are treated equally, whatever their order or id.
* **Status** (:class:`Status`, a ``StrEnum``: compares equal to its string). ``cleared``;
  ``shortage`` when the price is at the cap and demand bid at the cap is not fully served
  (demand cannot be met under the cap); ``surplus`` when the price is at the floor and
  supply offered at the floor is not fully absorbed; ``no_trade`` when nothing trades
  otherwise — then no price is formed and ``price`` is NaN.
* **Round-off.** Quantities are compared relative to the interval's book (its total demand
  plus total supply ``M`` kW, over ``n`` curves): the crossing, a traded volume, an unserved
  demand or an unabsorbed supply below ``ZERO_EPS·√n·M`` (``ZERO_EPS`` = 64 machine
  epsilons, 1.4e-14) counts as zero. So books with 1e9 or 1e12 kW bids next to 1 kW bids
  clear like any other; finer quantities are below what 64-bit floats resolve in them.
* **Money.** Pay-as-clear: every buyer pays and every seller receives ``p* × award``
  ($/h; multiply by the interval length in hours for $). Buyers' payments equal sellers'
  receipts because awarded buys equal awarded sells — checked on every call, to ``RTOL``
  (1e-9) of the traded volume plus the round-off allowance above.
* **Identity.** A book carries every bid's ``owner`` (participant id) and, optionally, the
  absolute start (UTC) of each of its intervals; the clearing carries both through.

Bad input raises :class:`~transactive.errors.InvalidBidError` naming the bid, before anything
is cleared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import (
    RTOL,
    Curves,
    FloatArray,
    IntArray,
    aggregate,
    block_curves,
    close,
    concat,
    curves_from_arrays,
    integrate,
    price_interval,
    segment_starts,
    share_steps,
    sides_at,
    split_sides,
)
from transactive.core.time import as_utc
from transactive.errors import (
    BalanceError,
    InvalidBidError,
    InvalidCurveError,
    InvalidInputError,
    plain,
)


class Status(StrEnum):
    """Outcome of a market interval; a ``str`` subclass, so ``status == "cleared"`` holds.

    CLEARED, NO_TRADE, SHORTAGE, SURPLUS: the auction (module docstring).
    OPTIMAL, SHED, INFEASIBLE: network-constrained clearing (:mod:`transactive.market.network`).
    """

    CLEARED = "cleared"
    NO_TRADE = "no_trade"
    SHORTAGE = "shortage"
    SURPLUS = "surplus"
    OPTIMAL = "optimal"
    SHED = "shed"
    INFEASIBLE = "infeasible"


CLEARED, NO_TRADE, SHORTAGE, SURPLUS = (
    Status.CLEARED,
    Status.NO_TRADE,
    Status.SHORTAGE,
    Status.SURPLUS,
)
SIDES = ("buy", "sell")
#: Round-off allowance: in an interval with n curves whose book totals M kW (demand plus
#: supply), quantities below ZERO_EPS · √n · M kW are zero (ZERO_EPS = 64 ε, ε the float64
#: machine epsilon): no trade, no shortage, no surplus, no imbalance.
ZERO_EPS = 64 * float(np.finfo(np.float64).eps)
_AUCTION_STATUS = np.array([CLEARED, NO_TRADE, SHORTAGE, SURPLUS], dtype=object)
IntervalStarts = pd.DatetimeIndex | Sequence[datetime] | Sequence[str]


@dataclass(frozen=True, slots=True)
class Book:
    """An order book: one curve per bid, for ``n_intervals`` market intervals.

    ids: bid ids (any hashable numpy dtype: int or str), unique within an interval.
    curves: the bids' curves (kW vs $/kWh, + buy, − sell), in the order of ``ids``.
    interval: index (0 … n_intervals−1) of the market interval of each bid.
    owner: participant id of each bid (str); when none was given, the bid ids themselves
        (the same array, not a copy).
    interval_start: start of each interval, tz-aware UTC (``n_intervals`` distinct
        values), or None for a book without absolute times.
    """

    ids: NDArray[np.generic]
    curves: Curves
    interval: IntArray
    n_intervals: int
    owner: NDArray[np.generic]
    interval_start: pd.DatetimeIndex | None

    def __post_init__(self) -> None:
        if self.owner.shape != self.ids.shape:
            raise InvalidInputError(f"{self.owner.size} owners for {self.ids.size} bids")
        start = self.interval_start
        if start is not None and len(start) != self.n_intervals:
            raise InvalidInputError(
                f"{len(start)} interval starts for a book of {self.n_intervals} intervals"
            )

    def __len__(self) -> int:
        return int(self.ids.size)


def book_from_curves(
    ids: ArrayLike,
    curves: Curves,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
    *,
    owner: ArrayLike | None = None,
    interval_start: IntervalStarts | None = None,
) -> Book:
    """A book from bid curves (one per id); ``interval`` defaults to a single interval.

    owner: participant id of each bid (default: its bid id).
    interval_start: start of each interval (tz-aware; converted to UTC), one per interval;
        ``n_intervals`` defaults to its length.
    """
    id_arr = np.asarray(ids).ravel()
    if id_arr.size != curves.n:
        raise InvalidInputError(f"{id_arr.size} bid ids for {curves.n} curves")
    starts = None if interval_start is None else _utc_starts(interval_start)
    if n_intervals is None and starts is not None:
        n_intervals = len(starts)
    iv = _interval_index(interval, id_arr.size, n_intervals)
    n_iv = int(n_intervals if n_intervals is not None else (iv.max() + 1 if iv.size else 1))
    _check_unique(id_arr, iv)
    if owner is None:
        owners: NDArray[np.generic] = id_arr
    else:
        owners = np.asarray(owner).ravel().astype(str)
        if owners.size != id_arr.size:
            raise InvalidInputError(f"{owners.size} owners for {id_arr.size} bids")
        _reject(id_arr, owners == "", lambda i: "empty owner")
    return Book(id_arr, curves, iv, n_iv, owners, starts)


def book_from_points(
    ids: ArrayLike,
    price: ArrayLike,
    quantity: ArrayLike,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
    *,
    owner: ArrayLike | None = None,
    interval_start: IntervalStarts | None = None,
) -> Book:
    """A book of curve bids given as ``(n, k)`` breakpoint arrays (price $/kWh, quantity kW,
    + buy / − sell), one row per bid id; an invalid curve is reported by its bid id.
    ``owner``, ``interval_start``: as for :func:`book_from_curves`."""
    id_arr = np.asarray(ids).ravel()
    try:
        curves = curves_from_arrays(price, quantity)
    except InvalidCurveError as exc:
        if exc.index is None or exc.index >= id_arr.size:
            raise
        reason = str(exc).split(": ", 1)[-1]
        raise InvalidBidError(f"bid {plain(id_arr[exc.index])!r}: {reason}") from None
    return book_from_curves(
        id_arr, curves, interval, n_intervals, owner=owner, interval_start=interval_start
    )


def book_from_blocks(
    ids: ArrayLike,
    side: ArrayLike,
    price: ArrayLike,
    quantity: ArrayLike,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
    *,
    owner: ArrayLike | None = None,
    interval_start: IntervalStarts | None = None,
) -> Book:
    """A book of block bids: ``side`` is ``"buy"`` or ``"sell"``, ``price`` $/kWh,
    ``quantity`` kW ≥ 0 (the most the bid buys below / sells above its price).
    ``owner``, ``interval_start``: as for :func:`book_from_curves`."""
    id_arr = np.asarray(ids).ravel()
    sd = np.asarray(side).ravel()
    p = np.asarray(price, dtype=np.float64).ravel()
    q = np.asarray(quantity, dtype=np.float64).ravel()
    n = id_arr.size
    for name, arr in (("side", sd), ("price", p), ("quantity", q)):
        if arr.size != n:
            raise InvalidInputError(f"{n} bid ids but {arr.size} values of {name}")
    is_buy = sd == "buy"
    bad = ~(is_buy | (sd == "sell"))
    _reject(id_arr, bad, lambda i: f"unknown side {plain(sd[i])!r} (expected 'buy' or 'sell')")
    _reject(id_arr, ~np.isfinite(p), lambda i: f"price {p[i]} is not a finite number")
    _reject(id_arr, ~np.isfinite(q), lambda i: f"quantity {q[i]} is not a finite number")
    _reject(id_arr, q < 0, lambda i: f"negative quantity {q[i]} kW (use side='sell' to sell)")
    return book_from_curves(
        id_arr,
        block_curves(p, np.where(is_buy, q, -q)),
        interval,
        n_intervals,
        owner=owner,
        interval_start=interval_start,
    )


def _utc_starts(starts: IntervalStarts) -> pd.DatetimeIndex:
    """Interval starts as a UTC DatetimeIndex; naive, unreadable or repeated starts are
    rejected."""
    if isinstance(starts, pd.DatetimeIndex):
        if len(starts) and starts.tz is None:
            raise InvalidInputError("interval_start: times have no time zone; give them in UTC")
        index = starts.tz_convert("UTC") if len(starts) else pd.DatetimeIndex([], tz="UTC")
    else:
        try:
            index = pd.DatetimeIndex([as_utc(t) for t in starts], tz="UTC")
        except InvalidInputError as exc:
            raise InvalidInputError(f"interval_start: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"interval_start: not a list of times ({exc})") from None
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise InvalidInputError(f"interval_start: {dup.isoformat()} occurs twice")
    return index


def _interval_index(interval: ArrayLike | None, n: int, n_intervals: int | None) -> IntArray:
    if interval is None:
        return np.zeros(n, dtype=np.int64)
    iv = np.asarray(interval).ravel()
    if iv.size != n:
        raise InvalidInputError(f"{n} bids but {iv.size} interval indices")
    if not np.issubdtype(iv.dtype, np.integer):
        raise InvalidInputError("interval indices must be integers")
    iv = iv.astype(np.int64)
    if iv.size and (iv.min() < 0 or (n_intervals is not None and iv.max() >= n_intervals)):
        raise InvalidInputError(f"interval indices must lie in [0, {n_intervals})")
    return iv


def _check_unique(ids: NDArray[np.generic], interval: IntArray) -> None:
    """Raise naming the first bid id that occurs twice in the same interval."""
    if ids.size < 2:
        return
    if (
        not interval.any()
        and np.issubdtype(ids.dtype, np.number)
        and np.greater(ids[1:], ids[:-1]).all()
    ):
        return  # already strictly increasing: unique (the common case of fleet indices)
    order = np.lexsort((ids, interval)) if interval.any() else np.argsort(ids, kind="stable")
    s_ids, s_iv = ids[order], interval[order]
    dup = (s_ids[1:] == s_ids[:-1]) & (s_iv[1:] == s_iv[:-1])
    if dup.any():
        k = int(np.argmax(dup))
        raise InvalidBidError(
            f"bid {plain(s_ids[k])!r}: duplicate bid id in interval {int(s_iv[k])}"
        )


def _reject(ids: NDArray[np.generic], bad: NDArray[np.bool_], why: object) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidBidError(f"bid {plain(ids[i])!r}: {why(i)}")  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Clearing:
    """Result of clearing a book (arrays per interval, per bid).

    price: clearing price per interval, $/kWh (NaN where nothing trades).
    quantity: traded quantity per interval, kW.
    status: per interval a :class:`Status`: ``CLEARED``, ``NO_TRADE``, ``SHORTAGE`` or
        ``SURPLUS`` (an object array; compares equal to the strings).
    awards: net award per bid, kW (+ bought, − sold), in the book's order.
    unresponsive_demand, unresponsive_supply: awarded price-taking demand / supply (≥ 0, kW).
    buyer_surplus, seller_surplus: per interval, $/h.
    interval, ids, owner: the book's interval index, bid id and owner of every bid.
    interval_start: the book's interval starts (UTC), or None.
    """

    price: FloatArray
    quantity: FloatArray
    status: NDArray[np.object_]
    awards: FloatArray
    unresponsive_demand: FloatArray
    unresponsive_supply: FloatArray
    buyer_surplus: FloatArray
    seller_surplus: FloatArray
    interval: IntArray
    ids: NDArray[np.generic]
    owner: NDArray[np.generic]
    interval_start: pd.DatetimeIndex | None

    def payments(self) -> FloatArray:
        """Per bid: what it pays (+) or receives (−) at the clearing price, $/h."""
        p = np.nan_to_num(self.price[self.interval])
        out: FloatArray = p * self.awards
        return out


def clear(
    book: Book,
    floor: float,
    cap: float,
    unresponsive_demand: ArrayLike = 0.0,
    unresponsive_supply: ArrayLike = 0.0,
) -> Clearing:
    """Clear every interval of ``book`` as a uniform-price double auction (rules above).

    floor, cap: price limits, $/kWh, floor < cap.
    unresponsive_demand, unresponsive_supply: price-taking kW per interval (scalar or array).
    """
    if not (np.isfinite(floor) and np.isfinite(cap) and floor < cap):
        raise InvalidInputError(f"need a finite price floor < cap, got floor={floor}, cap={cap}")
    T = book.n_intervals
    ud = _per_interval(unresponsive_demand, T, "unresponsive_demand")
    us = _per_interval(unresponsive_supply, T, "unresponsive_supply")
    # Only prices where a bid's quantity changes must lie in [floor, cap]; the price of a
    # flat (price-taking) curve's single point carries no meaning.
    j, c = segment_starts(book.curves)
    Q, P = book.curves.quantity, book.curves.price
    moving = j[Q[j] > Q[j + 1]]
    outside = ((P[moving] < floor) | (P[moving] > cap)) | (
        (P[moving + 1] < floor) | (P[moving + 1] > cap)
    )
    bad = np.zeros(book.curves.n, dtype=bool)
    bad[c[Q[j] > Q[j + 1]][outside]] = True
    _reject(book.ids, bad, lambda i: f"price outside [floor={floor}, cap={cap}] $/kWh")

    # All bids plus the price-taking quantities as blocks at the cap / floor, per interval.
    tail = np.arange(T, dtype=np.int64)
    bids = concat(
        [
            close(book.curves, floor, cap),
            block_curves(np.full(T, cap), ud),
            block_curves(np.full(T, floor), -us),
        ]
    )
    group = np.concatenate([book.interval, tail, tail])

    # The book's magnitude per interval (total demand + total supply, kW) sets the scale of
    # round-off in every sum below: quantities under `zero` kW are zero.
    first, last = bids.offsets[:-1], bids.offsets[1:] - 1
    most_bought = np.maximum(bids.quantity[first], 0.0)
    most_sold = -np.minimum(bids.quantity[last], 0.0)
    magnitude = np.bincount(group, weights=most_bought + most_sold, minlength=T)
    zero = ZERO_EPS * np.sqrt(np.bincount(group, minlength=T)) * magnitude
    a, b = price_interval(_scaled(aggregate(bids, group, T), zero), 0.0, floor, cap)
    if np.isnan(a).any():  # cannot happen for valid books: demand ≥ 0 at the floor, ≤ 0 above
        raise BalanceError("no clearing price found in [floor, cap]")
    price = 0.5 * (a + b)

    # Each side read at the price: the traded volume is the most both sides accept there.
    pg = price[group]
    buy_left, buy_right, sell_left, sell_right = sides_at(bids, pg)
    d_left = np.bincount(group, weights=buy_left, minlength=T)
    s_right = -np.bincount(group, weights=sell_right, minlength=T)
    volume = np.maximum(np.minimum(d_left, s_right), 0.0)
    buy = share_steps(buy_left, buy_right, group, volume)
    sell = share_steps(sell_left, sell_right, group, -volume)
    _check_balance(buy, sell, group, volume, zero, T)

    code = np.zeros(T, dtype=np.int64)  # position in _AUCTION_STATUS
    code[volume <= zero] = 1
    code[(price == cap) & (d_left - volume > zero)] = 2
    code[(price == floor) & (s_right - volume > zero)] = 3
    status = _AUCTION_STATUS[code]
    priced = code != 1
    buys, sells = split_sides(bids)
    buyer_surplus = np.bincount(group, weights=integrate(buys, pg, cap), minlength=T)
    seller_surplus = -np.bincount(group, weights=integrate(sells, floor, pg), minlength=T)
    n = book.curves.n
    return Clearing(
        price=np.where(priced, price, np.nan),
        quantity=np.where(priced, volume, 0.0),
        status=status,
        awards=np.where(priced[book.interval], buy[:n] + sell[:n], 0.0),
        unresponsive_demand=np.where(priced, buy[n : n + T], 0.0),
        unresponsive_supply=np.where(priced, 0.0 - sell[n + T :], 0.0) + 0.0,
        buyer_surplus=np.where(priced, buyer_surplus, 0.0),
        seller_surplus=np.where(priced, seller_surplus, 0.0) + 0.0,
        interval=book.interval,
        ids=book.ids,
        owner=book.owner,
        interval_start=book.interval_start,
    )


def _scaled(net: Curves, zero: FloatArray) -> Curves:
    """The net curve of each interval with its quantities multiplied by a power of two
    (exact) chosen so that :func:`price_interval`'s tolerance (``RTOL`` kW at zero) stands
    for ``zero`` kW of the interval: the crossing is found relative to the book's size."""
    safe = np.where(zero > 0, zero, RTOL)
    exponent = np.clip(np.round(np.log2(RTOL / safe)), -900, 900).astype(np.int64)
    quantity = np.ldexp(net.quantity, exponent[net.curve_index()])
    return Curves(net.price, quantity, net.offsets)


def _per_interval(value: ArrayLike, T: int, name: str) -> FloatArray:
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), (T,)).copy()
    if not (np.isfinite(v).all() and (v >= 0).all()):
        raise InvalidInputError(f"{name} must be finite and ≥ 0 kW in every interval")
    return v


def _check_balance(
    buy: FloatArray,
    sell: FloatArray,
    group: IntArray,
    volume: FloatArray,
    zero: FloatArray,
    T: int,
) -> None:
    """Awarded buys = awarded sells = traded volume in every interval, to RTOL of the
    volume and awards plus ``zero`` (round-off of the interval's book, kW)."""
    bought = np.bincount(group, weights=buy, minlength=T)
    sold = -np.bincount(group, weights=sell, minlength=T)
    scale = volume + np.bincount(group, weights=np.abs(buy) + np.abs(sell), minlength=T)
    err = np.maximum(np.abs(bought - volume), np.abs(sold - volume))
    if (err > RTOL * scale + zero).any():
        t = int(np.argmax(err - RTOL * scale - zero))
        raise BalanceError(
            f"interval {t}: awarded buys {bought[t]} kW, sells {sold[t]} kW, traded {volume[t]} kW"
        )


__all__ = [
    "CLEARED",
    "NO_TRADE",
    "SHORTAGE",
    "SIDES",
    "SURPLUS",
    "ZERO_EPS",
    "Book",
    "Clearing",
    "Status",
    "book_from_blocks",
    "book_from_curves",
    "book_from_points",
    "clear",
]
