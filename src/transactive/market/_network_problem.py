"""The clearing problem of :mod:`transactive.market.network` as arrays: bids as LP segments,
fixed load, the wholesale price or curve and the storage fleet, on energised buses.

Internal to :mod:`transactive.market.network`: :func:`prepare` validates the bids, the fixed
load and the wholesale input and builds a :class:`Problem`; the LP
(:mod:`transactive.market._network_lp`) and the split by source
(:mod:`transactive.market._network_areas`) read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import Curves
from transactive.errors import InvalidBidError, InvalidInputError, plain
from transactive.grid.limits import Limits
from transactive.grid.lindistflow import RadialNetwork
from transactive.grid.model import Feeder
from transactive.market.auction import Book

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Storage:
    """Validated storage arrays (devices on energised buses ``e``) of a
    :class:`~transactive.market.network.StorageFleet`."""

    e: IntArray
    ch_max: FloatArray  # T × n (availability applied)
    dis_max: FloatArray
    cap: FloatArray
    soc0: FloatArray
    soc_min: FloatArray
    eta_c: FloatArray
    eta_d: FloatArray
    target: FloatArray  # T × n, NaN = none
    cost: FloatArray

    @property
    def n(self) -> int:
        return int(self.e.size)


@dataclass
class Problem:
    """Everything the LP needs except the linearisation (arrays over intervals T and
    energised buses E)."""

    net: RadialNetwork
    T: int
    dt: float
    voll: float
    limits: Limits
    # bids
    n_bids: int
    bid_e: IntArray
    bid_base: FloatArray  # q_last per bid (kW)
    bid_tan: FloatArray
    bid_iv: IntArray
    seg_bid: IntArray
    seg_price: FloatArray
    seg_ub: FloatArray
    # fixed load (T × E)
    fixed_p: FloatArray
    fixed_q: FloatArray
    # wholesale
    price: FloatArray | None  # T, fixed price
    ws_iv: IntArray  # wholesale curve segments
    ws_price: FloatArray
    ws_ub: FloatArray
    ws_base: FloatArray  # T
    storage: Storage | None
    thermal_sides: int


def prepare(
    net: RadialNetwork,
    book: Book,
    bus: ArrayLike,
    wholesale: ArrayLike | Curves,
    limits: Limits,
    fixed_p: ArrayLike | None,
    fixed_q: ArrayLike | None,
    price_taking: ArrayLike | None,
    power_factor: ArrayLike,
    dt: float,
    voll: float,
    thermal_sides: int,
    ramp_steps: int,
) -> Problem:
    """Validate the bids, fixed load and wholesale price and turn them into LP arrays (the
    storage fleet is validated by the caller and set as ``storage``)."""
    feeder = net.feeder
    T = int(book.n_intervals)
    n = len(book)
    bid_e = _bid_buses(net, book, bus)
    pf = np.broadcast_to(np.asarray(power_factor, dtype=np.float64), (n,))
    if n and not ((pf > 0) & (pf <= 1)).all():
        i = int(np.argmax(~((pf > 0) & (pf <= 1))))
        raise InvalidBidError(f"bid {plain(book.ids[i])!r}: power factor {pf[i]} not in (0, 1]")
    tan = np.sqrt(1.0 / pf**2 - 1.0) if n else np.zeros(0)
    pt = (
        np.zeros(n, dtype=bool)
        if price_taking is None
        else np.broadcast_to(np.asarray(price_taking, dtype=bool), (n,)).copy()
    )
    seg_bid, seg_price, seg_ub, base = _segments(book.curves, ramp_steps)
    if pt.any():  # price-taking bids: buy parts valued at +VOLL, sell parts at −VOLL
        buy = _segment_is_buy(book.curves, ramp_steps)
        seg_price = np.where(pt[seg_bid], np.where(buy, voll, -voll), seg_price)
    # Bids that still buy at their highest price get a step at +VOLL down to 0 kW; bids
    # that still sell at their lowest price a step at −VOLL up to 0 kW.
    top = base + np.bincount(seg_bid, weights=seg_ub, minlength=n)
    up = np.flatnonzero(base > 0)
    down = np.flatnonzero(top < 0)
    seg_bid = np.concatenate([seg_bid, up, down])
    seg_price = np.concatenate([seg_price, np.full(up.size, voll), np.full(down.size, -voll)])
    seg_ub = np.concatenate([seg_ub, base[up], -top[down]])
    base = np.where(base > 0, 0.0, base)
    fp = _per_bus(fixed_p, T, feeder.n_bus, "fixed_load_kw")
    fq = _per_bus(fixed_q, T, feeder.n_bus, "fixed_load_kvar")
    dead = ~feeder.topology.energized
    if (fp[:, dead] != 0).any() or (fq[:, dead] != 0).any():
        b = int(np.flatnonzero(((fp != 0) | (fq != 0)).any(axis=0) & dead)[0])
        raise InvalidInputError(
            f"fixed load at bus {feeder.bus_names[b]!r}, which is not connected to a source"
        )
    price: FloatArray | None = None
    ws_iv = np.zeros(0, dtype=np.int64)
    ws_price = ws_ub = np.zeros(0)
    ws_base = np.zeros(T)
    if isinstance(wholesale, Curves):
        if wholesale.n != T:
            raise InvalidInputError(
                f"wholesale curve: {wholesale.n} curves for {T} intervals (one per interval)"
            )
        ws_iv, ws_price, ws_ub, ws_base = _segments(wholesale, ramp_steps)
    else:
        arr = np.asarray(wholesale, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.size != T):
            raise InvalidInputError(
                f"wholesale_price: {arr.size} values for {T} intervals (give one or one each)"
            )
        price = np.broadcast_to(arr, (T,)).copy()
        if not np.isfinite(price).all():
            raise InvalidInputError("wholesale_price must be finite ($/kWh)")
    return Problem(
        net=net,
        T=T,
        dt=dt,
        voll=voll,
        limits=limits,
        n_bids=n,
        bid_e=bid_e,
        bid_base=base,
        bid_tan=tan,
        bid_iv=book.interval.astype(np.int64),
        seg_bid=seg_bid,
        seg_price=seg_price,
        seg_ub=seg_ub,
        fixed_p=fp[:, net.bus],
        fixed_q=fq[:, net.bus],
        price=price,
        ws_iv=ws_iv,
        ws_price=ws_price,
        ws_ub=ws_ub,
        ws_base=ws_base,
        storage=None,
        thermal_sides=thermal_sides,
    )


def bus_positions(feeder: Feeder, bus: ArrayLike, n: int, what: str) -> tuple[IntArray, int]:
    """Feeder positions of ``bus`` (names or positions); returns (positions, first bad index
    or −1)."""
    arr = np.asarray(bus).ravel()
    if arr.size != n:
        raise InvalidInputError(f"{n} {what} but {arr.size} buses")
    if np.issubdtype(arr.dtype, np.integer):
        pos = arr.astype(np.int64)
        bad = (pos < 0) | (pos >= feeder.n_bus)
        pos = np.where(bad, -1, pos)
    else:
        names = pd.Index(feeder.bus_names)
        pos = names.get_indexer(pd.Index(arr.astype(str))).astype(np.int64)
        bad = pos < 0
    return pos, (int(np.argmax(bad)) if bad.any() else -1)


def _bid_buses(net: RadialNetwork, book: Book, bus: ArrayLike) -> IntArray:
    pos, bad = bus_positions(net.feeder, bus, len(book), "bids")
    if bad >= 0:
        raw = np.asarray(bus).ravel()[bad]
        raise InvalidBidError(
            f"bid {plain(book.ids[bad])!r}: feeder {net.feeder.name!r} has no bus {plain(raw)!r}"
        )
    e = net.index[pos] if pos.size else np.zeros(0, dtype=np.int64)
    if (e < 0).any():
        i = int(np.argmax(e < 0))
        raise InvalidBidError(
            f"bid {plain(book.ids[i])!r}: bus {net.feeder.bus_names[pos[i]]!r} is not "
            "connected to a source"
        )
    return e.astype(np.int64)


def _segments(
    curves: Curves, ramp_steps: int
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Falling segments of every curve as LP variables: (curve, price, size) per variable
    and the quantity ``q_last`` of each curve at the highest price."""
    P, Q, off = curves.price, curves.quantity, curves.offsets
    n = curves.n
    base = Q[off[1:] - 1].astype(np.float64) if n else np.zeros(0)
    if P.size < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), base
    inner = np.ones(P.size - 1, dtype=bool)
    inner[off[1:-1] - 1] = False
    drop = Q[:-1] - Q[1:]
    j = np.flatnonzero(inner & (drop > 0))
    cid = curves.curve_index()[j]
    p0, p1, dq = P[j], P[j + 1], drop[j]
    k = np.where(p1 > p0, ramp_steps, 1)
    rep = np.repeat(np.arange(j.size), k)
    step = np.arange(rep.size) - np.repeat(np.cumsum(k) - k, k)
    frac = (step + 0.5) / k[rep]
    price = p0[rep] + frac * (p1[rep] - p0[rep])
    return cid[rep], price, dq[rep] / k[rep], base


