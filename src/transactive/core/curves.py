"""Bid curves: net power (kW, + buy/consume, − sell/produce) as a non-increasing function of
price ($/kWh).

Representation
--------------
A :class:`Curves` value holds *many* curves in flat numpy arrays (ragged, CSR-style): curve
``i`` has the breakpoints ``price[offsets[i]:offsets[i+1]]`` and
``quantity[offsets[i]:offsets[i+1]]``. Within a curve, prices are non-decreasing and
quantities non-increasing. Between two breakpoints the curve is linear; two breakpoints at
the same price make a vertical *step* (a block bid); before the first and after the last
breakpoint the curve is constant. So one type covers

* step curves (price–quantity blocks): a buy block of ``x`` kW at ``b`` $/kWh is the two
  points ``(b, x), (b, 0)``; a sell block of ``y`` kW at ``s`` is ``(s, 0), (s, −y)``;
* piecewise-linear curves (ramp bids of thermostatic loads, batteries, ...);
* and their sums, which is what every node offers to its parent.

At a vertical step the curve takes every value between its *left* limit (the quantity just
below that price) and its *right* limit (just above). Functions that read a curve at a price
say which one they return; :func:`dispatch` shares a step pro rata.

Every operation is batched over curves, and :func:`aggregate` sums curves per group (e.g.
per market interval) in O(N log N) in the number of breakpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from transactive.errors import InvalidCurveError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Relative tolerance used to decide that summed quantities are equal (float round-off).
RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class Curves:
    """``n`` bid curves in flat arrays.

    price: breakpoint prices, $/kWh, non-decreasing within each curve.
    quantity: breakpoint net quantities, kW (+ buy, − sell), non-increasing within each curve.
    offsets: ``n + 1`` indices into ``price``/``quantity``; curve ``i`` is
        ``offsets[i]:offsets[i+1]`` and has at least one breakpoint.
    """

    price: FloatArray
    quantity: FloatArray
    offsets: IntArray

    def __post_init__(self) -> None:
        _validate(self.price, self.quantity, self.offsets)

    @property
    def n(self) -> int:
        """Number of curves."""
        return int(self.offsets.size - 1)

    @property
    def counts(self) -> IntArray:
        """Breakpoints per curve."""
        return np.diff(self.offsets)

    def uniform_k(self) -> int | None:
        """The common number of breakpoints if every curve has the same, else None."""
        n = self.n
        if n == 0 or self.price.size % n:
            return None
        k = self.price.size // n
        return k if np.array_equal(self.offsets, np.arange(0, n * k + 1, k)) else None

    def curve_index(self) -> IntArray:
        """Index of the curve each breakpoint belongs to."""
        k = self.uniform_k()
        if k is not None:
            return np.arange(self.price.size, dtype=np.int64) // k
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts)

    def take(self, i: int) -> tuple[FloatArray, FloatArray]:
        """Breakpoints ``(price, quantity)`` of curve ``i``."""
        s = slice(self.offsets[i], self.offsets[i + 1])
        return self.price[s], self.quantity[s]

    def __len__(self) -> int:
        return self.n


def _validate(price: FloatArray, quantity: FloatArray, offsets: IntArray) -> None:
    if price.ndim != 1 or quantity.ndim != 1 or price.shape != quantity.shape:
        raise InvalidCurveError("price and quantity must be 1-D arrays of the same length")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != price.size:
        raise InvalidCurveError("offsets must start at 0 and end at the number of breakpoints")
    counts = np.diff(offsets)
    if np.any(counts < 1):
        i = int(np.argmax(counts < 1))
        raise InvalidCurveError(f"curve {i}: no breakpoint", i)
    bad = ~(np.isfinite(price) & np.isfinite(quantity))
    if bad.any():
        i = _curve_of(offsets, bad)
        raise InvalidCurveError(f"curve {i}: NaN or infinite price or quantity", i)
    if price.size > 1:
        inner = np.ones(price.size - 1, dtype=bool)
        inner[offsets[1:-1] - 1] = False  # pairs that straddle two curves
        if (bad := inner & (np.diff(price) < 0)).any():
            i = _curve_of(offsets, bad)
            raise InvalidCurveError(f"curve {i}: breakpoint prices must not decrease", i)
        if (bad := inner & (np.diff(quantity) > 0)).any():
            i = _curve_of(offsets, bad)
            raise InvalidCurveError(f"curve {i}: quantity must not increase with price", i)


def _curve_of(offsets: IntArray, mask: NDArray[np.bool_]) -> int:
    """Curve index of the first ``True`` position in a breakpoint-aligned mask."""
    first = int(np.argmax(mask))
    return int(np.searchsorted(offsets, first, side="right") - 1)


# --- construction -------------------------------------------------------------------------


def curves_from_arrays(price: ArrayLike, quantity: ArrayLike) -> Curves:
    """Curves with the same number ``k`` of breakpoints each, from ``(n, k)`` arrays."""
    p = np.atleast_2d(np.asarray(price, dtype=np.float64))
    q = np.atleast_2d(np.asarray(quantity, dtype=np.float64))
    if p.shape != q.shape:
        raise InvalidCurveError(f"price shape {p.shape} differs from quantity shape {q.shape}")
    n, k = p.shape
    return Curves(p.ravel(), q.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64))


def block_curves(price: ArrayLike, quantity: ArrayLike) -> Curves:
    """One block per curve: ``quantity > 0`` buys up to ``price``, ``< 0`` sells from ``price``.

    price: $/kWh; quantity: kW (+ buy, − sell).
    """
    p = np.asarray(price, dtype=np.float64).ravel()
    q = np.asarray(quantity, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise InvalidCurveError(f"{p.size} prices but {q.size} quantities")
    hi = np.maximum(q, 0.0)  # quantity just below the price
    lo = np.minimum(q, 0.0)  # quantity just above the price
    return curves_from_arrays(np.column_stack([p, p]), np.column_stack([hi, lo]))


def ramp_curves(price_low: ArrayLike, price_high: ArrayLike, quantity: ArrayLike) -> Curves:
    """One linear ramp per curve between ``price_low`` and ``price_high`` ($/kWh).

    A buyer (``quantity > 0``, kW) takes all of it at or below ``price_low`` and nothing at or
    above ``price_high``; a seller (``quantity < 0``) offers nothing at or below ``price_low``
    and all of it at or above ``price_high``.
    """
    lo = np.asarray(price_low, dtype=np.float64).ravel()
    hi = np.asarray(price_high, dtype=np.float64).ravel()
    q = np.asarray(quantity, dtype=np.float64).ravel()
    if not (lo.shape == hi.shape == q.shape):
        raise InvalidCurveError("price_low, price_high and quantity must have the same length")
    return curves_from_arrays(
        np.column_stack([lo, hi]), np.column_stack([np.maximum(q, 0.0), np.minimum(q, 0.0)])
    )


def concat(parts: list[Curves]) -> Curves:
    """All curves of ``parts``, in order, as one :class:`Curves`."""
    if not parts:
        return Curves(np.zeros(0), np.zeros(0), np.zeros(1, dtype=np.int64))
    sizes = np.array([c.price.size for c in parts], dtype=np.int64)
    shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offsets = np.concatenate(
        [[0]] + [c.offsets[1:] + s for c, s in zip(parts, shift, strict=True)]
    ).astype(np.int64)
    return Curves(
        np.concatenate([c.price for c in parts]),
        np.concatenate([c.quantity for c in parts]),
        offsets,
    )


def select(curves: Curves, index: ArrayLike) -> Curves:
    """The curves at positions ``index`` (any order, repeats allowed), as one :class:`Curves`."""
    idx = np.asarray(index, dtype=np.int64).ravel()
    counts = curves.counts[idx]
    offsets = np.zeros(idx.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # Position of every selected breakpoint in the source arrays.
    start = np.repeat(curves.offsets[idx] - offsets[:-1], counts)
    pos = start + np.arange(offsets[-1], dtype=np.int64)
    return _trusted(curves.price[pos], curves.quantity[pos], offsets)


# --- reading a curve ----------------------------------------------------------------------


def quantity_at(
    curves: Curves, price: ArrayLike, side: Literal["left", "right"] = "right"
) -> FloatArray:
    """Quantity (kW) of every curve at ``price`` ($/kWh, scalar or one per curve).

    At a vertical step, ``side="left"`` gives the quantity just below the price (the whole
    step is taken) and ``side="right"`` the quantity just above it (none of it).
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    return _read(curves, price, strict=side == "left")


