"""Peer-to-peer trading inside an area: a periodic call market per interval (docs/p2p.md).

Orders (:class:`Orders`, arrays, one entry per order) are energy per interval (kWh) with a
price limit (currency/kWh) and preferences: ``local_only`` (the counterparty must sit in the
same feeder section; where no section is known, at the same bus), ``green_only`` (a buyer
takes only sellers whose ``green`` flag is set), ``counterparty`` (only that participant).
Every compatible (buyer i, seller j) pair of one interval — both sides' preferences met,
different participants — is one column ``x_k`` (kWh) of the assignment LP
(:mod:`transactive.market._p2p_lp`) maximising welfare ``Σ (b_i − s_j − c_k) x_k`` under the
orders' quantities, with ``c_k`` the pair's network charge (:class:`NetworkCharge`).

Prices come from the LP duals: the buyer keeps ``u_i`` per kWh and the seller ``v_j``
(both ≥ 0), so the seller is paid ``s_j + v_j`` and the buyer pays ``b_i − u_i`` all-in; on
every traded pair ``u_i + v_j = b_i − s_j − c_k`` (complementary slackness), so the buyer's
all-in price is the seller's price plus the network charge. ``(x, u, v)`` is a competitive
equilibrium of the assignment: no participant wants to trade more at these prices, and no
trade is priced outside either side's limit (``u, v ≥ 0``).

The DSO check (:func:`dso_check`) adds the trades' injections (seller bus −, buyer bus +,
kW = kWh / duration) to the base net load, runs the AC power flow and, where the trades
make a voltage or thermal limit worse than the base alone, caps the pairs that load the
violated element pro rata to their lossless LinDistFlow sensitivity, then re-solves the
LP with those caps (so other compatible pairs may step in) until the AC check is clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.errors import InvalidInputError
from transactive.grid.limits import Limits, check_limits, excess
from transactive.grid.model import Feeder, Injections, feeder_sections
from transactive.grid.powerflow import PowerFlow
from transactive.market._p2p_lp import solve_assignment
from transactive.market.bidfile import read_table

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
StrArray = NDArray[np.str_]

__all__ = [
    "TRADE_COLUMNS",
    "DSOCheck",
    "Matching",
    "NetworkCharge",
    "Orders",
    "clear_p2p",
    "compatible_pairs",
    "dso_check",
    "make_orders",
    "match",
    "parse_network_charge",
    "read_orders",
]

#: Columns of the trades table (kWh, currency/kWh; interval_start UTC or NaT).
TRADE_COLUMNS = [
    "interval",
    "interval_start",
    "buyer_order",
    "seller_order",
    "buyer",
    "seller",
    "buyer_bus",
    "seller_bus",
    "kwh",
    "price",
    "network_charge",
    "buyer_price",
    "matched_kwh",
    "status",
    "reason",
]
_TOL = 1e-9  # kWh below which a pair does not trade
_CUT_MARGIN = 1.1  # curtail 10 % beyond the linear estimate of the excess
_MAX_ROUNDS = 30


@dataclass(frozen=True)
class Orders:
    """P2P orders as arrays (one entry per order). kwh ≥ 0 per interval, price currency/kWh
    (buy: the most it pays all-in; sell: the least it takes); bus: bus name ('' unknown);
    section: feeder-section code (−1 unknown); counterparty: participant name ('' any);
    interval: index into ``interval_start`` (UTC starts, or None); duration_h: interval
    length (h); line: the file line of each order (for messages; 0 if not from a file)."""

    order_id: StrArray
    participant: StrArray
    buy: BoolArray
    kwh: FloatArray
    price: FloatArray
    bus: StrArray
    section: IntArray
    local_only: BoolArray
    green_only: BoolArray
    green: BoolArray
    counterparty: StrArray
    interval: IntArray
    interval_start: list[datetime] | None = None
    duration_h: float = 1.0
    line: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n(self) -> int:
        """Number of orders."""
        return int(self.kwh.size)


def make_orders(
    order_id: object,
    participant: object,
    buy: object,
    kwh: object,
    price: object,
    *,
    bus: object = "",
    section: object = -1,
    local_only: object = False,
    green_only: object = False,
    green: object = False,
    counterparty: object = "",
    interval: object = 0,
    interval_start: list[datetime] | None = None,
    duration_h: float = 1.0,
    line: object = 0,
) -> Orders:
    """Orders from arrays (scalars broadcast), validated: InvalidInputError names the first
    bad order (by id and, from a file, its line)."""
    ids = np.asarray(order_id, dtype=str).ravel()
    n = ids.size

    def arr(v: object, dtype: type) -> Any:
        a: Any = np.asarray(v, dtype=dtype).ravel()
        return np.broadcast_to(a, (n,)).copy() if a.size == 1 else a

    o = Orders(
        order_id=ids,
        participant=arr(participant, str),
        buy=arr(buy, bool),
        kwh=arr(kwh, float),
        price=arr(price, float),
        bus=arr(bus, str),
        section=arr(section, np.int64),
        local_only=arr(local_only, bool),
        green_only=arr(green_only, bool),
        green=arr(green, bool),
        counterparty=arr(counterparty, str),
        interval=arr(interval, np.int64),
        interval_start=interval_start,
        duration_h=float(duration_h),
        line=arr(line, np.int64),
    )
    for name in ("participant", "buy", "kwh", "price", "bus", "section", "local_only",
                 "green_only", "green", "counterparty", "interval", "line"):  # fmt: skip
        if getattr(o, name).shape != (n,):
            raise InvalidInputError(f"p2p orders: {name} has {getattr(o, name).size} entries, "
                                    f"expected {n}")  # fmt: skip
    if not (math.isfinite(o.duration_h) and o.duration_h > 0):
        raise InvalidInputError(f"p2p orders: duration_h {duration_h} is not > 0")

    def bad(mask: BoolArray, what: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            where = f" (line {o.line[i]})" if o.line[i] > 0 else ""
            raise InvalidInputError(f"p2p order {o.order_id[i]!r}{where}: {what}")

    bad(o.order_id == "", "empty order id")
    bad(o.participant == "", "empty participant")
    bad(~np.isfinite(o.kwh) | (o.kwh < 0), "kwh must be a finite number ≥ 0")
    bad(~np.isfinite(o.price), "price must be a finite number")
    bad(o.green_only & ~o.buy, "green_only applies to buy orders (a seller sets green)")
    bad(o.green & o.buy, "green applies to sell orders (a buyer sets green_only)")
    bad(o.counterparty == o.participant, "names itself as counterparty")
    bad(o.interval < 0, "negative interval index")
    _, first = np.unique(ids, return_index=True)
    dup = np.ones(n, dtype=bool)
    dup[first] = False
    bad(dup, "duplicate order id")
    return o


# -- network charge -----------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkCharge:
    """Network charge of a trade (currency/kWh): ``flat`` = ``rate`` for every pair;
    ``distance`` = ``rate`` × the number of branches between the two buses on the feeder's
    radial tree (0 for a trade at one bus)."""

    kind: str = "flat"
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "distance"):
            raise InvalidInputError(f"network charge: kind {self.kind!r} is not flat | distance")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise InvalidInputError(f"network charge: rate {self.rate} is not a number ≥ 0")


def parse_network_charge(text: str) -> NetworkCharge:
    """``"flat:0.05"`` or ``"distance:0.01"`` (currency/kWh, per branch for distance)."""
    kind, sep, rate = text.partition(":")
    try:
        value = float(rate) if sep else float("nan")
    except ValueError:
        value = float("nan")
    if kind not in ("flat", "distance") or not math.isfinite(value):
        raise InvalidInputError(
            f"--network-charge {text!r}: expected flat:RATE or distance:RATE (currency/kWh)"
        )
    return NetworkCharge(kind, value)


def branch_hops(feeder: Feeder, a: IntArray, b: IntArray) -> IntArray:
    """Number of branches between buses ``a[k]`` and ``b[k]`` (positions) on the radial
    tree: depth(a) + depth(b) − 2·depth(lowest common ancestor)."""
    topo = feeder.require_radial()
    depth, par = topo.depth, topo.parent
    x, y = np.asarray(a, dtype=np.int64).copy(), np.asarray(b, dtype=np.int64).copy()
    for _ in range(int(depth.max(initial=0)) + 1):  # walk up, vectorised over pairs
        diff = x != y
        if not diff.any():
            break
        dx, dy = depth[x], depth[y]
        up_x = diff & (dx >= dy)
        up_y = diff & (dy >= dx)
        x = np.where(up_x, par[x], x)
        y = np.where(up_y, par[y], y)
    lca = x
    out: IntArray = depth[a] + depth[b] - 2 * depth[lca]
    return out


# -- matching -----------------------------------------------------------------------------
def _cross(ga: IntArray, gb: IntArray) -> tuple[IntArray, IntArray]:
    """All (i, j) with ``ga[i] == gb[j]`` (index arrays, grouped by ``ga``'s order)."""
    ob = np.argsort(gb, kind="stable")
    sb = gb[ob]
    lo = np.searchsorted(sb, ga, side="left")
    cnt = np.searchsorted(sb, ga, side="right") - lo
    i = np.repeat(np.arange(ga.size, dtype=np.int64), cnt)
    start = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
    j = ob[start + np.arange(i.size)]
    return i, j.astype(np.int64)


def compatible_pairs(o: Orders) -> tuple[IntArray, IntArray]:
    """Order positions (buyer, seller) of every compatible pair: same interval, different
    participants, both sides' local_only / counterparty preferences and the buyer's
    green_only met (the price limits are left to the LP)."""
    b_idx = np.flatnonzero(o.buy)
    s_idx = np.flatnonzero(~o.buy)
    i, j = _cross(o.interval[b_idx], o.interval[s_idx])
    bi, sj = b_idx[i], s_idx[j]
    ok = o.participant[bi] != o.participant[sj]
    same_sec = (o.section[bi] == o.section[sj]) & (o.section[bi] >= 0)
    same_bus = (o.section[bi] < 0) & (o.section[sj] < 0) & (o.bus[bi] == o.bus[sj])
    local = same_sec | (same_bus & (o.bus[bi] != ""))
    ok &= ~(o.local_only[bi] | o.local_only[sj]) | local
    ok &= ~o.green_only[bi] | o.green[sj]
    ok &= (o.counterparty[bi] == "") | (o.counterparty[bi] == o.participant[sj])
    ok &= (o.counterparty[sj] == "") | (o.counterparty[sj] == o.participant[bi])
    return bi[ok], sj[ok]


def _pair_charge(
    o: Orders, bi: IntArray, sj: IntArray, charge: NetworkCharge, feeder: Feeder | None
) -> FloatArray:
    if charge.kind == "flat":
        return np.full(bi.size, charge.rate)
    if feeder is None:
        raise InvalidInputError("a distance network charge needs a feeder (--feeder)")
    pos = _bus_positions(o, feeder)
    return charge.rate * branch_hops(feeder, pos[bi], pos[sj]).astype(np.float64)


def _bus_positions(o: Orders, feeder: Feeder) -> IntArray:
    pos = pd.Index(feeder.bus_names).get_indexer(pd.Index(o.bus))
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        where = f" (line {o.line[i]})" if o.line[i] > 0 else ""
        raise InvalidInputError(
            f"p2p order {o.order_id[i]!r}{where}: bus {o.bus[i]!r} is not on feeder {feeder.name!r}"
        )
    return pos.astype(np.int64)


@dataclass(frozen=True)
class Matching:
    """A solved matching: per pair the buyer/seller order positions, network charge c
    (currency/kWh), traded kWh ``x``; per order its dual (surplus per kWh kept); welfare
    (currency) = Σ (b − s − c)·x."""

    buyer: IntArray
    seller: IntArray
    charge: FloatArray
    x: FloatArray
    dual: FloatArray
    welfare: float

    def seller_price(self, o: Orders) -> FloatArray:
        """Energy price per pair paid to the seller, s_j + v_j, kept within the limits."""
        s, b = o.price[self.seller], o.price[self.buyer]
        hi = b - self.charge - self.dual[self.buyer]
        p: FloatArray = np.minimum(s + self.dual[self.seller], hi)
        out: FloatArray = np.maximum(p, s)
        return out


def match(
    o: Orders,
    charge: NetworkCharge | None = None,
    feeder: Feeder | None = None,
    cap: FloatArray | None = None,
    pairs: tuple[IntArray, IntArray, FloatArray] | None = None,
) -> Matching:
    """Welfare-maximising matching of ``o`` (module docstring). ``pairs`` (buyer, seller,
    charge) reuses pairs from an earlier call; ``cap`` bounds each pair's kWh."""
    if pairs is None:
        bi, sj = compatible_pairs(o)
        c = _pair_charge(o, bi, sj, charge or NetworkCharge(), feeder)
        keep = o.price[bi] - o.price[sj] - c > 0  # a pair with no gain never trades
        bi, sj, c = bi[keep], sj[keep], c[keep]
    else:
        bi, sj, c = pairs
    w = o.price[bi] - o.price[sj] - c
    lp = solve_assignment(w, bi, sj, o.kwh, cap)
    x = np.where(lp.x > _TOL, lp.x, 0.0)
    return Matching(bi, sj, c, x, lp.dual, float(np.dot(w, x)))


# -- the DSO's check ----------------------------------------------------------------------
@dataclass(frozen=True)
class DSOCheck:
    """The DSO's feasibility check: ``feasible`` (no voltage/thermal limit worse than the
    base alone, AC power flow), ``rounds`` of curtailment, the violations of the final AC
    check (:func:`~transactive.grid.limits.check_limits` columns), the count of violation
    rows of the base alone, and per pair the cap reason ('' where not curtailed)."""

    feasible: bool
    rounds: int
    violations: pd.DataFrame
    base_violations: int
    reason: list[str]


@dataclass(frozen=True)
class _Tree:
    """Per feeder bus: Euler-tour entry/exit (subtree test) and cumulative lossless
    resistance / reactance from its source (pu per kW, LinDistFlow r = r_pu / base_kva)."""

    tin: IntArray
    tout: IntArray
    R: FloatArray
    child_of_branch: IntArray  # per branch: its downstream bus (−1 off the tree)
    parent: IntArray
    depth: IntArray


def _tree(feeder: Feeder) -> _Tree:
    from transactive.grid.lindistflow import radial

    topo = feeder.require_radial()
    n = feeder.n_bus
    net = radial(feeder)
    R = np.zeros(n)
    for lvl in net.levels[1:]:  # parents first
        R[net.bus[lvl]] = R[net.bus[net.parent[lvl]]] + net.r[lvl]
    kids: list[list[int]] = [[] for _ in range(n)]
    for b in topo.order:  # once per feeder: a depth-first numbering for subtree tests
        if topo.parent[b] >= 0:
            kids[int(topo.parent[b])].append(int(b))
    tin = np.full(n, -1, dtype=np.int64)
    tout = np.full(n, -1, dtype=np.int64)
    clock = 0
    for s in feeder.source_buses:
        stack: list[tuple[int, bool]] = [(int(s), False)]
        while stack:
            b, done = stack.pop()
            if done:
                tout[b] = clock
                continue
            tin[b] = clock
            clock += 1
            stack.append((b, True))
            stack.extend((c, False) for c in kids[b])
    child = np.full(feeder.n_branch, -1, dtype=np.int64)
    has = topo.parent_branch >= 0
    child[topo.parent_branch[has]] = np.flatnonzero(has)
    return _Tree(tin, tout, R, child, topo.parent, topo.depth)


def _inside(tr: _Tree, bus: IntArray, top: IntArray) -> BoolArray:
    """``bus[k]`` lies in the subtree of ``top[k]``."""
    out: BoolArray = (tr.tin[top] <= tr.tin[bus]) & (tr.tin[bus] < tr.tout[top])
    return out


def _common_R(tr: _Tree, a: IntArray, b: IntArray) -> FloatArray:
    """Resistance of the shared part of the paths of ``a`` and ``b`` to the source: R of
    their lowest common ancestor (``b`` walked up until its subtree holds ``a``; one
    vectorised step per level)."""
    y = np.asarray(b, dtype=np.int64).copy()
    for _ in range(int(tr.depth.max(initial=0)) + 1):
        miss = ~_inside(tr, a, y)
        if not miss.any():
            break
        y = np.where(miss, tr.parent[y], y)
    out: FloatArray = tr.R[y]
    return out


def _injections(
    o: Orders, m: Matching, x: FloatArray, pos: IntArray, n_t: int, n_bus: int
) -> FloatArray:
    """Net load of the trades (kW, T × bus): + at the buyer's bus, − at the seller's."""
    kw = x / o.duration_h
    t = o.interval[m.buyer]
    key_b = t * n_bus + pos[m.buyer]
    key_s = t * n_bus + pos[m.seller]
    size = n_t * n_bus
    net = np.bincount(key_b, kw, size) - np.bincount(key_s, kw, size)
    out: FloatArray = net.reshape(n_t, n_bus).astype(np.float64)
    return out


def dso_check(
    o: Orders,
    first: Matching,
    feeder: Feeder,
    limits: Limits,
    base_p_kw: FloatArray,
    base_q_kvar: FloatArray,
) -> tuple[Matching, DSOCheck]:
    """Check ``first`` on the AC power flow with the base net load (T × bus, kW / kvar;
    T = number of intervals) and curtail until the trades make no voltage or thermal
    limit worse than the base alone (module docstring). Returns the final matching."""
    n_t, n_bus = int(o.interval.max(initial=0)) + 1, feeder.n_bus
    base_p = np.atleast_2d(np.asarray(base_p_kw, dtype=float))
    base_q = np.atleast_2d(np.asarray(base_q_kvar, dtype=float))
    if base_p.shape != (n_t, n_bus) or base_q.shape != (n_t, n_bus):
        raise InvalidInputError(
            f"p2p DSO check: base load {base_p.shape} / {base_q.shape}, expected ({n_t}, {n_bus})"
        )
    pos = _bus_positions(o, feeder)
    pf = PowerFlow(feeder)
    tr = _tree(feeder)
    ac0 = pf.run(Injections(base_p, base_q))
    ex0 = excess(feeder, ac0.vm_pu, ac0.loading_percent, ac0.source_p_kw, limits)
    base_rows = len(check_limits(feeder, ac0, limits))
    pairs = (first.buyer, first.seller, first.charge)
    cap = np.full(first.x.size, np.inf)
    reason = [""] * first.x.size
    m = first
    rounds = 0
    while True:
        p = base_p + _injections(o, m, m.x, pos, n_t, n_bus)
        ac = pf.run(Injections(p, base_q))
        ex = excess(feeder, ac.vm_pu, ac.loading_percent, ac.source_p_kw, limits)
        cut = _cuts(o, m, pos, tr, feeder, limits, ac, ex, ex0)
        if cut is None or rounds >= _MAX_ROUNDS:
            viol = check_limits(feeder, ac, limits)
            return m, DSOCheck(cut is None, rounds, viol, base_rows, reason)
        frac, why = cut
        hit = frac > 0
        cap[hit] = np.where(frac[hit] >= 0.9, 0.0, m.x[hit] * (1.0 - frac[hit]))
        for k in np.flatnonzero(hit):
            reason[k] = why[k]
        rounds += 1
        m = match(o, cap=cap, pairs=pairs)


def _cuts(
    o: Orders,
    m: Matching,
    pos: IntArray,
    tr: _Tree,
    feeder: Feeder,
    limits: Limits,
    ac: object,
    ex: object,
    ex0: object,
) -> tuple[FloatArray, list[str]] | None:
    """Per pair the fraction to curtail (0 … 1) and why, or None when the trades make no
    voltage or thermal limit worse than the base."""
    tol_v, tol_pct = 1e-5, 1e-3
    vm = np.asarray(ac.vm_pu)  # type: ignore[attr-defined]
    load = np.asarray(ac.loading_percent)  # type: ignore[attr-defined]
    worse_under = ex.undervoltage - ex0.undervoltage > tol_v  # type: ignore[attr-defined]
    worse_over = ex.overvoltage - ex0.overvoltage > tol_v  # type: ignore[attr-defined]
    br_ex = np.maximum(ex.line, ex.trafo)  # type: ignore[attr-defined]
    br_ex0 = np.maximum(ex0.line, ex0.trafo)  # type: ignore[attr-defined]
    worse_br = br_ex - br_ex0 > tol_pct
    if not (worse_under.any() or worse_over.any() or worse_br.any()):
        return None
    live = np.flatnonzero(m.x > 0)
    kw = m.x[live] / o.duration_h
    t_tr = o.interval[m.buyer[live]]
    a, b = pos[m.buyer[live]], pos[m.seller[live]]
    frac = np.zeros(m.x.size)
    why = [""] * m.x.size
    times = _labels_of_time(o)
    names_bus, names_br = feeder.bus_names, feeder.branch_names
    # Voltage: Δ(v²) at bus e from a trade = −2·kW·(R(lca(e, buyer)) − R(lca(e, seller))).
    checks = ((worse_over, 1.0, "overvoltage", limits.v_max_pu),
              (worse_under, -1.0, "undervoltage", limits.v_min_pu))  # fmt: skip
    for mask, sign, kind, vlim in checks:
        vt, ve = np.nonzero(mask)
        if vt.size == 0:
            continue
        iv, jk = _cross(vt.astype(np.int64), t_tr)
        e = ve[iv]
        dv = -2.0 * kw[jk] * (_common_R(tr, e, a[jk]) - _common_R(tr, e, b[jk]))
        contrib = np.maximum(sign * dv, 0.0)
        vmv = vm[vt, ve]
        need = sign * (vmv**2 - vlim**2)  # pu², how much v² must move back
        total = np.bincount(iv, contrib, vt.size)
        f = np.where(total > 0, np.minimum(1.0, _CUT_MARGIN * need / np.maximum(total, 1e-30)), 0)
        _apply(frac, why, live[jk], np.where(contrib > 0, f[iv], 0.0), iv,
               [f"{kind} at bus {names_bus[x]} ({times[t]}, {v:.4f} pu)"
                for t, x, v in zip(vt, ve, vmv, strict=True)])  # fmt: skip
    # Thermal: the branch into bus c carries the trade's kW if exactly one end is below c.
    bt, bb = np.nonzero(worse_br)
    if bt.size:
        p_from = np.asarray(ac.p_from_kw)[bt, bb]  # type: ignore[attr-defined]
        q_from = np.asarray(ac.q_from_kvar)[bt, bb]  # type: ignore[attr-defined]
        child = tr.child_of_branch[bb]
        fb = feeder.branches["from_bus"].to_numpy(dtype=np.int64)[bb]
        down = np.where(child == fb, -1.0, 1.0)  # +: p_from flows towards the child
        flow = down * p_from  # kW into the child's subtree
        lim_pct = np.maximum(br_ex0[bt, bb], 0.0) + np.where(
            feeder.branches["kind"].to_numpy()[bb] == "trafo",
            limits.max_trafo_loading_percent,
            limits.max_line_loading_percent,
        )
        s = np.hypot(p_from, q_from)
        ld = load[bt, bb]
        need = s * (ld - lim_pct) / np.maximum(ld, 1e-9)  # kW to take off the branch
        iv, jk = _cross(bt.astype(np.int64), t_tr)
        c = np.maximum(child[iv], 0)
        dP = kw[jk] * (_inside(tr, a[jk], c).astype(float) - _inside(tr, b[jk], c))
        contrib = np.maximum(np.sign(flow[iv]) * dP, 0.0)
        total = np.bincount(iv, contrib, bt.size)
        f = np.where(total > 0, np.minimum(1.0, _CUT_MARGIN * need / np.maximum(total, 1e-30)), 0)
        _apply(frac, why, live[jk], np.where(contrib > 0, f[iv], 0.0), iv,
               [f"overload of {names_br[x]} ({times[t]}, {v:.1f} %)"
                for t, x, v in zip(bt, bb, ld, strict=True)])  # fmt: skip
    if not (frac > 0).any():  # violations the trades do not feed: nothing to curtail
        return None
    return frac, why


def _apply(
    frac: FloatArray, why: list[str], pair: IntArray, f: FloatArray, viol: IntArray, text: list[str]
) -> None:
    """Keep per pair the largest cut fraction and the violation it comes from."""
    order = np.argsort(f, kind="stable")  # the last write per pair is its largest cut
    best = np.zeros(frac.size)
    src = np.full(frac.size, -1, dtype=np.int64)
    best[pair[order]] = f[order]
    src[pair[order]] = viol[order]
    better = np.flatnonzero(best > frac)
    frac[better] = best[better]
    for k in better:  # the curtailed pairs only
        why[k] = text[src[k]]


def _labels_of_time(o: Orders) -> list[str]:
    n_t = int(o.interval.max(initial=0)) + 1
    if o.interval_start is None:
        return [f"interval {t}" for t in range(n_t)]
    return [pd.Timestamp(s).strftime("%Y-%m-%d %H:%MZ") for s in o.interval_start]


# -- all together -------------------------------------------------------------------------
@dataclass(frozen=True)
class P2PResult:
    """The trades table (:data:`TRADE_COLUMNS`), welfare of the final matching and of the
    unconstrained one (currency), and the DSO check (None without a feeder)."""

    trades: pd.DataFrame
    welfare: float
    welfare_unconstrained: float
    dso: DSOCheck | None


def clear_p2p(
    o: Orders,
    charge: NetworkCharge | None = None,
    feeder: Feeder | None = None,
    limits: Limits | None = None,
    base_p_kw: FloatArray | None = None,
    base_q_kvar: FloatArray | None = None,
) -> P2PResult:
    """Match ``o`` and, with a feeder, run the DSO check against the base net load (T ×
    bus kW / kvar; zero if not given)."""
    first = match(o, charge, feeder)
    final, dso = first, None
    if feeder is not None:
        n_t = int(o.interval.max(initial=0)) + 1
        zero = np.zeros((n_t, feeder.n_bus))
        final, dso = dso_check(
            o,
            first,
            feeder,
            limits or Limits(),
            zero if base_p_kw is None else base_p_kw,
            zero if base_q_kvar is None else base_q_kvar,
        )
    return P2PResult(_trades(o, first, final, dso), final.welfare, first.welfare, dso)


def _trades(o: Orders, first: Matching, final: Matching, dso: DSOCheck | None) -> pd.DataFrame:
    """One row per pair that traded in the first or the final matching."""
    k = np.flatnonzero((first.x > 0) | (final.x > 0))
    bi, sj = final.buyer[k], final.seller[k]
    x0, x = first.x[k], final.x[k]
    price = final.seller_price(o)[k]
    rejected = x <= _TOL
    status = np.where(rejected, "rejected", np.where(x < x0 - 1e-6, "curtailed", "matched"))
    reason = [dso.reason[i] if dso is not None and s != "matched" else ""
              for i, s in zip(k, status, strict=True)]  # fmt: skip
    starts = (
        pd.DatetimeIndex(o.interval_start, tz="UTC")[o.interval[bi]]
        if o.interval_start is not None
        else pd.DatetimeIndex([pd.NaT] * k.size, tz="UTC")
    )
    c = final.charge[k]
    df = pd.DataFrame(
        {
            "interval": o.interval[bi],
            "interval_start": starts,
            "buyer_order": o.order_id[bi],
            "seller_order": o.order_id[sj],
            "buyer": o.participant[bi],
            "seller": o.participant[sj],
            "buyer_bus": o.bus[bi],
            "seller_bus": o.bus[sj],
            "kwh": x,
            "price": np.where(rejected, np.nan, price),
            "network_charge": c,
            "buyer_price": np.where(rejected, np.nan, price + c),
            "matched_kwh": x0,
            "status": status,
            "reason": reason,
        }
    )
    return df.sort_values(["interval", "buyer_order", "seller_order"], ignore_index=True)


# -- order files --------------------------------------------------------------------------
REQUIRED = ("order_id", "participant", "side", "kwh", "price")
OPTIONAL = (
    "bus",
    "section",
    "interval",
    "local_only",
    "green_only",
    "green",
    "counterparty",
)
_TRUE = ("1", "true", "yes", "y")
_FALSE = ("", "0", "false", "no", "n")


def read_orders(path: str | Path, feeder: Feeder | None = None, duration_h: float = 1.0) -> Orders:
    """Read an order file (docs/p2p.md): CSV with a header ``order_id, participant, side,
    kwh, price`` and optional ``bus, section, interval, local_only, green_only, green,
    counterparty``. With ``feeder`` every bus must be on it and the section (unless given)
    is the bus's feeder section. Errors name the file, line and column."""
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: no such order file")
    t, _ = read_table(p, name, REQUIRED, OPTIONAL)
    text, n = t.text, len(t.line)

    def col(c: str) -> StrArray:
        return np.array(text.get(c, [""] * n), dtype=str).reshape(n)

    ids = col("order_id")
    t.fail(ids == "", "order_id", "empty order id")
    _, first = np.unique(ids, return_index=True)
    dup = np.ones(n, dtype=bool)
    dup[first] = False
    t.fail(dup, "order_id", "duplicate order id '{value}'")
    who = col("participant")
    t.fail(who == "", "participant", "empty participant")
    side = np.char.lower(col("side"))
    t.fail(~np.isin(side, ["buy", "sell"]), "side", "'{value}' is not 'buy' or 'sell'")
    buy = side == "buy"
    kwh = t.numbers("kwh")
    t.fail(np.isnan(kwh), "kwh", "'{value}' is not a number")
    t.fail(~np.isfinite(kwh) | (kwh < 0), "kwh", "{value} is not a finite kWh ≥ 0")
    price = t.numbers("price")
    t.fail(~np.isfinite(price), "price", "'{value}' is not a finite price (currency/kWh)")
    flags = {}
    for c in ("local_only", "green_only", "green"):
        v = np.char.lower(col(c))
        t.fail(~np.isin(v, _TRUE + _FALSE), c, "'{value}' is not true | false")
        flags[c] = np.isin(v, _TRUE)
    t.fail(flags["green_only"] & ~buy, "green_only", "green_only applies to buy orders")
    t.fail(flags["green"] & buy, "green", "green applies to sell orders (buyers: green_only)")
    cp = col("counterparty")
    t.fail((cp != "") & (cp == who), "counterparty", "'{value}' is the order's own participant")
    bus = col("bus")
    starts: list[datetime] | None = None
    interval = np.zeros(n, dtype=np.int64)
    if "interval" in t.text:
        interval, starts = t.intervals("interval")
    section = np.full(n, -1, dtype=np.int64)
    if "section" in t.text:
        sec = col("section")
        codes, _ = pd.factorize(pd.Index(sec))
        section = np.where(sec == "", -1, codes).astype(np.int64)
    if feeder is not None:
        t.fail(bus == "", "bus", "empty bus (every order needs its bus with --feeder)")
        pos = pd.Index(feeder.bus_names).get_indexer(pd.Index(bus))
        t.fail(pos < 0, "bus", f"unknown bus '{{value}}' on feeder {feeder.name!r}")
        if "section" not in t.text:
            section = feeder_sections(feeder).section_of_bus[pos].astype(np.int64)
    no_place = flags["local_only"] & (section < 0) & (bus == "")
    t.fail(no_place, "local_only", "local_only needs a bus or a section to be local to")
    return make_orders(
        ids,
        who,
        buy,
        kwh,
        price,
        bus=bus,
        section=section,
        local_only=flags["local_only"],
        green_only=flags["green_only"],
        green=flags["green"],
        counterparty=cp,
        interval=interval,
        interval_start=starts,
        duration_h=duration_h,
        line=t.line,
    )
