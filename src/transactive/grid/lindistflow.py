"""LinDistFlow (Baran–Wu) data of a radial feeder, its linearisation around an AC operating
point, and the adjoint (transposed) solve used to decompose DLMPs.

Every energised bus ``e`` (positions ``0..E-1`` in breadth-first order, sources first) has
three network variables per interval:

* ``P_e``, ``Q_e`` — active/reactive power (kW, kvar) flowing *into the branch* from the
  parent bus towards ``e`` (measured at the parent end); at a source bus the import from
  the upstream grid;
* ``v_e`` — squared voltage magnitude (pu²); fixed at a source bus.

and three equations (per interval, ``c`` ranging over the children of ``e``)::

    EP_e:  (1 − aP_e)·P_e − aQ_e·Q_e − Σ_c P_c − (net load at e) = l0P_e
    EQ_e:  −bP_e·P_e + (1 − bQ_e)·Q_e − Σ_c Q_c − (net reactive load at e) = l0Q_e
    EV_e:  v_e − k_e·v_parent + dvP_e·P_e + dvQ_e·Q_e = cV_e                 (not at sources)

``r``, ``x`` are the branch's per-unit impedance divided by the feeder's ``base_kva`` (so P
and Q stay in kW/kvar), ``k`` the squared off-nominal voltage ratio of a transformer (1 for
lines and switches). With ``aP = aQ = bP = bQ = l0 = cV = 0``, ``dvP = 2r`` and
``dvQ = 2x`` this is the lossless LinDistFlow model. :func:`linearise` fills them from an AC
power flow, linearising the DistFlow equations at the AC flows: the active loss
``r·ℓ`` with ``ℓ = (P² + Q²)/V²`` (and the reactive loss ``x·ℓ``) of every branch is
replaced by its tangent, offset so that it equals the AC loss there (shunt and iron losses
included); the voltage equation ``v_e = k·v_parent − 2(r·P + x·Q) + (r² + x²)·ℓ`` gets the
tangent of its ``ℓ`` term (``dvP = 2r − 2(r² + x²)·P₀/V²``, likewise ``dvQ``) and, in
``cV``, its residual at the AC point. The AC operating point then satisfies all three
equations exactly, and the linear model is its first-order expansion.

:func:`verify` is the AC check of a LinDistFlow operating point: it runs the AC power flow
(:class:`~transactive.grid.powerflow.PowerFlow`) of given injections and compares its
voltages with the LinDistFlow ones, and checks the AC result against limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from transactive.errors import InvalidInputError
from transactive.grid.limits import Limits, check_limits
from transactive.grid.model import Feeder, Injections
from transactive.grid.powerflow import PowerFlow
from transactive.grid.results import PowerFlowResult

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

__all__ = [
    "Linearisation",
    "RadialNetwork",
    "Verification",
    "adjoint_solve",
    "forward",
    "linearise",
    "lossless",
    "radial",
    "verify",
]


@dataclass(frozen=True)
class RadialNetwork:
    """The energised part of a radial feeder as arrays over energised buses ``e``.

    bus: feeder bus position of each ``e`` (breadth-first, sources first); index: for every
    feeder bus its ``e`` (−1 if de-energised); parent: parent ``e`` (−1 at sources); branch:
    feeder branch to the parent (−1 at sources); forward: the branch's ``from_bus`` is the
    parent; levels: ``e`` indices by depth (0 = sources); r, x: pu impedance / base_kva (0 at
    sources); k: squared no-load voltage ratio child/parent; rating_kva: thermal rating of
    the branch to the parent (inf where none; for a transformer with an off-nominal tap the
    rating at its more loaded winding, referred to the parent end); is_trafo: that branch
    is a transformer; v_source: squared source voltage (pu², NaN elsewhere); source_row: row in
    ``feeder.sources`` (−1 elsewhere); root_pos: position in ``roots`` of the source that
    feeds each bus.
    """

    feeder: Feeder
    bus: IntArray
    index: IntArray
    parent: IntArray
    branch: IntArray
    forward: BoolArray
    levels: list[IntArray]
    r: FloatArray
    x: FloatArray
    k: FloatArray
    rating_kva: FloatArray
    is_trafo: BoolArray
    v_source: FloatArray
    source_row: IntArray
    root_pos: IntArray

    @property
    def n(self) -> int:
        """Number of energised buses E."""
        return int(self.bus.size)

    @property
    def roots(self) -> IntArray:
        """``e`` indices of the source buses."""
        return self.levels[0]

    @property
    def nonroot(self) -> BoolArray:
        """Mask of the buses that have a parent branch."""
        out: BoolArray = self.parent >= 0
        return out


def radial(feeder: Feeder) -> RadialNetwork:
    """Build the :class:`RadialNetwork` of ``feeder`` (NetworkTopologyError if meshed)."""
    topo = feeder.require_radial()
    order = topo.order.astype(np.int64)
    E = order.size
    index = np.full(feeder.n_bus, -1, dtype=np.int64)
    index[order] = np.arange(E)
    par_bus = topo.parent[order]
    parent = np.where(par_bus >= 0, index[np.maximum(par_bus, 0)], -1)
    branch = topo.parent_branch[order].astype(np.int64)
    has = parent >= 0
    br = feeder.branches
    bi = np.maximum(branch, 0)

    def col(name: str, dtype: type = float) -> np.ndarray:  # per bus, of its parent branch
        arr = br[name].to_numpy()
        return arr.astype(dtype)[bi] if arr.size else np.zeros(E, dtype=dtype)

    forward = has & (col("from_bus", np.int64) == par_bus)
    base = feeder.base_kva
    r = np.where(has, col("r_pu") / base, 0.0)
    x = np.where(has, col("x_pu") / base, 0.0)
    is_trafo = has & (col("kind", str) == "trafo")
    rating = col("rating_kva")
    rating = np.where(has & np.isfinite(rating) & (rating > 0), rating, np.inf)
    k = np.ones(E)
    if is_trafo.any():
        k[is_trafo], derate = _trafo_ratio2(feeder, branch[is_trafo], forward[is_trafo])
        rating[is_trafo] = rating[is_trafo] / derate
    depth = topo.depth[order]
    levels = [np.flatnonzero(depth == d) for d in range(int(depth.max()) + 1)]
    src = feeder.sources
    v_source = np.full(E, np.nan)
    source_row = np.full(E, -1, dtype=np.int64)
    src_e = index[src["bus"].to_numpy(dtype=np.int64)]
    v_source[src_e] = src["vm_pu"].to_numpy(dtype=float) ** 2
    source_row[src_e] = np.arange(len(src))
    root_e = index[topo.root[order]]
    root_pos = np.searchsorted(levels[0], root_e).astype(np.int64)
    return RadialNetwork(
        feeder=feeder,
        bus=order,
        index=index,
        parent=parent,
        branch=np.where(has, branch, -1),
        forward=forward,
        levels=levels,
        r=r,
        x=x,
        k=k,
        rating_kva=rating,
        is_trafo=is_trafo,
        v_source=v_source,
        source_row=source_row,
        root_pos=root_pos,
    )


def _trafo_ratio2(
    feeder: Feeder, branch: IntArray, forward: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """Squared no-load ratio |V_child|/|V_parent| (pu) of transformers with their taps, and
    how much higher the loading is at the more loaded winding than at the parent end
    (≥ 1): loading is current × rated voltage, so an off-nominal tap loads one side more."""
    tr = feeder.transformers.loc[branch]
    br = feeder.branches.loc[branch]
    vn = feeder.buses["vn_kv"].to_numpy(dtype=float)
    side = tr["tap_side"].to_numpy().astype(str)
    step = (tr["tap_pos"].to_numpy(float) - tr["tap_neutral"].to_numpy(float)) * tr[
        "tap_step_percent"
    ].to_numpy(float)
    u1 = tr["vn_hv_kv"].to_numpy(float) * np.where(side == "hv", 1 + step / 100, 1.0)
    u2 = tr["vn_lv_kv"].to_numpy(float) * np.where(side == "lv", 1 + step / 100, 1.0)
    v_from = vn[br["from_bus"].to_numpy(dtype=np.int64)]
    v_to = vn[br["to_bus"].to_numpy(dtype=np.int64)]
    ratio = (v_from / u1) * (u2 / v_to)  # V_to/V_from in pu at no load
    out: FloatArray = np.where(forward, ratio, 1.0 / ratio) ** 2
    # I_lv/I_hv = u1/u2 (effective turns); loading_lv/loading_hv = (u1/u1_rated)(u2_rated/u2)
    lv_over_hv = (u1 / tr["vn_hv_kv"].to_numpy(float)) * (tr["vn_lv_kv"].to_numpy(float) / u2)
    derate = np.maximum(1.0, np.where(forward, lv_over_hv, 1.0 / lv_over_hv))
    return out, derate


@dataclass(frozen=True)
class Linearisation:
    """Coefficients of the EP/EQ/EV equations per interval and bus (arrays T × E), see the
    module docstring; ``v_ref`` is the voltage (pu) at each branch's parent end used to turn
    the current rating into an apparent-power limit."""

    aP: FloatArray
    aQ: FloatArray
    bP: FloatArray
    bQ: FloatArray
    l0P: FloatArray
    l0Q: FloatArray
    cV: FloatArray
    dvP: FloatArray
    dvQ: FloatArray
    v_ref: FloatArray


def lossless(net: RadialNetwork, T: int) -> Linearisation:
    """The lossless LinDistFlow model (no loss terms, no corrections, v_ref = 1 pu)."""
    z = np.zeros((T, net.n))
    dvP = np.broadcast_to(2 * net.r, (T, net.n))
    dvQ = np.broadcast_to(2 * net.x, (T, net.n))
    return Linearisation(z, z, z, z, z, z, z, dvP, dvQ, np.ones((T, net.n)))


def linearise(net: RadialNetwork, ac: PowerFlowResult) -> Linearisation:
    """Losses and voltage-equation residuals linearised at the AC result ``ac`` (see module
    docstring); ``ac`` has one step per interval."""
    br = net.branch
    has = br >= 0
    b = np.maximum(br, 0)
    fwd = net.forward

    def at(a: FloatArray) -> FloatArray:  # per bus, of its parent branch (time × E)
        out: FloatArray = a[:, b] if a.shape[1] else np.zeros((a.shape[0], net.n))
        return out

    # Flows into the branch at the parent end, and branch losses (kW, kvar), time × E.
    pf, pt, qf, qt = at(ac.p_from_kw), at(ac.p_to_kw), at(ac.q_from_kvar), at(ac.q_to_kvar)
    p0 = np.where(fwd, pf, pt)
    q0 = np.where(fwd, qf, qt)
    loss_p = pf + pt
    loss_q = qf + qt
    vm = ac.vm_pu[:, net.bus]
    vpar = vm[:, np.maximum(net.parent, 0)]
    v2 = vpar**2
    aP = np.where(has, 2 * net.r * p0 / v2, 0.0)
    aQ = np.where(has, 2 * net.r * q0 / v2, 0.0)
    bP = np.where(has, 2 * net.x * p0 / v2, 0.0)
    bQ = np.where(has, 2 * net.x * q0 / v2, 0.0)
    l0P = np.where(has, loss_p - aP * p0 - aQ * q0, 0.0)
    l0Q = np.where(has, loss_q - bP * p0 - bQ * q0, 0.0)
    z2 = net.r**2 + net.x**2
    dvP = np.where(has, 2 * net.r - 2 * z2 * p0 / v2, 0.0)
    dvQ = np.where(has, 2 * net.x - 2 * z2 * q0 / v2, 0.0)
    vsq = vm**2
    cV = np.where(has, vsq - net.k * vsq[:, np.maximum(net.parent, 0)], 0.0)
    cV = cV + np.where(has, dvP * p0 + dvQ * q0, 0.0)
    v_ref = np.where(has, vpar, 1.0)
    return Linearisation(aP, aQ, bP, bQ, l0P, l0Q, cV, dvP, dvQ, v_ref)


def forward(
    net: RadialNetwork, lin: Linearisation, p: FloatArray, q: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Solve the EP/EQ/EV equations for net loads ``p``, ``q`` (kW, kvar, T × E): flows
    ``P``, ``Q`` (leaves up) and squared voltages ``v`` (root down), each T × E."""
    accP = p + lin.l0P
    accQ = q + lin.l0Q
    P = np.zeros_like(accP)
    Q = np.zeros_like(accQ)
    par = net.parent
    for lvl in reversed(net.levels[1:]):  # leaves up: 2×2 solve per branch
        a11 = 1 - lin.aP[:, lvl]
        a12 = -lin.aQ[:, lvl]
        a21 = -lin.bP[:, lvl]
        a22 = 1 - lin.bQ[:, lvl]
        det = a11 * a22 - a12 * a21
        rp, rq = accP[:, lvl], accQ[:, lvl]
        P[:, lvl] = (a22 * rp - a12 * rq) / det
        Q[:, lvl] = (a11 * rq - a21 * rp) / det
        np.add.at(accP.T, par[lvl], P[:, lvl].T)
        np.add.at(accQ.T, par[lvl], Q[:, lvl].T)
    roots = net.levels[0]
    P[:, roots] = accP[:, roots]
    Q[:, roots] = accQ[:, roots]
    v = np.zeros_like(P)
    v[:, roots] = net.v_source[roots]
    for lvl in net.levels[1:]:  # root down: voltage drop along each branch
        v[:, lvl] = (
            net.k[lvl] * v[:, par[lvl]]
            + lin.cV[:, lvl]
            - lin.dvP[:, lvl] * P[:, lvl]
            - lin.dvQ[:, lvl] * Q[:, lvl]
        )
    return P, Q, v


