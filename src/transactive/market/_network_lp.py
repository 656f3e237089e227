"""The clearing LP of :mod:`transactive.market.network` on HiGHS: its columns and static rows,
the LinDistFlow rows of the monitored skeleton, the thermal facets, and the rounds of
monitoring that add violated buses and facets and re-solve from the previous basis (the
formulation is in the docstring of :mod:`transactive.market.network`).

Internal to :mod:`transactive.market.network`: :func:`columns` builds the network-independent
part once per problem, :func:`solve` makes one loss pass and returns a :class:`Solution`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp
from highspy._core import _Highs
from numpy.typing import ArrayLike, NDArray

from transactive.errors import NetworkClearingError
from transactive.grid.lindistflow import Linearisation, RadialNetwork, forward
from transactive.market._network_problem import Problem

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Penalty of the virtual voltage regulators of the fallback LP, in VOLL per pu² ($/h): high
#: enough that shedding is always cheaper where it can restore the band (one kW moves the
#: squared voltage by ≥ 2e-6 pu² even on a stiff MV feeder, which would cost 200·VOLL).
_VOLTAGE_PENALTY = 1e8
#: Violation of a voltage (pu²) or thermal (relative) row below which it is not added.
_ROW_TOL = 1e-7
#: Dual simplex pricing after a warm start (HiGHS option simplex_dual_edge_weight_strategy):
#: 1 = Devex, which skips computing exact steepest-edge weights for the whole basis.
_WARM_EDGE_WEIGHTS = 1
#: Most voltage or thermal rows added per interval and source tree in one round.
_ROWS_PER_ROUND = 8


@dataclass
class Cols:
    """LP columns that do not depend on the network model, and the static rows.

    Every column has bounds, a cost ($/h), an interval and, if it changes the net load of a
    bus, that bus ``e`` and the change of active / reactive net load per unit (``aP``,
    ``aQ``). ``inj`` lists the injecting columns. Static rows: the link rows (one per
    interval, first; the imports are added with the network), storage rows."""

    lo: FloatArray
    hi: FloatArray
    cost: FloatArray
    iv: IntArray
    e: IntArray
    aP: FloatArray
    aQ: FloatArray
    seg: int
    shed: int
    shed_te: tuple[IntArray, IntArray]
    curt: int
    curt_te: tuple[IntArray, IntArray]
    ch: int
    dis: int
    soc: int
    unmet: int
    unmet_tn: tuple[IntArray, IntArray]
    inj: IntArray
    p_fixed: FloatArray  # T × E net load that does not depend on the columns
    q_fixed: FloatArray
    r_row: IntArray
    r_col: IntArray
    r_val: FloatArray
    r_lo: FloatArray
    r_hi: FloatArray

    @property
    def n(self) -> int:
        return int(self.lo.size)

    @property
    def n_static(self) -> int:
        return int(self.r_lo.size)


class _Blocks:
    """Accumulates blocks of columns or rows (named arrays, one entry per item)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Any]] = {}
        self.n = 0

    def add(self, n: int, **arrays: ArrayLike) -> int:
        start = self.n
        for key, val in arrays.items():
            arr = np.asarray(val).ravel()
            part = np.broadcast_to(arr, (n,)) if arr.size == 1 else arr
            self.parts.setdefault(key, []).append(part)
        self.n += n
        return start

    def cat(self, key: str, dtype: Any = np.float64) -> Any:
        if key not in self.parts:
            return np.zeros(0, dtype)
        return np.concatenate(self.parts[key]).astype(dtype)


