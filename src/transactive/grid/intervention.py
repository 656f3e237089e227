"""The DSO's operational intervention when a schedule it did not make overloads its network.

In a grand-central (Minimal DSO) design the wholesale market schedules every device without
seeing the distribution grid. The DSO receives the schedule, checks its branches and, where a
branch would carry more than its thermal limit, curtails the *controllable* devices below it
— loads towards their minimum, exports towards zero — in proportion to how much each can move,
without seeing their bids (the German §14a EnWG "dimming" of controllable consumption devices
works this way: pro rata, bid-blind). The curtailment is repeated branch by branch, worst
first, until every branch is ``margin`` below its limit or nothing below it can move.

The check is the lossless radial flow: a branch carries the net power of every bus below it
(kW, active power only; the margin covers losses and reactive power). Voltage limits are not
enforced here — the AC power flow of the run still reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transactive.core.curves import FloatArray, IntArray
from transactive.grid.limits import Limits
from transactive.grid.lindistflow import radial
from transactive.grid.model import Feeder

_TOL_KW = 1e-6


@dataclass(frozen=True)
class Curtailer:
    """Built once per feeder: the subtree of every branch and its limit (kW)."""

    index: IntArray  # feeder bus → energised position e (−1: de-energised)
    below: np.ndarray  # (E, E) bool: below[e, j] — bus j is e or downstream of e
    limit_kw: FloatArray  # per e: limit of the branch into e (inf at sources)

    @property
    def n(self) -> int:
        """Energised buses."""
        return int(self.limit_kw.size)

    def flows(self, bus: IntArray, kw: FloatArray) -> FloatArray:
        """Power (kW) into every branch for device powers ``kw`` at feeder buses ``bus``."""
        e = self.index[bus]
        on = e >= 0
        p = np.bincount(e[on], weights=kw[on], minlength=self.n)
        out: FloatArray = self.below.astype(np.float64) @ p
        return out

    def curtail(self, bus: IntArray, kw: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
        """Device powers (kW, + consume) after the intervention; ``lo``/``hi``: the lowest and
        highest power each device can run at in this interval (its bid curve at the price
        cap and floor; equal for devices that cannot move)."""
        kw = np.asarray(kw, dtype=np.float64).copy()
        e = self.index[bus]
        on = e >= 0
        stuck = np.zeros(self.n, dtype=bool)
        for _ in range(4 * self.n + 4):
            f = self.flows(bus, kw)
            over_in = np.where(stuck, -np.inf, f - self.limit_kw)
            over_out = np.where(stuck, -np.inf, -f - self.limit_kw)
            b = int(np.argmax(np.maximum(over_in, over_out)))
            excess = max(over_in[b], over_out[b])
            if not excess > _TOL_KW:
                break
            mine = on & self.below[b, np.maximum(e, 0)]
            room = np.where(mine, (kw - lo) if over_in[b] >= over_out[b] else (hi - kw), 0.0)
            room = np.clip(room, 0.0, None)
            total = float(room.sum())
            if total <= _TOL_KW:
                stuck[b] = True
                continue
            step = min(1.0, excess / total) * room
            kw = kw - step if over_in[b] >= over_out[b] else kw + step
        return kw


def curtailer(feeder: Feeder, limits: Limits, margin: float) -> Curtailer:
    """The :class:`Curtailer` of ``feeder``: branch limits are the thermal ratings (kVA, taken
    as kW) × the scenario's loading limit × (1 − ``margin``)."""
    net = radial(feeder)
    E = net.n
    below = np.zeros((E, E), dtype=bool)
    for j in range(E):  # once per feeder: walk every bus up to its source
        a = j
        while a >= 0:
            below[a, j] = True
            a = int(net.parent[a])
    pct = np.where(net.is_trafo, limits.max_trafo_loading_percent, limits.max_line_loading_percent)
    limit = net.rating_kva * pct / 100.0 * (1.0 - margin)
    return Curtailer(
        index=net.index, below=below, limit_kw=np.where(net.parent >= 0, limit, np.inf)
    )