def quantity_limits(curves: Curves, price: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Left and right limits ``(q(p−), q(p+))`` of every curve at ``price`` (kW); they
    differ only where a curve steps at exactly that price."""
    return _read(curves, price, strict=True), _read(curves, price, strict=False)


def sides_at(curves: Curves, price: ArrayLike) -> tuple[FloatArray, ...]:
    """Left and right limits of the buying and the selling part of every curve at
    ``price``: ``(buy_left, buy_right, sell_left, sell_right)`` in kW (see
    :func:`split_sides`, :func:`quantity_limits`), locating the price only twice."""
    c = insert_crossings(curves, 0.0)
    buy_q, sell_q = np.maximum(c.quantity, 0.0), np.minimum(c.quantity, 0.0)
    out = []
    for strict in (True, False):
        j0, j1, frac = _locate(c, price, strict)
        out.append([q[j0] + frac * (q[j1] - q[j0]) for q in (buy_q, sell_q)])
    (buy_left, sell_left), (buy_right, sell_right) = out
    return buy_left, buy_right, sell_left, sell_right


def _read(curves: Curves, price: ArrayLike, strict: bool) -> FloatArray:
    j0, j1, frac = _locate(curves, price, strict)
    q = curves.quantity
    out: FloatArray = q[j0] + frac * (q[j1] - q[j0])
    return out


def _locate(
    curves: Curves, price: ArrayLike, strict: bool
) -> tuple[IntArray, IntArray, FloatArray]:
    """Where each curve is read at ``price``: between breakpoints ``j0`` and ``j1`` at
    fraction ``frac``. ``strict``: a step at exactly the price is not yet passed."""
    n = curves.n
    p = np.broadcast_to(np.asarray(price, dtype=np.float64), (n,))
    pb = p[curves.curve_index()]
    before = curves.price < pb if strict else curves.price <= pb
    passed = _segment_count(before, curves.offsets, curves.uniform_k())
    start, count = curves.offsets[:-1], curves.counts
    # Constant extension on either side, linear interpolation inside.
    j1 = start + np.minimum(passed, count - 1)  # first breakpoint not passed (clamped)
    j0 = start + np.maximum(passed - 1, 0)  # last breakpoint passed (clamped)
    p0 = curves.price[j0]
    span = curves.price[j1] - p0
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, (p - p0) / np.where(span > 0, span, 1.0), 0.0)
    return j0, j1, np.clip(frac, 0.0, 1.0)


def price_at(curves: Curves, quantity: ArrayLike, floor: float, cap: float) -> FloatArray:
    """Price ($/kWh) at which each curve takes ``quantity`` (kW, scalar or one per curve).

    The set of prices in ``[floor, cap]`` at which a curve can take a quantity is an
    interval ``[a, b]`` (a point where the curve is strictly decreasing or steps over the
    quantity; a range where the curve is flat at that quantity). The midpoint ``(a + b) / 2``
    is returned — the k = 1/2 rule of double auctions — and NaN where no price in
    ``[floor, cap]`` gives the quantity.
    """
    lo, hi = price_interval(curves, quantity, floor, cap)
    return 0.5 * (lo + hi)


def price_interval(
    curves: Curves, quantity: ArrayLike, floor: float, cap: float
) -> tuple[FloatArray, FloatArray]:
    """Bounds ``(a, b)`` of the prices in ``[floor, cap]`` at which each curve takes
    ``quantity``; NaN where there is none. See :func:`price_at`."""
    n = curves.n
    q = np.broadcast_to(np.asarray(quantity, dtype=np.float64), (n,))
    idx = curves.curve_index()
    k = curves.uniform_k()
    P, Q = curves.price, curves.quantity
    tol = RTOL * (1.0 + np.abs(q))
    qb, tb = q[idx], tol[idx]
    start, count = curves.offsets[:-1], curves.counts
    last = start + count - 1
    above = _segment_count(Q > qb + tb, curves.offsets, k)  # strictly above
    at_or_above = _segment_count(Q >= qb - tb, curves.offsets, k)

    # a: first point where the curve reaches the quantity (coming from the left).
    ja = start + above
    a = np.full(n, np.nan)
    flat_left = (above == 0) & (np.abs(Q[start] - q) <= tol)  # curve starts at q: from floor
    a[flat_left] = floor
    inside = (above > 0) & (above < count)
    a[inside] = _cross(P, Q, ja[inside] - 1, ja[inside], q[inside])
    # b: last point where the curve still takes the quantity (going right).
    jb = start + at_or_above - 1
    b = np.full(n, np.nan)
    flat_right = (at_or_above == count) & (np.abs(Q[last] - q) <= tol)
    b[flat_right] = cap
    inside = (at_or_above > 0) & (at_or_above < count)
    b[inside] = _cross(P, Q, jb[inside], jb[inside] + 1, q[inside])

    # Quantity reached only on the flat extensions already handled; elsewhere unreachable.
    a = np.clip(a, floor, cap)
    b = np.clip(b, floor, cap)
    # Round-off can put the two ends of one point a hair apart in the wrong order.
    close = a > b
    close &= a - b <= RTOL * (1.0 + np.abs(a))
    a = np.where(close, b, a)
    missing = np.isnan(a) | np.isnan(b) | (a > b)
    a[missing] = np.nan
    b[missing] = np.nan
    return a, b


def _cross(P: FloatArray, Q: FloatArray, j0: IntArray, j1: IntArray, q: FloatArray) -> FloatArray:
    """Price where the segment ``j0 → j1`` crosses quantity ``q`` (clamped to the segment;
    exactly an end price when the crossing is at that end)."""
    dq = Q[j0] - Q[j1]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(dq > 0, (Q[j0] - q) / np.where(dq > 0, dq, 1.0), 0.0)
    p0, p1 = P[j0], P[j1]
    inside = np.clip(p0 + frac * (p1 - p0), p0, p1)
    out: FloatArray = np.where(frac <= 0.0, p0, np.where(frac >= 1.0, p1, inside))
    return out


def integrate(curves: Curves, price_low: ArrayLike, price_high: ArrayLike) -> FloatArray:
    """∫ q(p) dp of every curve from ``price_low`` to ``price_high`` (kW·$/kWh = $/h).

    A buyer's surplus at clearing price p* is ∫_{p*}^{cap} q(p) dp; a seller's is
    −∫_{floor}^{p*} q(p) dp.
    """
    n = curves.n
    lo = np.broadcast_to(np.asarray(price_low, dtype=np.float64), (n,))
    hi = np.maximum(np.broadcast_to(np.asarray(price_high, dtype=np.float64), (n,)), lo)
    P, Q, off = curves.price, curves.quantity, curves.offsets
    area = np.zeros(n)
    # Each sloped segment contributes the trapezoid over its part inside [lo, hi] (steps
    # have no width).
    j, c = segment_starts(curves)
    sloped = P[j + 1] > P[j]
    j, c = j[sloped], c[sloped]
    if j.size:
        p0, p1, q0, q1 = P[j], P[j + 1], Q[j], Q[j + 1]
        c0, c1 = np.clip(p0, lo[c], hi[c]), np.clip(p1, lo[c], hi[c])
        s = (q1 - q0) / (p1 - p0)
        area += np.bincount(
            c, weights=(q0 + 0.5 * s * (c0 + c1 - 2.0 * p0)) * (c1 - c0), minlength=n
        )
    start, last = off[:-1], off[1:] - 1
    # Constant extensions: [lo, first breakpoint) and (last breakpoint, hi].
    area += (np.clip(P[start], lo, hi) - lo) * Q[start]
    area += (hi - np.clip(P[last], lo, hi)) * Q[last]
    return area


# --- combining curves ---------------------------------------------------------------------


def aggregate(
    curves: Curves, group: ArrayLike | None = None, n_groups: int | None = None
) -> Curves:
    """Sum the curves of each group into one curve per group, O(N log N).

    group: group index (0 … n_groups−1) of each curve, e.g. its market interval; default one
        group. Groups without curves get the zero curve.
    """
    g = (
        np.zeros(curves.n, dtype=np.int64)
        if group is None
        else np.asarray(group, dtype=np.int64).ravel()
    )
    if g.size != curves.n:
        raise InvalidCurveError(f"{g.size} group indices for {curves.n} curves")
    if g.size and g.min() < 0:
        raise InvalidCurveError("group indices must be non-negative")
    ng = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 1))
    if g.size and g.max() >= ng:
        raise InvalidCurveError(f"group index {int(g.max())} ≥ n_groups={ng}")

    P, Q, off = curves.price, curves.quantity, curves.offsets
    base = np.bincount(g, weights=Q[off[:-1]], minlength=ng)  # quantity left of all prices
    j, c = segment_starts(curves)
    falling = Q[j] > Q[j + 1]  # only segments where the curve drops matter
    j, sg = j[falling], g[c[falling]]
    p0, p1, drop = P[j], P[j + 1], Q[j] - Q[j + 1]
    step = p1 == p0
    # Events: (group, price, jump, slope change); a ramp starts and ends a slope.
    if step.all():
        ev_g, ev_p, ev_j, ev_s = sg, p0, drop, None
    else:
        ramp = ~step
        slope = drop[ramp] / (p1[ramp] - p0[ramp])
        zeros = np.zeros(2 * slope.size)
        ev_g = np.concatenate([sg[step], sg[ramp], sg[ramp]])
        ev_p = np.concatenate([p0[step], p0[ramp], p1[ramp]])
        ev_j = np.concatenate([drop[step], zeros])
        ev_s = np.concatenate([np.zeros(int(step.sum())), slope, -slope])

    order = _group_price_order(ev_g, ev_p, ng)
    ev_g, ev_p, ev_j = ev_g[order], ev_p[order], ev_j[order]
    new = np.ones(ev_p.size, dtype=bool)
    new[1:] = (ev_p[1:] != ev_p[:-1]) | (ev_g[1:] != ev_g[:-1])
    key = np.cumsum(new) - 1
    uk = int(key[-1] + 1) if key.size else 0
    kg = ev_g[new]
    kp = ev_p[new]
    kj: FloatArray = np.bincount(key, weights=ev_j, minlength=uk).astype(np.float64)
    ks: FloatArray = (
        np.zeros(uk)
        if ev_s is None
        else np.bincount(key, weights=ev_s[order], minlength=uk).astype(np.float64)
    )

    # Slope in force after each key (group-wise cumulative sum) and the quantity the ramps
    # drop over the gap to the next key of the same group.
    slope_after = np.clip(_group_cumsum(ks, kg), 0.0, None)  # ≥ 0 up to round-off
    ramp_drop = np.zeros(uk)
    same_next = kg[1:] == kg[:-1]
    ramp_drop[:-1] = np.where(same_next, slope_after[:-1] * (kp[1:] - kp[:-1]), 0.0)

    # Points per key: (p, q_left) and, for a step, (p, q_right). Each point's quantity is the
    # group base minus a running sum of non-negative drops, so the result is non-increasing
    # even in floating point (rounding is monotone).
    has_step = kj > 0
    n_pts = 1 + has_step.astype(np.int64)
    per_group = np.bincount(kg, weights=n_pts, minlength=ng).astype(np.int64)
    empty = per_group == 0
    per_group[empty] = 1  # a group without events is the constant curve at its base
    offsets = np.concatenate([[0], np.cumsum(per_group)]).astype(np.int64)
    before = np.cumsum(n_pts) - n_pts
    first = offsets[kg] + before - before[np.searchsorted(kg, kg, side="left")]
    m = int(offsets[-1])
    price = np.zeros(m)
    drops = np.zeros(m)
    pgroup = np.repeat(np.arange(ng, dtype=np.int64), per_group)
    price[first] = kp
    drops[first[1:]] = np.where(same_next, ramp_drop[:-1], 0.0)
    sp = first[has_step] + 1
    price[sp] = kp[has_step]
    drops[sp] = kj[has_step]
    # A group without price events is flat: place its one point at its curves' first price.
    flat = np.flatnonzero(empty)
    if flat.size and P.size:
        first_price = np.full(ng, np.inf)
        np.minimum.at(first_price, g, P[off[:-1]])
        price[offsets[flat]] = np.where(np.isfinite(first_price[flat]), first_price[flat], 0.0)
    qty = base[pgroup] - _group_cumsum(drops, pgroup)
    return _trusted(price, qty, offsets)


def clip(curves: Curves, export_limit: ArrayLike, import_limit: ArrayLike) -> Curves:
    """Clip every curve to ``[−export_limit, +import_limit]`` kW (limits ≥ 0, per curve or
    scalar); ramps crossing a limit get a breakpoint where they cross it."""
    n = curves.n
    ex = np.broadcast_to(np.asarray(export_limit, dtype=np.float64), (n,))
    im = np.broadcast_to(np.asarray(import_limit, dtype=np.float64), (n,))
    if not (np.all(ex >= 0) and np.all(im >= 0)):  # also rejects NaN
        raise InvalidCurveError("export_limit and import_limit must be ≥ 0 (inf for no limit)")
    c = insert_crossings(insert_crossings(curves, im), -ex)
    idx = c.curve_index()
    return _trusted(c.price, np.clip(c.quantity, -ex[idx], im[idx]), c.offsets)


def split_sides(curves: Curves) -> tuple[Curves, Curves]:
    """Split each curve into its buying part ``max(q, 0)`` and selling part ``min(q, 0)``."""
    c = insert_crossings(curves, 0.0)
    return (
        _trusted(c.price, np.maximum(c.quantity, 0.0), c.offsets),
        _trusted(c.price, np.minimum(c.quantity, 0.0), c.offsets),
    )


def close(curves: Curves, floor: float, cap: float) -> Curves:
    """Every curve closed on ``[floor, cap]``: a curve still buying at its last breakpoint
    gets a step down to 0 kW at the cap, one still selling at its first breakpoint a step
    up from 0 kW at the floor — the price-taking reading of a flat end. A market over
    ``[floor, cap]`` then always has a price where the book balances."""
    P, Q, off = curves.price, curves.quantity, curves.offsets
    start, last = off[:-1], off[1:] - 1
    buy_end = Q[last] > 0
    sell_start = Q[start] < 0
    if not (buy_end.any() or sell_start.any()) and ((P >= floor) & (P <= cap)).all():
        return curves
    head = np.where(sell_start, 2, 0)  # points added before / after each curve
    tail = np.where(buy_end, 2, 0)
    counts = curves.counts + head + tail
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    price = np.empty(offsets[-1])
    qty = np.empty(offsets[-1])
    idx = curves.curve_index()
    body = np.arange(P.size) - off[idx] + offsets[idx] + head[idx]
    price[body], qty[body] = np.clip(P, floor, cap), Q  # same function on [floor, cap]
    c = np.flatnonzero(sell_start)
    price[offsets[c]], qty[offsets[c]] = floor, 0.0
    price[offsets[c] + 1], qty[offsets[c] + 1] = floor, Q[start[c]]
    c = np.flatnonzero(buy_end)
    price[offsets[c + 1] - 2], qty[offsets[c + 1] - 2] = cap, Q[last[c]]
    price[offsets[c + 1] - 1], qty[offsets[c + 1] - 1] = cap, 0.0
    return _trusted(price, qty, offsets)


def insert_crossings(curves: Curves, level: ArrayLike) -> Curves:
    """Add a breakpoint wherever a sloped segment of a curve strictly crosses ``level`` (kW,
    scalar or one per curve), so the curve can be clipped at that level exactly."""
    n = curves.n
    lv = np.broadcast_to(np.asarray(level, dtype=np.float64), (n,))
    P, Q, off = curves.price, curves.quantity, curves.offsets
    if P.size < 2:
        return curves
    idx = curves.curve_index()
    inner = np.ones(P.size - 1, dtype=bool)
    inner[off[1:-1] - 1] = False
    L = lv[idx[:-1]]
    cross = inner & (Q[:-1] > L) & (Q[1:] < L) & (P[1:] > P[:-1])
    if not cross.any():
        return curves
    j = np.flatnonzero(cross)
    pc = P[j] + (Q[j] - L[j]) / (Q[j] - Q[j + 1]) * (P[j + 1] - P[j])
    pc = np.clip(pc, P[j], P[j + 1])
    price = np.insert(P, j + 1, pc)
    qty = np.insert(Q, j + 1, L[j])
    added = np.bincount(idx[j], minlength=n)
    offsets = off + np.concatenate([[0], np.cumsum(added)])
    return _trusted(price, qty, offsets.astype(np.int64))


def dispatch(
    curves: Curves, price: ArrayLike, total: ArrayLike, group: ArrayLike | None = None
) -> FloatArray:
    """Quantity (kW) each curve gets at ``price`` when its group must take ``total`` kW.

    Every curve gets at least its right-limit quantity at the price; what is left of the
    group's total is shared among the vertical steps at exactly that price pro rata to
    their size (one common fraction per group). This is the tie rule of the auction and
    how a node disaggregates an award to its children. ``price``/``total`` are per group.
    """
    g = np.zeros(curves.n, dtype=np.int64) if group is None else np.asarray(group, np.int64)
    p = np.atleast_1d(np.asarray(price, dtype=np.float64))
    t = np.atleast_1d(np.asarray(total, dtype=np.float64))
    ng = max(p.size, t.size)
    left, right = quantity_limits(curves, np.broadcast_to(p, (ng,))[g])
    return share_steps(left, right, g, np.broadcast_to(t, (ng,)))


def share_steps(
    left: FloatArray, right: FloatArray, group: IntArray, total: FloatArray
) -> FloatArray:
    """Per curve ``right + θ_g (left − right)`` with one θ_g ∈ [0, 1] per group chosen so the
    group sums to ``total[g]`` (as far as the steps allow): pro-rata sharing of steps.

    Groups with θ > ½ are computed from the left as ``left − (1 − θ)(left − right)``, with
    ``1 − θ`` formed directly, so a small award out of a huge step (1 kW of a 1e9 kW offer)
    keeps its precision instead of cancelling."""
    ng = total.size
    step = left - right
    sum_right = np.bincount(group, weights=right, minlength=ng)
    sum_left = np.bincount(group, weights=left, minlength=ng)
    sum_step = np.bincount(group, weights=step, minlength=ng)
    has_step = sum_step > 0
    denom = np.where(has_step, sum_step, 1.0)
    theta = np.clip(np.where(has_step, (total - sum_right) / denom, 0.0), 0.0, 1.0)
    rest = np.clip(np.where(has_step, (sum_left - total) / denom, 1.0), 0.0, 1.0)  # 1 − θ
    from_left = (theta > 0.5)[group]
    out: FloatArray = np.where(from_left, left - rest[group] * step, right + theta[group] * step)
    return out


# --- helpers ------------------------------------------------------------------------------


def segment_starts(curves: Curves) -> tuple[IntArray, IntArray]:
    """Start breakpoint ``j`` (the segment runs ``j → j+1``) and curve index of every
    segment between two consecutive breakpoints of the same curve."""
    k = curves.uniform_k()
    if k is not None:
        j = np.arange(curves.price.size, dtype=np.int64).reshape(-1, k)[:, :-1].ravel()
        return j, j // k
    inner = np.ones(max(curves.price.size - 1, 0), dtype=bool)
    inner[curves.offsets[1:-1] - 1] = False
    j = np.flatnonzero(inner)
    return j, curves.curve_index()[j]


def _segment_count(mask: NDArray[np.bool_], offsets: IntArray, k: int | None) -> IntArray:
    """Number of ``True`` values in each ``offsets`` segment (``k``: uniform segment size)."""
    if k is not None:
        counts: IntArray = mask.reshape(-1, k).sum(axis=1, dtype=np.int64)
        return counts
    c = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    out: IntArray = c[offsets[1:]] - c[offsets[:-1]]
    return out


def _group_price_order(group: IntArray, price: FloatArray, n_groups: int) -> IntArray:
    """Permutation sorting events by group, then price."""
    order = np.argsort(price)
    if n_groups == 1:
        return order
    # A stable sort by group keeps the price order; small integer keys sort in linear time.
    g = group[order]
    if n_groups <= np.iinfo(np.int16).max:
        g = g.astype(np.int16)
    out: IntArray = order[np.argsort(g, kind="stable")]
    return out


def _group_cumsum(values: FloatArray, group: IntArray) -> FloatArray:
    """Cumulative sum restarting at each new value of the sorted ``group`` array."""
    if values.size == 0:
        return values.copy()
    c = np.cumsum(values)
    start = np.ones(values.size, dtype=bool)
    start[1:] = group[1:] != group[:-1]
    first = np.flatnonzero(start)
    before = np.concatenate([[0.0], c[first[1:] - 1]])
    counts = np.diff(np.concatenate([first, [values.size]]))
    out: FloatArray = c - np.repeat(before, counts)
    return out


def _trusted(price: FloatArray, quantity: FloatArray, offsets: IntArray) -> Curves:
    """Build :class:`Curves` from arrays that are valid by construction (skips validation)."""
    c = object.__new__(Curves)
    object.__setattr__(c, "price", price)
    object.__setattr__(c, "quantity", quantity)
    object.__setattr__(c, "offsets", offsets)
    return c
