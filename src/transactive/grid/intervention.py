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
    below: FloatArray  # (E, E): below[e, j] = 1 if bus j is e or downstream of e, else 0
    ancestor: IntArray  # (depth, E): the ancestor of bus j at each depth (−1 above j)
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
        out: FloatArray = self.below @ p
        return out

    def curtail(self, bus: IntArray, kw: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
        """Device powers (kW, + consume) after the intervention; ``lo``/``hi``: the lowest and
        highest power each device can run at in this interval (its bid curve at the price
        cap and floor; equal for devices that cannot move).

        One pass from the deepest branches up: at each depth every overloaded branch (their
        subtrees are disjoint) cuts the devices below it pro rata to how far each can move,
        so a branch higher up only cuts what is still left over."""
        kw = np.asarray(kw, dtype=np.float64).copy()
        e = self.index[bus]
        on = e >= 0
        for depth in range(self.ancestor.shape[0] - 1, 0, -1):
            f = self.flows(bus, kw)
            lim = self.limit_kw
            over_in = np.clip(f - lim, 0.0, None)
            over_out = np.clip(-f - lim, 0.0, None)
            anc = np.where(on, self.ancestor[depth, np.maximum(e, 0)], -1)
            mine = anc >= 0
            if not mine.any():
                continue
            a = anc[mine]
            for excess, room in ((over_in, kw - lo), (over_out, hi - kw)):
                need = excess[a]
                if not (need > _TOL_KW).any():
                    continue
                r = np.clip(room[mine], 0.0, None) * (need > _TOL_KW)
                total = np.bincount(a, weights=r, minlength=self.n)
                share = np.divide(excess, total, out=np.zeros(self.n), where=total > _TOL_KW)
                step = np.minimum(share, 1.0)[a] * r
                kw[mine] += -step if excess is over_in else step
        return kw


def curtailer(feeder: Feeder, limits: Limits, margin: float) -> Curtailer:
    """The :class:`Curtailer` of ``feeder``: branch limits are the thermal ratings (kVA, taken
    as kW) × the scenario's loading limit × (1 − ``margin``)."""
    net = radial(feeder)
    E = net.n
    depth = np.zeros(E, dtype=np.int64)
    for d, level in enumerate(net.levels):
        depth[level] = d
    below = np.zeros((E, E))
    ancestor = np.full((len(net.levels), E), -1, dtype=np.int64)
    for j in range(E):  # once per feeder: walk every bus up to its source
        a = j
        while a >= 0:
            below[a, j] = 1.0
            ancestor[depth[a], j] = a
            a = int(net.parent[a])
    pct = np.where(net.is_trafo, limits.max_trafo_loading_percent, limits.max_line_loading_percent)
    limit = net.rating_kva * pct / 100.0 * (1.0 - margin)
    return Curtailer(
        index=net.index,
        below=below,
        ancestor=ancestor,
        limit_kw=np.where(net.parent >= 0, limit, np.inf),
    )