def adjoint_solve(
    net: RadialNetwork,
    lin: Linearisation,
    gP: FloatArray,
    gQ: FloatArray,
    gv: FloatArray,
    interval: IntArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Solve ``Mᵀ y = g`` for the EP/EQ/EV system, one independent system per row of the
    right-hand sides.

    ``gP``, ``gQ``, ``gv`` (R × E) are the right-hand sides at the columns ``P_e``, ``Q_e``,
    ``v_e`` (``gv`` ignored at sources, whose voltage is fixed); row ``i`` uses the
    linearisation of interval ``interval[i]`` (default: row ``i`` is interval ``i``).
    Returns the parts of ``y`` on the EP and EQ rows (R × E): the sensitivity of
    ``gP·P + gQ·Q + gv·v`` to active / reactive load at each bus. Two sweeps over the tree
    depth, vectorised over rows and the buses of a level.
    """
    arrays = (lin.aP, lin.aQ, lin.bP, lin.bQ, lin.dvP, lin.dvQ)
    aP, aQ, bP, bQ, dvP, dvQ = arrays if interval is None else (a[interval] for a in arrays)
    yV = np.where(net.nonroot, gv, 0.0)
    par = net.parent
    for lvl in reversed(net.levels[1:]):  # leaves up: yV_e = gv_e + Σ_c k_c yV_c
        p = par[lvl]
        contrib = net.k[lvl] * yV[:, lvl]
        np.add.at(yV.T, p, np.where(net.nonroot[p], contrib, 0.0).T)
    yP = np.zeros_like(gP)
    yQ = np.zeros_like(gQ)
    roots = net.levels[0]
    yP[:, roots] = gP[:, roots]
    yQ[:, roots] = gQ[:, roots]
    for lvl in net.levels[1:]:  # root down: 2×2 solve per branch
        p = par[lvl]
        rp = gP[:, lvl] + yP[:, p] - dvP[:, lvl] * yV[:, lvl]
        rq = gQ[:, lvl] + yQ[:, p] - dvQ[:, lvl] * yV[:, lvl]
        a11 = 1 - aP[:, lvl]
        a12 = -bP[:, lvl]
        a21 = -aQ[:, lvl]
        a22 = 1 - bQ[:, lvl]
        det = a11 * a22 - a12 * a21
        yP[:, lvl] = (a22 * rp - a12 * rq) / det
        yQ[:, lvl] = (a11 * rq - a21 * rp) / det
    return yP, yQ


# --- AC verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """An AC power flow of LinDistFlow injections compared with the LinDistFlow voltages.

    ac: the AC power flow (T steps); voltage_error_pu: T, the largest |LinDistFlow − AC|
    voltage magnitude over the energised buses (pu); violations: the AC result's
    :func:`~transactive.grid.limits.check_limits` rows for the limits given."""

    ac: PowerFlowResult
    voltage_error_pu: FloatArray
    violations: pd.DataFrame = field(repr=False)

    @property
    def max_voltage_error_pu(self) -> float:
        """Largest LinDistFlow-vs-AC voltage difference over all steps (pu; 0 if none)."""
        return float(self.voltage_error_pu.max(initial=0.0))


def verify(
    feeder: Feeder,
    net_load_kw: ArrayLike,
    net_load_kvar: ArrayLike,
    voltage_pu: ArrayLike,
    limits: Limits,
    *,
    powerflow: PowerFlow | None = None,
) -> Verification:
    """AC check of a LinDistFlow operating point: the AC power flow of the per-bus net load
    ``net_load_kw``/``net_load_kvar`` (T × bus, kW / kvar, + consumption) compared with the
    LinDistFlow voltage magnitudes ``voltage_pu`` (T × bus, pu; NaN rows, e.g. intervals
    without a LinDistFlow solution, are skipped), and the AC limit violations for
    ``limits``. ``powerflow``: a :class:`PowerFlow` of ``feeder`` to reuse (built if None).
    Raises PowerFlowError if the AC power flow does not converge."""
    p = np.atleast_2d(np.asarray(net_load_kw, dtype=np.float64))
    q = np.atleast_2d(np.asarray(net_load_kvar, dtype=np.float64))
    v = np.atleast_2d(np.asarray(voltage_pu, dtype=np.float64))
    if not (p.shape == q.shape == v.shape) or p.shape[1] != feeder.n_bus:
        raise InvalidInputError(
            f"verify: net_load_kw {p.shape}, net_load_kvar {q.shape} and voltage_pu "
            f"{v.shape} must all be (intervals, {feeder.n_bus})"
        )
    pf = powerflow if powerflow is not None else PowerFlow(feeder)
    if pf.feeder is not feeder:
        raise InvalidInputError("verify: powerflow was built for another feeder")
    ac = pf.run(Injections(p, q))
    live = feeder.topology.energized
    with np.errstate(invalid="ignore"):
        gap = np.abs(v[:, live] - ac.vm_pu[:, live])
    err = np.max(np.nan_to_num(gap, nan=0.0), axis=1, initial=0.0)
    return Verification(ac, err, check_limits(feeder, ac, limits))