def columns(prob: Problem) -> Cols:
    """All columns that do not depend on the network, the fixed net load, static rows."""
    T, E = prob.T, prob.net.n
    inf = np.inf
    iv = np.arange(T)
    c = _Blocks()

    def cols(
        lo: ArrayLike,
        hi: ArrayLike,
        cost: ArrayLike,
        interval: ArrayLike,
        e: ArrayLike = -1,
        aP: ArrayLike = 0.0,
        aQ: ArrayLike = 0.0,
    ) -> int:
        n = int(np.asarray(interval).size)
        return c.add(n, lo=lo, hi=hi, cost=cost, iv=interval, e=e, aP=aP, aQ=aQ)

    # Wholesale purchase at a fixed price, or the segments of the wholesale curve.
    cw = cws = -1
    if prob.price is not None:
        cw = cols(-inf, inf, prob.price, iv)
    else:
        cws = cols(0.0, prob.ws_ub, -prob.ws_price, prob.ws_iv)
    # Bid segments consume at the bid's bus.
    sb = prob.seg_bid
    cseg = cols(
        0.0, prob.seg_ub, -prob.seg_price, prob.bid_iv[sb], prob.bid_e[sb], 1.0, prob.bid_tan[sb]
    )
    # Shedding of fixed load / curtailment of fixed generation at VOLL (pro rata reactive).
    fp, fq = prob.fixed_p, prob.fixed_q
    ratio = np.divide(fq, fp, out=np.zeros_like(fq), where=fp != 0)
    sh = np.nonzero(fp > 0)
    cshed = cols(0.0, fp[sh], prob.voll, sh[0], sh[1], -1.0, -ratio[sh])
    cu = np.nonzero(fp < 0)
    ccurt = cols(0.0, -fp[cu], prob.voll, cu[0], cu[1], 1.0, ratio[cu])

    # Static rows: link rows (Σ imports − w = 0, or + the curve's award = −its base), storage.
    r = _Blocks()
    ent: list[tuple[ArrayLike, ArrayLike, ArrayLike]] = []
    link_rhs = np.zeros(T) if prob.price is not None else -prob.ws_base
    rlink = r.add(T, lo=link_rhs, hi=link_rhs)
    if prob.price is not None:
        ent.append((rlink + iv, cw + iv, -1.0))
    else:
        ent.append((rlink + prob.ws_iv, cws + np.arange(prob.ws_iv.size), 1.0))
    cch = cdis = csoc = cun = -1
    unmet: tuple[IntArray, IntArray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if prob.storage is not None:
        st = prob.storage
        n = st.n
        tn = np.arange(T * n).reshape(T, n)
        tdev = np.repeat(iv, n)
        edev = np.tile(st.e, T)
        dt = prob.dt
        cch = cols(0.0, st.ch_max, np.tile(st.cost * st.eta_c, T), tdev, edev, 1.0)
        cdis = cols(0.0, st.dis_max, np.tile(st.cost / st.eta_d, T), tdev, edev, -1.0)
        csoc = cols(np.tile(st.soc_min, T), np.tile(st.cap, T), 0.0, tdev)
        soc_rhs = np.zeros((T, n))
        soc_rhs[0] = st.soc0
        rsoc = r.add(T * n, lo=soc_rhs, hi=soc_rhs)
        ent.append((rsoc + tn, csoc + tn, 1.0))
        ent.append((rsoc + tn[1:], csoc + tn[:-1], -1.0))
        ent.append((rsoc + tn, cch + tn, np.broadcast_to(-dt * st.eta_c, (T, n))))
        ent.append((rsoc + tn, cdis + tn, np.broadcast_to(dt / st.eta_d, (T, n))))
        ut, un = np.nonzero(np.isfinite(st.target) & (st.target > st.soc_min))
        unmet = (ut.astype(np.int64), un.astype(np.int64))
        cun = cols(0.0, inf, prob.voll / dt, ut)
        k = np.arange(ut.size)
        rtg = r.add(ut.size, lo=st.target[unmet], hi=inf)
        ent.append((rtg + k, csoc + tn[unmet], 1.0))
        ent.append((rtg + k, cun + k, 1.0))

    rows_, cols_, vals_ = [], [], []
    for a, b, v in ent:
        ra = np.asarray(a, dtype=np.int64).ravel()
        rows_.append(ra)
        cols_.append(np.broadcast_to(np.asarray(b, dtype=np.int64).ravel(), ra.shape))
        vals_.append(np.broadcast_to(np.asarray(v, dtype=np.float64).ravel(), ra.shape))
    col_e = c.cat("e", np.int64)
    # Net load that does not depend on the columns: fixed load and the bids' base quantity.
    p_fixed = fp.copy()
    q_fixed = fq.copy()
    if prob.n_bids:
        key = prob.bid_iv * E + prob.bid_e
        p_fixed += np.bincount(key, weights=prob.bid_base, minlength=T * E).reshape(T, E)
        q_fixed += np.bincount(key, weights=prob.bid_base * prob.bid_tan, minlength=T * E).reshape(
            T, E
        )
    return Cols(
        lo=c.cat("lo"),
        hi=c.cat("hi"),
        cost=c.cat("cost"),
        iv=c.cat("iv", np.int64),
        e=col_e,
        aP=c.cat("aP"),
        aQ=c.cat("aQ"),
        seg=cseg,
        shed=cshed,
        shed_te=(sh[0].astype(np.int64), sh[1].astype(np.int64)),
        curt=ccurt,
        curt_te=(cu[0].astype(np.int64), cu[1].astype(np.int64)),
        ch=cch,
        dis=cdis,
        soc=csoc,
        unmet=cun,
        unmet_tn=unmet,
        inj=np.flatnonzero(col_e >= 0),
        p_fixed=p_fixed,
        q_fixed=q_fixed,
        r_row=np.concatenate(rows_),
        r_col=np.concatenate(cols_),
        r_val=np.concatenate(vals_),
        r_lo=r.cat("lo"),
        r_hi=r.cat("hi"),
    )


def _net_load(cols: Cols, x: FloatArray, T: int, E: int) -> tuple[FloatArray, FloatArray]:
    """Net load per (interval, energised bus) for column values ``x`` (kW, kvar)."""
    j = cols.inj
    key = cols.iv[j] * E + cols.e[j]
    p = cols.p_fixed + np.bincount(key, weights=cols.aP[j] * x[j], minlength=T * E).reshape(T, E)
    q = cols.q_fixed + np.bincount(key, weights=cols.aQ[j] * x[j], minlength=T * E).reshape(T, E)
    return p, q


def _thermal_limit(prob: Problem, lin: Linearisation) -> FloatArray:
    """Facet distance ``S·cos(π/K)`` of every branch (T × E, kVA; inf where unlimited)."""
    net, lim = prob.net, prob.limits
    pct = np.where(net.is_trafo, lim.max_trafo_loading_percent, lim.max_line_loading_percent)
    s = net.rating_kva * pct / 100.0 * np.cos(np.pi / prob.thermal_sides)
    out: FloatArray = np.where(net.nonroot, s, np.inf)[None, :] * lin.v_ref
    return out


@dataclass
class _Skeleton:
    """The monitored part of the network: buses (interval t, bus e) that keep their
    LinDistFlow variables (closed towards the source; sources always) and thermal facets
    (t, e, k). ``log`` records the order in which blocks of nodes / facets were added, so a
    rebuilt LP has the same rows and columns in the same order (and a basis still fits)."""

    in_k: BoolArray  # T × E
    node_t: IntArray
    node_e: IntArray
    th_t: IntArray
    th_e: IntArray
    th_k: IntArray
    in_th: BoolArray  # T × E × K/2
    log: list[tuple[str, int, int]]

    @classmethod
    def initial(cls, net: RadialNetwork, T: int, half: int) -> _Skeleton:
        in_k = np.zeros((T, net.n), dtype=bool)
        in_k[:, net.roots] = True
        t, e = (a.astype(np.int64) for a in np.nonzero(in_k))
        z = np.zeros(0, dtype=np.int64)
        return cls(in_k, t, e, z, z, z, np.zeros((T, net.n, half), dtype=bool), [("n", 0, t.size)])

    def copy(self) -> _Skeleton:
        return _Skeleton(
            self.in_k.copy(),
            self.node_t,
            self.node_e,
            self.th_t,
            self.th_e,
            self.th_k,
            self.in_th.copy(),
            list(self.log),
        )

    def add_paths(self, net: RadialNetwork, t: IntArray, e: IntArray) -> None:
        """Add the buses (t[i], e[i]) and their paths to the source."""
        want = self.in_k.copy()
        want[t, e] = True
        for lvl in reversed(net.levels[1:]):  # close towards the source, level by level
            np.logical_or.at(want.T, net.parent[lvl], want[:, lvl].T)
        new = want & ~self.in_k
        if not new.any():
            return
        depth = np.repeat(np.arange(len(net.levels)), [lv.size for lv in net.levels])
        lvl_of = np.empty(net.n, dtype=np.int64)
        lvl_of[np.concatenate(net.levels)] = depth
        nt, ne = (a.astype(np.int64) for a in np.nonzero(new))
        order = np.lexsort((ne, nt, lvl_of[ne]))  # parents before children
        start = self.node_t.size
        self.node_t = np.concatenate([self.node_t, nt[order]])
        self.node_e = np.concatenate([self.node_e, ne[order]])
        self.in_k = want
        self.log.append(("n", start, self.node_t.size))

    def add_facets(self, net: RadialNetwork, t: IntArray, e: IntArray, k: IntArray) -> None:
        """Add thermal facets k[i] of the branches to (t[i], e[i]) (and their paths)."""
        if t.size == 0:
            return
        self.add_paths(net, t, e)
        start = self.th_t.size
        self.th_t = np.concatenate([self.th_t, t])
        self.th_e = np.concatenate([self.th_e, e])
        self.th_k = np.concatenate([self.th_k, k])
        self.in_th[t, e, k] = True
        self.log.append(("t", start, self.th_t.size))


def _inv2(
    a11: FloatArray, a12: FloatArray, a21: FloatArray, a22: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    det = a11 * a22 - a12 * a21
    return a22 / det, -a12 / det, -a21 / det, a11 / det


def _attach(
    net: RadialNetwork, lin: Linearisation, in_k: BoolArray
) -> tuple[IntArray, tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
    """For every (t, bus): the skeleton bus its injection enters (itself or its nearest
    skeleton ancestor) and the 2×2 sensitivity ``W = ∂(P_u, Q_u)/∂(p, q)`` of the flow into
    the non-skeleton branch ``u`` below that ancestor (identity at a skeleton bus)."""
    T, E = in_k.shape
    att = np.zeros((T, E), dtype=np.int64)
    ones, zeros = np.ones((T, E)), np.zeros((T, E))
    W = [ones.copy(), zeros.copy(), zeros.copy(), ones.copy()]
    roots = net.roots
    att[:, roots] = roots
    for lvl in net.levels[1:]:  # root down
        p = net.parent[lvl]
        ink = in_k[:, lvl]
        att[:, lvl] = np.where(ink, lvl[None, :], att[:, p])
        # own sensitivity of the branch flow to load at its end: inv([[1−aP, −aQ], [−bP, 1−bQ]])
        m = _inv2(1 - lin.aP[:, lvl], -lin.aQ[:, lvl], -lin.bP[:, lvl], 1 - lin.bQ[:, lvl])
        par_k = in_k[:, p]
        w11, w12, w21, w22 = (W[i][:, p] for i in range(4))
        prod = (
            w11 * m[0] + w12 * m[2],
            w11 * m[1] + w12 * m[3],
            w21 * m[0] + w22 * m[2],
            w21 * m[1] + w22 * m[3],
        )
        ident = (1.0, 0.0, 0.0, 1.0)
        for i in range(4):
            W[i][:, lvl] = np.where(ink, ident[i], np.where(par_k, m[i], prod[i]))
    return att, (W[0], W[1], W[2], W[3])


@dataclass
class _Layout:
    """Positions in the LP built for a skeleton."""

    block: int  # columns per node: P, Q, v (+ two regulator slacks in the fallback)
    node_col: IntArray  # first column of each node
    node_row: IntArray  # first of its three rows (EP, EQ, EV)
    th_row: IntArray
    n_col: int
    n_row: int


def _build(
    prob: Problem,
    cols: Cols,
    lin: Linearisation,
    sk: _Skeleton,
    soft: bool,
    PQ0: tuple[FloatArray, FloatArray],
    band: tuple[FloatArray, FloatArray],
) -> tuple[highspy.HighsLp, _Layout]:
    """The LP for the skeleton ``sk`` (module docstring): columns, static rows, the
    LinDistFlow rows of the skeleton buses (non-skeleton subtrees enter their attachment
    bus through their sensitivities) and the thermal facets."""
    net, T, E = prob.net, prob.T, prob.net.n
    lim = prob.limits
    inf = np.inf
    nt, ne = sk.node_t, sk.node_e
    N = nt.size
    B = 5 if soft else 3
    node_col = cols.n + B * np.arange(N)
    # Rows: static first, then the node blocks and facet blocks in the order of the log.
    node_row = np.zeros(N, dtype=np.int64)
    th_row = np.zeros(sk.th_t.size, dtype=np.int64)
    r = cols.n_static
    for kind, a, b in sk.log:
        if kind == "n":
            node_row[a:b] = r + 3 * np.arange(b - a)
            r += 3 * (b - a)
        else:
            th_row[a:b] = r + np.arange(b - a)
            r += b - a
    n_row = r
    n_col = cols.n + B * N
    nid = np.full((T, E), -1, dtype=np.int64)
    nid[nt, ne] = np.arange(N)
    root = net.parent[ne] < 0
    par_node = np.where(root, -1, nid[nt, np.maximum(net.parent[ne], 0)])

    # Column bounds and costs.
    lo = np.concatenate([cols.lo, np.zeros(B * N)])
    hi = np.concatenate([cols.hi, np.zeros(B * N)])
    cost = np.concatenate([cols.cost, np.zeros(B * N)])
    P, Q, V = node_col, node_col + 1, node_col + 2
    export = lim.max_reverse_flow_kw
    lo[P] = np.where(root, -inf if export is None else -export, -inf)
    hi[P] = inf
    lo[Q], hi[Q] = -inf, inf
    lo[V] = np.where(root, -inf, band[0][nt, ne])
    hi[V] = np.where(root, inf, band[1][nt, ne])
    if soft:
        for off in (3, 4):
            lo[node_col + off] = 0.0
            hi[node_col + off] = np.where(root, 0.0, inf)
            cost[node_col + off] = _VOLTAGE_PENALTY * prob.voll

    # Row bounds: static; EP/EQ: fixed load + loss constant + non-skeleton subtrees; EV.
    P0, Q0 = PQ0
    nr = np.flatnonzero(net.nonroot)
    outside = ~sk.in_k[:, nr]
    nsP = np.zeros((T, E))
    nsQ = np.zeros((T, E))
    np.add.at(nsP.T, net.parent[nr], np.where(outside, P0[:, nr], 0.0).T)
    np.add.at(nsQ.T, net.parent[nr], np.where(outside, Q0[:, nr], 0.0).T)
    rhs = np.zeros(n_row)
    rhs_hi = np.zeros(n_row)
    rhs[: cols.n_static] = cols.r_lo
    rhs_hi[: cols.n_static] = cols.r_hi
    ep = cols.p_fixed[nt, ne] + lin.l0P[nt, ne] + nsP[nt, ne]
    eq = cols.q_fixed[nt, ne] + lin.l0Q[nt, ne] + nsQ[nt, ne]
    ev = np.where(root, net.v_source[ne], lin.cV[nt, ne])
    for off, val in ((0, ep), (1, eq), (2, ev)):
        rhs[node_row + off] = val
        rhs_hi[node_row + off] = val
    S = _thermal_limit(prob, lin)[sk.th_t, sk.th_e]
    rhs[th_row] = -S
    rhs_hi[th_row] = S

    # Entries.
    rows: list[Any] = [cols.r_row]
    cidx: list[Any] = [cols.r_col]
    vals: list[Any] = [cols.r_val]

    def add(r_: ArrayLike, c_: ArrayLike, v_: ArrayLike) -> None:
        ra = np.asarray(r_, dtype=np.int64).ravel()
        rows.append(ra)
        cidx.append(np.broadcast_to(np.asarray(c_, dtype=np.int64).ravel(), ra.shape))
        vals.append(np.broadcast_to(np.asarray(v_, dtype=np.float64).ravel(), ra.shape))

    EP, EQ, EV = node_row, node_row + 1, node_row + 2
    add(EP, P, 1 - lin.aP[nt, ne])
    add(EP, Q, -lin.aQ[nt, ne])
    add(EQ, P, -lin.bP[nt, ne])
    add(EQ, Q, 1 - lin.bQ[nt, ne])
    ch = ~root
    pn = par_node[ch]
    add(EP[pn], P[ch], -1.0)
    add(EQ[pn], Q[ch], -1.0)
    add(EV, V, 1.0)
    add(EV[ch], V[pn], -net.k[ne[ch]])
    add(EV[ch], P[ch], lin.dvP[nt[ch], ne[ch]])
    add(EV[ch], Q[ch], lin.dvQ[nt[ch], ne[ch]])
    if soft:
        add(EV[ch], node_col[ch] + 3, 1.0)
        add(EV[ch], node_col[ch] + 4, -1.0)
    add(nt[root], P[root], 1.0)  # link rows are rows 0..T−1: Σ imports
    # Injections enter their attachment bus, through the sensitivity of the branch below it.
    att, W = _attach(net, lin, sk.in_k)
    j = cols.inj
    tj, ej = cols.iv[j], cols.e[j]
    at = nid[tj, att[tj, ej]]
    aP, aQ = cols.aP[j], cols.aQ[j]
    add(EP[at], j, -(W[0][tj, ej] * aP + W[1][tj, ej] * aQ))
    add(EQ[at], j, -(W[2][tj, ej] * aP + W[3][tj, ej] * aQ))
    theta = 2 * np.pi * sk.th_k / prob.thermal_sides
    tn = nid[sk.th_t, sk.th_e]
    add(th_row, P[tn], np.cos(theta))
    add(th_row, Q[tn], np.sin(theta))

    r_all = np.concatenate(rows)
    c_all = np.concatenate(cidx)
    v_all = np.concatenate(vals)
    keep = np.abs(v_all) > 1e-15
    A = sp.csc_matrix((v_all[keep], (r_all[keep], c_all[keep])), shape=(n_row, n_col))
    A.sum_duplicates()
    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = n_row
    lp.col_cost_ = cost
    lp.col_lower_ = lo
    lp.col_upper_ = hi
    lp.row_lower_ = rhs
    lp.row_upper_ = rhs_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    return lp, _Layout(B, node_col, node_row, th_row, n_col, n_row)


def _extend_basis(basis: Any, lay: _Layout) -> Any:
    """The previous basis for a larger LP with the same prefix: new node columns basic with
    their rows at bound, new facet rows basic, new regulator slacks at zero."""
    bs = highspy.HighsBasisStatus
    col = list(basis.col_status)
    row = list(basis.row_status)
    if len(col) > lay.n_col or len(row) > lay.n_row:
        return None
    new_cols = [bs.kBasic] * (lay.n_col - len(col))
    if lay.block == 5:
        for i in range(len(new_cols)):
            if (len(col) + i - lay.node_col[0]) % 5 >= 3:
                new_cols[i] = bs.kLower
    new_rows = [bs.kLower] * (lay.n_row - len(row))
    th = set(lay.th_row[lay.th_row >= len(row)].tolist())
    for r in th:
        new_rows[r - len(row)] = bs.kBasic
    out = highspy.HighsBasis()
    out.col_status = col + new_cols
    out.row_status = row + new_rows
    out.valid = True
    return out


@dataclass
class Solution:
    """One solved loss pass: the LP solution and duals, where its rows and columns are,
    and the whole-feeder LinDistFlow state and net load of the dispatch."""

    x: FloatArray
    row_dual: FloatArray
    col_dual: FloatArray
    lin: Linearisation
    sk: _Skeleton
    lay: _Layout
    P: FloatArray  # T × E LinDistFlow state of the dispatch
    Q: FloatArray
    v: FloatArray
    p: FloatArray  # T × E net load
    q: FloatArray
    soft: bool
    basis: Any

    @property
    def vm(self) -> FloatArray:
        out: FloatArray = np.sqrt(np.maximum(self.v, 0.0))
        return out


def _highs(lp: highspy.HighsLp, basis: Any, threads: int) -> tuple[bool, Any]:
    """Solve with HiGHS from ``basis`` (if any); (True if optimal / False if infeasible)."""
    # highspy.Highs() calls into HiGHS in its constructor, which writes the HiGHS banner to
    # file descriptor 1 before any option can be set; HiGHS's supported way to stay silent
    # is output_flag = False *before* any other call, so use the core class and set it first.
    h = _Highs()
    try:
        h.setOptionValue("output_flag", False)
        if threads:
            h.setOptionValue("threads", int(threads))
        h.passModel(lp)
        if basis is not None:
            h.setBasis(basis)
            h.setOptionValue("simplex_dual_edge_weight_strategy", _WARM_EDGE_WEIGHTS)
        h.run()
        status = h.getModelStatus()
    except Exception as exc:  # the solver's own errors become ours
        raise NetworkClearingError(f"HiGHS failed on the clearing LP: {exc}") from exc
    ms = highspy.HighsModelStatus
    if status == ms.kOptimal:
        return True, h
    if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible):
        return False, h
    raise NetworkClearingError(
        f"HiGHS could not solve the clearing LP: {h.modelStatusToString(status)}"
    )


def _per_root_top(net: RadialNetwork, t: IntArray, e: IntArray, score: FloatArray) -> BoolArray:
    """Keep the ``_ROWS_PER_ROUND`` highest scores per (interval, source tree)."""
    key = t * net.roots.size + net.root_pos[e]
    order = np.lexsort((-score, key))
    ks = key[order]
    first = np.searchsorted(ks, ks, side="left")
    keep = np.zeros(t.size, dtype=bool)
    keep[order[np.arange(ks.size) - first < _ROWS_PER_ROUND]] = True
    return keep


def _worst_voltage(
    net: RadialNetwork, sk: _Skeleton, v: FloatArray, vmin2: FloatArray, vmax2: FloatArray
) -> tuple[IntArray, IntArray]:
    """Buses to monitor: violated buses outside the skeleton that are a local maximum of the
    violation along the tree (no child violated more), at most ``_ROWS_PER_ROUND`` per
    interval and source."""
    viol = np.where(net.nonroot, np.maximum(vmin2 - v, v - vmax2), 0.0)
    child_max = np.full_like(viol, -np.inf)
    nr = np.flatnonzero(net.nonroot)
    np.maximum.at(child_max.T, net.parent[nr], viol[:, nr].T)
    cand = (viol > _ROW_TOL) & ~sk.in_k & (viol >= child_max)
    t, e = (a.astype(np.int64) for a in np.nonzero(cand))
    keep = _per_root_top(net, t, e, viol[t, e])
    return t[keep], e[keep]


def _worst_thermal(
    net: RadialNetwork, sk: _Skeleton, S: FloatArray, P: FloatArray, Q: FloatArray, half: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Thermal facets to add: the violated facets of every overloaded branch that is a local
    maximum of the relative overload along its path (its parent branch not more
    overloaded), at most ``_ROWS_PER_ROUND`` branches per interval and source."""
    lim = np.isfinite(S)
    z = np.zeros(0, dtype=np.int64)
    if not lim.any():
        return z, z, z
    theta = 2 * np.pi * np.arange(half) / (2 * half)
    t0, e0 = np.nonzero(lim)
    f = np.abs(np.cos(theta)[None, :] * P[t0, e0][:, None] + np.sin(theta) * Q[t0, e0][:, None])
    over = f / S[t0, e0][:, None] - 1.0
    over = np.where(sk.in_th[t0, e0], -np.inf, over)
    worst = np.full(S.shape, -np.inf)
    worst[t0, e0] = over.max(axis=1)
    par_worst = np.where(net.nonroot, worst[:, np.maximum(net.parent, 0)], -np.inf)
    cand = (worst > _ROW_TOL) & (worst >= par_worst)
    t, e = (a.astype(np.int64) for a in np.nonzero(cand))
    if t.size == 0:
        return z, z, z
    keep = _per_root_top(net, t, e, worst[t, e])
    t, e = t[keep], e[keep]
    f = np.abs(np.cos(theta)[None, :] * P[t, e][:, None] + np.sin(theta) * Q[t, e][:, None])
    hit = (f / S[t, e][:, None] - 1.0 > _ROW_TOL) & ~sk.in_th[t, e]
    tt, kk = np.nonzero(hit)
    return t[tt], e[tt], kk.astype(np.int64)


def solve(
    prob: Problem,
    cols: Cols,
    lin: Linearisation,
    threads: int,
    previous: Solution | None,
    band: tuple[FloatArray, FloatArray],
) -> Solution:
    """One loss pass: solve, monitor the violated buses and branches, re-solve (warm) until
    nothing is violated; fall back to soft voltage limits if the LP is infeasible."""
    net, T, E = prob.net, prob.T, prob.net.n
    half = prob.thermal_sides // 2
    vmin2, vmax2 = band
    sk = previous.sk.copy() if previous is not None else _Skeleton.initial(net, T, half)
    soft = previous.soft if previous is not None else False
    basis = previous.basis if previous is not None else None
    S = _thermal_limit(prob, lin)
    P0, Q0, _ = forward(net, lin, cols.p_fixed, cols.q_fixed)
    for _ in range(100):  # rounds of monitoring; each re-solve is warm-started
        lp, lay = _build(prob, cols, lin, sk, soft, (P0, Q0), band)
        start = _extend_basis(basis, lay) if basis is not None else None
        ok, h = _highs(lp, start, threads)
        if not ok:
            if soft:
                raise NetworkClearingError(
                    "the clearing LP is infeasible even with load shedding and soft voltage "
                    "limits; check the feeder data, the limits and the wholesale curve"
                )
            soft, basis = True, None
            continue
        s = h.getSolution()
        x = np.asarray(s.col_value)
        p, q = _net_load(cols, x[: cols.n], T, E)
        state_lin = lin
        if soft:  # the virtual regulators shift the voltages below them
            cV = lin.cV.copy()
            shift = x[lay.node_col + 3] - x[lay.node_col + 4]
            np.add.at(cV, (sk.node_t, sk.node_e), shift)
            state_lin = replace(lin, cV=cV)
        P, Q, v = forward(net, state_lin, p, q)
        new_v = _worst_voltage(net, sk, v, vmin2, vmax2)
        new_th = _worst_thermal(net, sk, S, P, Q, half)
        basis = h.getBasis()
        if new_v[0].size == 0 and new_th[0].size == 0:
            return Solution(
                x=x,
                row_dual=np.asarray(s.row_dual),
                col_dual=np.asarray(s.col_dual),
                lin=state_lin,
                sk=sk,
                lay=lay,
                P=P,
                Q=Q,
                v=v,
                p=p,
                q=q,
                soft=soft,
                basis=basis,
            )
        sk.add_paths(net, *new_v)
        sk.add_facets(net, *new_th)
    raise NetworkClearingError("network monitoring did not settle in 100 rounds")
