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
* **Status.** ``cleared``; ``shortage`` when the price is at the cap and demand bid at the
  cap is not fully served (demand cannot be met under the cap); ``surplus`` when the price
  is at the floor and supply offered at the floor is not fully absorbed; ``no_trade`` when
  nothing trades otherwise — then no price is formed and ``price`` is NaN.
* **Money.** Pay-as-clear: every buyer pays and every seller receives ``p* × award``
  ($/h; multiply by the interval length in hours for $). Buyers' payments equal sellers'
  receipts because awarded buys equal awarded sells — checked on every call.

Bad input raises :class:`~transactive.errors.InvalidBidError` naming the bid, before anything
is cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
from transactive.errors import (
    BalanceError,
    InvalidBidError,
    InvalidCurveError,
    InvalidInputError,
    plain,
)

CLEARED, NO_TRADE, SHORTAGE, SURPLUS = "cleared", "no_trade", "shortage", "surplus"
SIDES = ("buy", "sell")


@dataclass(frozen=True, slots=True)
class Book:
    """An order book: one curve per bid, for ``n_intervals`` market intervals.

    ids: bid ids (any hashable numpy dtype: int or str), unique within an interval.
    curves: the bids' curves (kW vs $/kWh, + buy, − sell), in the order of ``ids``.
    interval: index (0 … n_intervals−1) of the market interval of each bid.
    """

    ids: NDArray[np.generic]
    curves: Curves
    interval: IntArray
    n_intervals: int

    def __len__(self) -> int:
        return int(self.ids.size)


def book_from_curves(
    ids: ArrayLike,
    curves: Curves,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
) -> Book:
    """A book from bid curves (one per id); ``interval`` defaults to a single interval."""
    id_arr = np.asarray(ids).ravel()
    if id_arr.size != curves.n:
        raise InvalidInputError(f"{id_arr.size} bid ids for {curves.n} curves")
    iv = _interval_index(interval, id_arr.size, n_intervals)
    n_iv = int(n_intervals if n_intervals is not None else (iv.max() + 1 if iv.size else 1))
    _check_unique(id_arr, iv)
    return Book(id_arr, curves, iv, n_iv)


def book_from_points(
    ids: ArrayLike,
    price: ArrayLike,
    quantity: ArrayLike,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
) -> Book:
    """A book of curve bids given as ``(n, k)`` breakpoint arrays (price $/kWh, quantity kW,
    + buy / − sell), one row per bid id; an invalid curve is reported by its bid id."""
    id_arr = np.asarray(ids).ravel()
    try:
        curves = curves_from_arrays(price, quantity)
    except InvalidCurveError as exc:
        if exc.index is None or exc.index >= id_arr.size:
            raise
        reason = str(exc).split(": ", 1)[-1]
        raise InvalidBidError(f"bid {plain(id_arr[exc.index])!r}: {reason}") from None
    return book_from_curves(id_arr, curves, interval, n_intervals)


def book_from_blocks(
    ids: ArrayLike,
    side: ArrayLike,
    price: ArrayLike,
    quantity: ArrayLike,
    interval: ArrayLike | None = None,
    n_intervals: int | None = None,
) -> Book:
    """A book of block bids: ``side`` is ``"buy"`` or ``"sell"``, ``price`` $/kWh,
    ``quantity`` kW ≥ 0 (the most the bid buys below / sells above its price)."""
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
    return book_from_curves(id_arr, block_curves(p, np.where(is_buy, q, -q)), interval, n_intervals)


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
    status: per interval: ``cleared``, ``no_trade``, ``shortage`` or ``surplus``.
    awards: net award per bid, kW (+ bought, − sold), in the book's order.
    unresponsive_demand, unresponsive_supply: awarded price-taking demand / supply (≥ 0, kW).
    buyer_surplus, seller_surplus: per interval, $/h.
    """

    price: FloatArray
    quantity: FloatArray
    status: NDArray[np.str_]
    awards: FloatArray
    unresponsive_demand: FloatArray
    unresponsive_supply: FloatArray
    buyer_surplus: FloatArray
    seller_surplus: FloatArray
    interval: IntArray

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
    a, b = price_interval(aggregate(bids, group, T), 0.0, floor, cap)
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
    _check_balance(buy, sell, group, volume, T)

    tol = RTOL * (1.0 + np.maximum(d_left, s_right))
    status = np.full(T, CLEARED, dtype="<U8")
    status[volume <= tol] = NO_TRADE
    status[(price == cap) & (d_left - volume > tol)] = SHORTAGE
    status[(price == floor) & (s_right - volume > tol)] = SURPLUS
    priced = status != NO_TRADE
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
    )


def _per_interval(value: ArrayLike, T: int, name: str) -> FloatArray:
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), (T,)).copy()
    if not (np.isfinite(v).all() and (v >= 0).all()):
        raise InvalidInputError(f"{name} must be finite and ≥ 0 kW in every interval")
    return v


def _check_balance(
    buy: FloatArray, sell: FloatArray, group: IntArray, volume: FloatArray, T: int
) -> None:
    """Awarded buys = awarded sells = traded volume, in every interval."""
    bought = np.bincount(group, weights=buy, minlength=T)
    sold = -np.bincount(group, weights=sell, minlength=T)
    scale = 1.0 + np.bincount(group, weights=np.abs(buy) + np.abs(sell), minlength=T)
    err = np.maximum(np.abs(bought - volume), np.abs(sold - volume)) / scale
    if (err > 1e-9).any():
        t = int(np.argmax(err))
        raise BalanceError(
            f"interval {t}: awarded buys {bought[t]} kW, sells {sold[t]} kW, traded {volume[t]} kW"
        )


__all__ = [
    "CLEARED",
    "NO_TRADE",
    "SHORTAGE",
    "SIDES",
    "SURPLUS",
    "Book",
    "Clearing",
    "book_from_blocks",
    "book_from_curves",
    "book_from_points",
    "clear",
]