def _segment_is_buy(curves: Curves, ramp_steps: int) -> BoolArray:
    """For every LP segment variable (as :func:`_segments`): it lies in the buying part of
    its curve (midpoint quantity > 0)."""
    P, Q, off = curves.price, curves.quantity, curves.offsets
    if P.size < 2:
        return np.zeros(0, dtype=bool)
    inner = np.ones(P.size - 1, dtype=bool)
    inner[off[1:-1] - 1] = False
    drop = Q[:-1] - Q[1:]
    j = np.flatnonzero(inner & (drop > 0))
    k = np.where(P[j + 1] > P[j], ramp_steps, 1)
    rep = np.repeat(np.arange(j.size), k)
    step = np.arange(rep.size) - np.repeat(np.cumsum(k) - k, k)
    mid = Q[j][rep] - (step + 0.5) / k[rep] * drop[j][rep]
    out: BoolArray = mid > 0
    return out


def _per_bus(value: ArrayLike | None, T: int, n_bus: int, name: str) -> FloatArray:
    if value is None:
        return np.zeros((T, n_bus))
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape not in ((1, n_bus), (T, n_bus)):
        raise InvalidInputError(f"{name} has shape {arr.shape}, expected ({T}, {n_bus})")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return np.broadcast_to(arr, (T, n_bus)).copy()
