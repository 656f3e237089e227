"""Network-constrained DSO clearing with distribution locational marginal prices (DLMPs).

The DSO clears its area by maximising welfare over every bid curve placed at its bus,
subject to a LinDistFlow model of the radial feeder, for one interval or a horizon of
intervals coupled by storage and EV energy. The problem is a linear programme solved with
HiGHS (``highspy``); the DLMPs come from its duals.

Formulation (per interval ``t``; kW, kvar, $/kWh, pu)
-----------------------------------------------------
*Network model.* LinDistFlow (Baran–Wu) on the radial feeder
(:mod:`transactive.market.lindistflow`): per energised bus ``e`` the flow ``P_e, Q_e`` into
the branch from its parent (the upstream import at a source), the squared voltage
``v_e``, nodal active / reactive balance, ``v_e = k·v_parent − 2(r·P_e + x·Q_e)`` (``k``:
transformer tap ratio²), source voltage fixed. The LP keeps these variables and equations
only on a *monitored skeleton*: the sources plus every bus whose voltage limit or branch
whose thermal limit has been found binding, with their paths to the source. Every other
subtree is eliminated exactly: its injections enter the balance of the skeleton bus it
hangs from through their (linear) sensitivity ``∂(P_u, Q_u)/∂(p, q)`` of the flow into the
subtree's top branch ``u`` (1 without losses), so each injection has two nonzeros however
deep the tree is. The skeleton starts with the sources only; after each solve the
LinDistFlow state of the whole feeder is computed for the dispatch (two sweeps over the
tree) and the buses / branches that violate a limit — at most 8 per interval and area per
round, the local maxima of the violation along the tree — join the skeleton; the LP is
rebuilt in the same row/column order and re-solved from the previous basis (dual simplex,
Devex pricing) until nothing is violated. The result is exactly the full branch-flow LP's
optimum (the tests compare with one), found on an LP of a few percent of its size.

*Areas.* At a fixed wholesale price the areas fed by different sources (e.g. the MV/LV
transformers of an LV grid, each with its own external grid) share no constraint, so each
is cleared on its own, in parallel threads, and the results are merged; with a wholesale
*curve* they are cleared together.

*Variables.* Per bid segment ``s``: ``0 ≤ y_s ≤ Δq_s``. The wholesale purchase ``w`` (or the
segments of the wholesale curve). Shedding / curtailment of fixed load per bus. Per storage
device: charge, discharge, state of charge, unmet energy. Per skeleton bus: ``P, Q, v``
(``P`` at a source is its import).

*Bids.* A bid curve (non-increasing, kW vs $/kWh, + buy / − sell) becomes its quantity at
the highest price ``q_last`` plus one variable per falling segment: a vertical step of
``Δq`` kW at price ``p`` is a variable valued at ``p``; a ramp from ``p0`` to ``p1`` is split
into ``ramp_steps`` (default 4) equal steps valued at the midpoints of their price ranges
(exact total utility, piecewise-constant marginal value) so the objective stays linear and
the duals are clean. A curve that still buys at its highest price gets a step at +VOLL down
to 0 kW, one that still sells at its lowest price a step at −VOLL up to 0 kW, so every bid
can be cut to zero. The award is ``q_last + Σ y_s``. Reactive power ``q = p·tan φ`` with the
bid's ``power_factor`` (default 1: no reactive power; a sell gives ``q < 0``).

*Objective* (minimised, $/h per interval, summed over the intervals)::

    Σ_t [ λ_t·w_t − Σ_s price_s·y_s + VOLL·(shed + curtailment)
          + Σ_d c_d·(η_c·ch_d + dis_d/η_d) ] + VOLL·Σ unmet_kWh / Δt

i.e. minus the welfare: bid utility minus the cost of energy bought at the substation.
``λ_t`` is the wholesale price, or a wholesale curve, which enters like a bid at the
substation whose award is minus the import.

*Constraints.*

* import: ``Σ_r P_r = w`` (sources ``r``), ``P_r ≥ −max_reverse_flow_kw`` per source;
* voltage band ``v_min² ≤ v_e ≤ v_max²`` at every non-source bus (checked everywhere,
  imposed in the LP on the skeleton);
* thermal limit of every line and transformer as a regular polygon with ``thermal_sides``
  sides (default 16) *inscribed* in the circle ``P² + Q² ≤ S²`` (facet ``k``:
  ``|cos θ_k·P + sin θ_k·Q| ≤ S·cos(π/K)``, θ_k = 2πk/K, so the polygon never allows more
  than the circle and gives away at most 1 − cos(π/16) = 1.9 % of the rating; only the
  violated facets enter the LP), with ``S = loading limit × rating_kva × V_parent``: the
  current rating at the sending-end voltage (1 pu in the first pass, the AC voltage
  afterwards; a transformer with an off-nominal tap is derated to its more loaded
  winding); the flow is the one at the parent end of the branch;
* storage: ``soc_t = soc_{t−1} + Δt·(η_c·ch_t − dis_t/η_d)``, ``0 ≤ ch ≤ P_ch·available``,
  ``0 ≤ dis ≤ P_dis·available``, ``soc_min ≤ soc ≤ capacity``; an energy target (an EV's need
  by departure) is ``soc_t + unmet ≥ target`` with ``unmet`` priced at VOLL per kWh.
  Charging and discharging in the same interval is not excluded (LP relaxation); with
  efficiencies below 1 it only pays when energy is worth less than nothing.

*Losses* (``losses="iterative"``, default). Pass 1 solves the lossless LinDistFlow LP. Its
dispatch is run through the AC power flow (power-grid-model) and the DistFlow equations are
linearised at the AC flows (:func:`~transactive.market.lindistflow.linearise`): the loss
``r(P²+Q²)/V²`` of every branch becomes its tangent (matching the AC losses there, shunt and
iron losses included), the ``(r²+x²)·ℓ`` term of the voltage drop its tangent, and the
voltage equation gets the AC residual as a constant, so the AC point satisfies the linear
model exactly and the model is its first-order expansion. The LP is re-solved (from the
previous basis) and the cycle repeats until the LinDistFlow voltages agree with the AC
voltages of the cleared dispatch within ``tol_pu`` (default 1e-4 pu) or ``max_iterations``
passes (default 5) are done; ``converged`` says which. An LP can hop between equally good
dispatches (storage shifting between intervals of nearly the same price), so from the
second pass on, where a LinDistFlow voltage is still above the AC voltage, the band of the
next pass is tightened by that gap: the dispatch stays AC-feasible even when the iteration
does not settle. ``losses="none"``: the single lossless pass (pure Baran–Wu LinDistFlow;
the AC power flow then only verifies).

*Infeasibility.* Fixed (unresponsive) load can be shed and fixed generation curtailed at
every bus at the value of lost load ``voll`` (default 10 $/kWh); price-taking bids are
cleared as bids at ``+voll`` (buy) / ``−voll`` (sell). So when load cannot be served within
the limits, the LP sheds the least valuable load at the least cost and the interval's
status is ``shed``. If even that cannot meet the voltage band (e.g. the source voltage and
the transformer taps put a bus out of band whatever is injected), the LP is rebuilt with a
penalised virtual voltage regulator on every skeleton branch; intervals that need one get
the status ``infeasible`` and NaN prices. A
solver failure raises :class:`~transactive.errors.NetworkClearingError`, never a raw solver
exception.

DLMP decomposition
------------------
The DLMP of bus ``e`` is the marginal cost of one more kW of load there ($/kWh): the
derivative of the optimal objective with respect to a fixed load at ``e`` (at a skeleton
bus, the dual of its active balance). By KKT stationarity of the network variables
``(P, Q, v)`` of the *whole* feeder, ``Mᵀy = g`` where ``M`` is the LinDistFlow system and
``g`` collects the duals of the constraints those variables appear in; ``y`` on the active
balance rows is the DLMP of every bus. ``g`` splits by the kind of constraint, and by
linearity so does the DLMP:

* ``energy`` = λ_t, the marginal wholesale price (dual of ``Σ_r P_r = w``), every bus;
* ``loss`` = λ_t·(∂import/∂load_e − 1): marginal losses priced at λ_t (0 when lossless);
* ``congestion`` = Σ (thermal-facet and export-limit duals) × sensitivity of their flows;
* ``voltage`` = Σ (voltage-band duals) × sensitivity of the voltages.

Each part is one adjoint sweep over the tree
(:func:`~transactive.market.lindistflow.adjoint_solve`), so the components sum to the DLMP
by construction; the tests check the total against an independent branch-flow LP (nodal
balance rows, dense matrices, ``scipy.optimize.linprog``), against the skeleton's own
balance duals and against the prices of the marginal bids. ``dlmp_q`` is the same for
reactive load ($/kvarh); a bid with power factor < 1 is cleared at ``dlmp + tan φ·dlmp_q``.

Verification: after clearing, the AC power flow of the cleared injections is run and the
largest LinDistFlow-vs-AC voltage difference is reported (``voltage_error_pu``) together
with the AC limit violations (:func:`transactive.grid.limits.check_limits`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import Curves
from transactive.errors import (
    InvalidBidError,
    InvalidInputError,
    NetworkClearingError,
    PowerFlowError,
    plain,
)
from transactive.grid.limits import Limits, check_limits
from transactive.grid.model import Feeder, Injections
from transactive.grid.powerflow import PowerFlowResult, run_powerflow
from transactive.market.auction import Book
from transactive.market.lindistflow import (
    Linearisation,
    RadialNetwork,
    adjoint_solve,
    forward,
    linearise,
    lossless,
    radial,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

__all__ = [
    "INFEASIBLE",
    "OPTIMAL",
    "SHED",
    "VOLL",
    "NetworkClearing",
    "StorageFleet",
    "clear_network",
]

OPTIMAL, SHED, INFEASIBLE = "optimal", "shed", "infeasible"
#: Default value of lost load, $/kWh: the price of shedding fixed load, curtailing fixed
#: generation, leaving an energy target unmet and of price-taking bids.
VOLL = 10.0
#: Penalty of the virtual voltage regulators of the fallback LP, in VOLL per pu² ($/h): high
#: enough that shedding is always cheaper where it can restore the band (one kW moves the
#: squared voltage by ≥ 2e-6 pu² even on a stiff MV feeder, which would cost 200·VOLL).
_VOLTAGE_PENALTY = 1e8
#: Slack (kW, kWh) below which shedding, curtailment or unmet energy counts as zero.
_SLACK_TOL = 1e-6
#: Violation of a voltage (pu²) or thermal (relative) row below which it is not added.
_ROW_TOL = 1e-7
#: Dual simplex pricing after a warm start (HiGHS option simplex_dual_edge_weight_strategy):
#: 1 = Devex, which skips computing exact steepest-edge weights for the whole basis.
_WARM_EDGE_WEIGHTS = 1
#: From this loss pass on, a LinDistFlow-vs-AC voltage gap that has not closed tightens the
#: voltage band of the next pass by that gap (an LP can hop between equally good dispatches,
#: e.g. storage schedules, so the fixed point is not always reached).
_TIGHTEN_FROM = 2
#: Most voltage or thermal rows added per interval and source tree in one round.
_ROWS_PER_ROUND = 8


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageFleet:
    """Batteries and EV chargers as decision variables coupled across intervals.

    Arrays have one entry per device (``n``) or, for ``available`` / ``soc_target_kwh``,
    shape intervals × devices (``T × n``).

    bus: bus of each device (feeder positions or bus names).
    charge_kw, discharge_kw: AC power limits (≥ 0; ``discharge_kw = 0`` for an EV).
    capacity_kwh: usable energy; soc_kwh: energy at the start of the horizon;
    soc_min_kwh: hard lower bound on the energy (default 0).
    eta_charge, eta_discharge: one-way efficiencies in (0, 1].
    available: device connected in the interval (an EV plugged in); default always.
    soc_target_kwh: energy wanted at the end of each interval (NaN = none), e.g. an EV's
        energy need at its departure interval; a shortfall costs VOLL per kWh.
    cost_per_kwh: degradation cost of cell throughput ``η_c·E_charge + E_discharge/η_d``.
    ids: optional device names.
    """

    bus: ArrayLike
    charge_kw: ArrayLike
    capacity_kwh: ArrayLike
    soc_kwh: ArrayLike
    discharge_kw: ArrayLike | None = None
    soc_min_kwh: ArrayLike = 0.0
    eta_charge: ArrayLike = 0.95
    eta_discharge: ArrayLike = 0.95
    available: ArrayLike | None = None
    soc_target_kwh: ArrayLike | None = None
    cost_per_kwh: ArrayLike = 0.0
    ids: ArrayLike | None = None

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(np.asarray(self.bus).size)


@dataclass(frozen=True)
class _Storage:
    """Validated storage arrays (devices on energised buses ``e``)."""

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


# --- result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkClearing:
    """Result of :func:`clear_network`: arrays over intervals (T), buses (feeder order),
    branches (feeder order), bids (book order) and storage devices.

    status: per interval ``optimal`` / ``shed`` / ``infeasible`` (module docstring).
    dlmp, energy, loss, congestion, voltage: T × bus, $/kWh; ``dlmp`` is the total, the
        four components sum to it; NaN at de-energised buses and infeasible intervals.
    dlmp_q: T × bus, $/kvarh, dual of the reactive balance.
    awards: per bid, kW (+ bought, − sold); interval: interval of each bid.
    voltage_pu: T × bus, LinDistFlow voltage magnitude.
    flow_p_kw, flow_q_kvar: T × branch, LinDistFlow flow at the parent end, oriented from
        the branch's ``from_bus`` to its ``to_bus`` (NaN for branches outside the tree).
    substation_import_kw: T, total import at the sources (− export).
    losses_kw: T, LinDistFlow losses (import − net load).
    shed_kw, curtailed_kw: T × bus, fixed load shed / fixed generation curtailed.
    net_load_kw, net_load_kvar: T × bus, the cleared injections (+ consumption).
    storage_charge_kw, storage_discharge_kw, storage_soc_kwh, storage_unmet_kwh: T × device.
    welfare: T, bid utility − energy cost − VOLL costs, $/h.
    iterations: LP passes made; converged: the loss iteration met ``tol_pu``.
    ac: AC power flow of the cleared injections (None if ``verify=False``);
    ac_voltage_pu: T × bus AC voltages; voltage_error_pu: T, max |LinDistFlow − AC| voltage;
    violations: AC limit violations (:func:`~transactive.grid.limits.check_limits`).
    """

    status: NDArray[np.str_]
    dlmp: FloatArray
    energy: FloatArray
    loss: FloatArray
    congestion: FloatArray
    voltage: FloatArray
    dlmp_q: FloatArray
    awards: FloatArray
    interval: IntArray
    bid_bus: IntArray
    voltage_pu: FloatArray
    flow_p_kw: FloatArray
    flow_q_kvar: FloatArray
    substation_import_kw: FloatArray
    losses_kw: FloatArray
    shed_kw: FloatArray
    curtailed_kw: FloatArray
    net_load_kw: FloatArray
    net_load_kvar: FloatArray
    storage_charge_kw: FloatArray
    storage_discharge_kw: FloatArray
    storage_soc_kwh: FloatArray
    storage_unmet_kwh: FloatArray
    welfare: FloatArray
    iterations: int
    converged: bool
    bus_names: list[str]
    ac: PowerFlowResult | None = None
    ac_voltage_pu: FloatArray | None = None
    voltage_error_pu: FloatArray | None = None
    violations: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n_intervals(self) -> int:
        """Number of intervals T."""
        return int(self.status.size)

    @property
    def max_voltage_error_pu(self) -> float:
        """Largest LinDistFlow-vs-AC voltage difference over all intervals (NaN if the AC
        power flow was not run)."""
        if self.voltage_error_pu is None or self.voltage_error_pu.size == 0:
            return float("nan")
        return float(np.nanmax(self.voltage_error_pu))

    def payments(self) -> FloatArray:
        """Per bid: what it pays (+) or receives (−) at its bus's DLMP, $/h (NaN where the
        interval is infeasible)."""
        out: FloatArray = self.dlmp[self.interval, self.bid_bus] * self.awards
        return out


# --- the problem --------------------------------------------------------------------------


@dataclass
class _Problem:
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
    price_taking: BoolArray
    # fixed load (T × E)
    fixed_p: FloatArray
    fixed_q: FloatArray
    # wholesale
    price: FloatArray | None  # T, fixed price
    ws_iv: IntArray  # wholesale curve segments
    ws_price: FloatArray
    ws_ub: FloatArray
    ws_base: FloatArray  # T
    storage: _Storage | None
    thermal_sides: int


def clear_network(
    feeder: Feeder,
    book: Book,
    bus: ArrayLike,
    wholesale_price: ArrayLike | Curves,
    *,
    limits: Limits | None = None,
    storage: StorageFleet | None = None,
    fixed_load_kw: ArrayLike | None = None,
    fixed_load_kvar: ArrayLike | None = None,
    price_taking: ArrayLike | None = None,
    power_factor: ArrayLike = 1.0,
    interval_hours: float = 1.0,
    voll: float = VOLL,
    losses: Literal["iterative", "none"] = "iterative",
    max_iterations: int = 5,
    tol_pu: float = 1e-4,
    thermal_sides: int = 16,
    ramp_steps: int = 4,
    verify: bool = True,
    threads: int = 0,
) -> NetworkClearing:
    """Clear ``book`` on ``feeder`` subject to the network (see the module docstring).

    bus: bus of every bid (feeder positions or bus names), in the book's order.
    wholesale_price: $/kWh at the substation, scalar or one per interval; or a
        :class:`Curves` with one curve per interval: the upstream market's net curve at the
        substation (− it sells to the DSO, + it buys from it).
    limits: voltage band, loading limits (%), substation export limit (default
        :class:`~transactive.grid.limits.Limits`, which forbids export).
    storage: batteries / EVs optimised over the horizon.
    fixed_load_kw, fixed_load_kvar: unresponsive net load per bus, shape T × bus or (bus,)
        (+ consumption, − generation), sheddable / curtailable at ``voll``.
    price_taking: per bid, True for an unresponsive (block) bid: cleared at ``±voll``.
    power_factor: per bid or scalar, in (0, 1]; q = p·tan φ.
    interval_hours: length of an interval (h), for the storage energy balance.
    losses: ``"iterative"`` (linearised losses, AC fixed point) or ``"none"`` (lossless).
    max_iterations, tol_pu: loss iteration limit and LinDistFlow-vs-AC voltage tolerance.
    thermal_sides: sides of the thermal polygon (even, ≥ 4); ramp_steps: steps per ramp.
    verify: run the AC power flow on the result (always done when ``losses="iterative"``).
    threads: HiGHS threads (0 = its default).

    Raises InvalidInputError / InvalidBidError (naming the bid) for bad input,
    NetworkTopologyError for a meshed feeder and NetworkClearingError if HiGHS fails.
    """
    limits = limits or Limits()
    if losses not in ("iterative", "none"):
        raise InvalidInputError(f"losses must be 'iterative' or 'none', not {losses!r}")
    if not (np.isfinite(voll) and voll > 0):
        raise InvalidInputError(f"voll must be a positive number of $/kWh, got {voll}")
    if not (np.isfinite(interval_hours) and interval_hours > 0):
        raise InvalidInputError(f"interval_hours must be > 0, got {interval_hours}")
    if thermal_sides < 4 or thermal_sides % 2:
        raise InvalidInputError(f"thermal_sides must be an even number ≥ 4, got {thermal_sides}")
    if ramp_steps < 1:
        raise InvalidInputError(f"ramp_steps must be ≥ 1, got {ramp_steps}")
    if max_iterations < 1:
        raise InvalidInputError(f"max_iterations must be ≥ 1, got {max_iterations}")
    net = radial(feeder)
    prob = _problem(
        net,
        book,
        bus,
        wholesale_price,
        limits,
        storage,
        fixed_load_kw,
        fixed_load_kvar,
        price_taking,
        power_factor,
        interval_hours,
        voll,
        thermal_sides,
        ramp_steps,
    )
    opts = _Options(losses, max_iterations, tol_pu, verify, threads)
    if net.roots.size > 1 and prob.price is not None:
        return _clear_by_source(prob, opts)
    return _clear(prob, opts)


@dataclass(frozen=True)
class _Options:
    losses: str
    max_iterations: int
    tol_pu: float
    verify: bool
    threads: int


def _clear(prob: _Problem, opts: _Options) -> NetworkClearing:
    """Clear one problem: the loss passes, each with its rounds of monitoring."""
    net = prob.net
    cols = _columns(prob)
    lin = lossless(net, prob.T)
    passes = 1 if opts.losses == "none" else opts.max_iterations
    converged = opts.losses == "none"
    sol: _Solution | None = None
    ac: PowerFlowResult | None = None
    err: FloatArray | None = None
    lim = prob.limits
    band = (np.full((prob.T, net.n), lim.v_min_pu**2), np.full((prob.T, net.n), lim.v_max_pu**2))
    it = 0
    for it in range(1, passes + 1):  # a handful of LP passes (loss iteration)
        sol = _solve(prob, cols, lin, opts.threads, sol, band)
        if not (opts.verify or opts.losses == "iterative"):
            break
        try:
            ac = _ac(prob, sol)
        except PowerFlowError:  # the AC power flow cannot verify this dispatch
            ac, err, converged = None, None, False
            break
        err = np.abs(sol.vm - ac.vm_pu[:, net.bus]).max(axis=1, initial=0.0)
        if opts.losses == "none":
            break
        if it > 1 and float(err.max(initial=0.0)) <= opts.tol_pu:
            converged = True
            break
        if it >= _TIGHTEN_FROM:  # not settling: keep the LP inside the band by the AC gap
            gap = sol.v - ac.vm_pu[:, net.bus] ** 2  # LinDistFlow above AC: AC is lower
            band = (np.maximum(band[0], lim.v_min_pu**2 + gap), band[1])
            band = (band[0], np.minimum(band[1], lim.v_max_pu**2 + gap))
        if it < passes:
            lin = linearise(net, ac)
    assert sol is not None
    return _result(prob, cols, sol, ac, err, it, converged)


# --- areas below different sources are independent at a fixed wholesale price ------------


def _clear_by_source(prob: _Problem, opts: _Options) -> NetworkClearing:
    """Clear every source's area on its own (in parallel threads) and merge the results.

    At a fixed wholesale price nothing couples the areas fed by different sources: the
    objective and every constraint (export limits are per source, devices sit in one area)
    separate, so this is the same optimum as the joint LP, found faster."""
    R = prob.net.roots.size
    subs = [_sub_problem(prob, r) for r in range(R)]
    workers = min(R, os.cpu_count() or 1)
    inner = replace(opts, threads=1 if workers > 1 else opts.threads)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda sub: _clear(sub[0], inner), subs))
    return _merge(prob, subs, results)


@dataclass(frozen=True)
class _Area:
    """Where a source's area sits in the whole feeder."""

    bus: IntArray  # feeder bus position of each bus of the area's feeder
    branch: IntArray  # feeder branch position of each branch of the area's feeder
    source: int  # row in feeder.sources
    bids: IntArray  # the area's bids (positions in the book)
    devices: IntArray  # the area's storage devices


def _sub_problem(prob: _Problem, r: int) -> tuple[_Problem, _Area]:
    """The part of ``prob`` below the ``r``-th source, on a feeder of its own."""
    net = prob.net
    feeder = net.feeder
    in_area = net.root_pos == r
    buses = np.sort(net.bus[in_area])
    bmap = np.full(feeder.n_bus, -1, dtype=np.int64)
    bmap[buses] = np.arange(buses.size)
    br = feeder.branches
    fb = br["from_bus"].to_numpy(dtype=np.int64)
    tb = br["to_bus"].to_numpy(dtype=np.int64)
    keep = np.flatnonzero((bmap[fb] >= 0) & (bmap[tb] >= 0))
    branches = br.iloc[keep].reset_index(drop=True)
    branches["from_bus"] = bmap[fb[keep]]
    branches["to_bus"] = bmap[tb[keep]]
    is_trafo = (br["kind"].to_numpy() == "trafo")[keep]
    transformers = feeder.transformers.loc[keep[is_trafo]].copy()
    transformers.index = pd.Index(np.flatnonzero(is_trafo))
    src_row = int(net.source_row[net.roots[r]])
    sources = feeder.sources.iloc[[src_row]].reset_index(drop=True)
    sources["bus"] = bmap[sources["bus"].to_numpy(dtype=np.int64)]

    def attached(df: pd.DataFrame) -> pd.DataFrame:
        pos = bmap[df["bus"].to_numpy(dtype=np.int64)]
        out = df[pos >= 0].reset_index(drop=True)
        out["bus"] = pos[pos >= 0]
        return out

    sub_feeder = Feeder(
        name=f"{feeder.name}[{sources['name'].iloc[0]}]",
        buses=feeder.buses.iloc[buses].reset_index(drop=True),
        branches=branches,
        transformers=transformers,
        sources=sources,
        loads=attached(feeder.loads),
        sgens=attached(feeder.sgens),
        base_kva=feeder.base_kva,
        f_hz=feeder.f_hz,
    )
    sub = radial(sub_feeder)
    e_map = np.full(net.n, -1, dtype=np.int64)  # whole-feeder e → area e
    e_area = np.flatnonzero(in_area)
    e_map[e_area] = sub.index[bmap[net.bus[e_area]]]
    cols_e = e_area[np.argsort(e_map[e_area])]  # whole-feeder e in area e order

    bids = np.flatnonzero(net.root_pos[prob.bid_e] == r)
    bid_new = np.full(prob.n_bids, -1, dtype=np.int64)
    bid_new[bids] = np.arange(bids.size)
    segs = np.flatnonzero(bid_new[prob.seg_bid] >= 0)
    st = prob.storage
    devices = np.zeros(0, dtype=np.int64)
    sub_st = None
    if st is not None:
        devices = np.flatnonzero(net.root_pos[st.e] == r)
        sub_st = _Storage(
            e=e_map[st.e[devices]],
            ch_max=st.ch_max[:, devices],
            dis_max=st.dis_max[:, devices],
            cap=st.cap[devices],
            soc0=st.soc0[devices],
            soc_min=st.soc_min[devices],
            eta_c=st.eta_c[devices],
            eta_d=st.eta_d[devices],
            target=st.target[:, devices],
            cost=st.cost[devices],
        )
    sub_prob = replace(
        prob,
        net=sub,
        n_bids=int(bids.size),
        bid_e=e_map[prob.bid_e[bids]],
        bid_base=prob.bid_base[bids],
        bid_tan=prob.bid_tan[bids],
        bid_iv=prob.bid_iv[bids],
        seg_bid=bid_new[prob.seg_bid[segs]],
        seg_price=prob.seg_price[segs],
        seg_ub=prob.seg_ub[segs],
        price_taking=prob.price_taking[bids],
        fixed_p=prob.fixed_p[:, cols_e],
        fixed_q=prob.fixed_q[:, cols_e],
        storage=sub_st,
    )
    return sub_prob, _Area(buses, keep, src_row, bids, devices)


def _merge(
    prob: _Problem, subs: list[tuple[_Problem, _Area]], parts: list[NetworkClearing]
) -> NetworkClearing:
    """One result for the whole feeder from the results of its areas."""
    feeder = prob.net.feeder
    T, nb, nbr = prob.T, feeder.n_bus, feeder.n_branch
    n_dev = prob.storage.n if prob.storage is not None else 0
    areas = [area for _, area in subs]

    def per(kind: str, name: str, fill: float = np.nan) -> FloatArray:
        size = {"bus": nb, "branch": nbr, "dev": n_dev}[kind]
        out = np.full((T, size), fill)
        for area, res in zip(areas, parts, strict=True):
            idx = {"bus": area.bus, "branch": area.branch, "dev": area.devices}[kind]
            out[:, idx] = getattr(res, name)
        return out

    awards = np.zeros(prob.n_bids)
    for area, res in zip(areas, parts, strict=True):
        awards[area.bids] = res.awards
    rank = {OPTIMAL: 0, SHED: 1, INFEASIBLE: 2}
    worst = np.max([[rank[str(s)] for s in res.status] for res in parts], axis=0)
    status = np.array([OPTIMAL, SHED, INFEASIBLE], dtype="<U10")[worst]
    ac = _merge_ac(feeder, areas, parts)
    errs = [res.voltage_error_pu for res in parts]
    err = None if any(e is None for e in errs) else np.max(np.array(errs), axis=0)
    return NetworkClearing(
        status=status,
        dlmp=per("bus", "dlmp"),
        energy=per("bus", "energy"),
        loss=per("bus", "loss"),
        congestion=per("bus", "congestion"),
        voltage=per("bus", "voltage"),
        dlmp_q=per("bus", "dlmp_q"),
        awards=awards,
        interval=prob.bid_iv,
        bid_bus=prob.net.bus[prob.bid_e],
        voltage_pu=per("bus", "voltage_pu"),
        flow_p_kw=per("branch", "flow_p_kw"),
        flow_q_kvar=per("branch", "flow_q_kvar"),
        substation_import_kw=np.sum([r.substation_import_kw for r in parts], axis=0),
        losses_kw=np.sum([r.losses_kw for r in parts], axis=0),
        shed_kw=per("bus", "shed_kw", 0.0),
        curtailed_kw=per("bus", "curtailed_kw", 0.0),
        net_load_kw=per("bus", "net_load_kw", 0.0),
        net_load_kvar=per("bus", "net_load_kvar", 0.0),
        storage_charge_kw=per("dev", "storage_charge_kw"),
        storage_discharge_kw=per("dev", "storage_discharge_kw"),
        storage_soc_kwh=per("dev", "storage_soc_kwh"),
        storage_unmet_kwh=per("dev", "storage_unmet_kwh"),
        welfare=np.sum([r.welfare for r in parts], axis=0),
        iterations=max(r.iterations for r in parts),
        converged=all(r.converged for r in parts),
        bus_names=feeder.bus_names,
        ac=ac,
        ac_voltage_pu=None if ac is None else ac.vm_pu,
        voltage_error_pu=err,
        violations=None if ac is None else check_limits(feeder, ac, prob.limits),
    )


def _merge_ac(
    feeder: Feeder, areas: list[_Area], parts: list[NetworkClearing]
) -> PowerFlowResult | None:
    """The AC power flows of the areas as one result for the whole feeder."""
    acs = [r.ac for r in parts]
    if any(ac is None for ac in acs):
        return None
    T = parts[0].n_intervals
    nb, nbr, ns = feeder.n_bus, feeder.n_branch, len(feeder.sources)
    arrays = {
        "vm_pu": np.full((T, nb), np.nan),
        "va_degree": np.full((T, nb), np.nan),
        "p_from_kw": np.zeros((T, nbr)),
        "q_from_kvar": np.zeros((T, nbr)),
        "p_to_kw": np.zeros((T, nbr)),
        "q_to_kvar": np.zeros((T, nbr)),
        "loading_percent": np.full((T, nbr), np.nan),
        "source_p_kw": np.zeros((T, ns)),
        "source_q_kvar": np.zeros((T, ns)),
    }
    where = {"vm_pu": "bus", "va_degree": "bus", "source_p_kw": "src", "source_q_kvar": "src"}
    for area, ac in zip(areas, acs, strict=True):
        idx = {"bus": area.bus, "src": np.array([area.source]), "branch": area.branch}
        for name, arr in arrays.items():
            arr[:, idx[where.get(name, "branch")]] = getattr(ac, name)
    return PowerFlowResult(
        feeder_name=feeder.name,
        time=pd.RangeIndex(T),
        bus_names=feeder.bus_names,
        branch_names=feeder.branch_names,
        source_names=[str(x) for x in feeder.sources["name"]],
        losses_kw=np.sum([ac.losses_kw for ac in acs if ac is not None], axis=0),
        **arrays,
    )


# --- preparing the inputs -----------------------------------------------------------------


def _problem(
    net: RadialNetwork,
    book: Book,
    bus: ArrayLike,
    wholesale: ArrayLike | Curves,
    limits: Limits,
    storage: StorageFleet | None,
    fixed_p: ArrayLike | None,
    fixed_q: ArrayLike | None,
    price_taking: ArrayLike | None,
    power_factor: ArrayLike,
    dt: float,
    voll: float,
    thermal_sides: int,
    ramp_steps: int,
) -> _Problem:
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
    st = _storage(net, storage, T) if storage is not None else None
    return _Problem(
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
        price_taking=pt,
        fixed_p=fp[:, net.bus],
        fixed_q=fq[:, net.bus],
        price=price,
        ws_iv=ws_iv,
        ws_price=ws_price,
        ws_ub=ws_ub,
        ws_base=ws_base,
        storage=st,
        thermal_sides=thermal_sides,
    )


def _bus_positions(feeder: Feeder, bus: ArrayLike, n: int, what: str) -> tuple[IntArray, int]:
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
    pos, bad = _bus_positions(net.feeder, bus, len(book), "bids")
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


def _storage(net: RadialNetwork, fleet: StorageFleet, T: int) -> _Storage:
    n = fleet.n
    pos, bad = _bus_positions(net.feeder, fleet.bus, n, "storage devices")
    ids = np.asarray(fleet.ids).ravel() if fleet.ids is not None else np.arange(n)

    def name(i: int) -> object:
        return plain(ids[i])

    if bad >= 0:
        raise InvalidInputError(
            f"storage device {name(bad)!r}: feeder has no bus "
            f"{plain(np.asarray(fleet.bus).ravel()[bad])!r}"
        )
    e = net.index[pos]
    if (e < 0).any():
        i = int(np.argmax(e < 0))
        raise InvalidInputError(f"storage device {name(i)!r}: bus is not connected to a source")

    def vec(v: ArrayLike, what: str, lo: float = 0.0) -> FloatArray:
        a = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
        bad_ = ~np.isfinite(a) | (a < lo)
        if bad_.any():
            i = int(np.argmax(bad_))
            raise InvalidInputError(f"storage device {name(i)!r}: {what} = {a[i]} is invalid")
        return a

    ch = vec(fleet.charge_kw, "charge_kw")
    dis = vec(fleet.discharge_kw if fleet.discharge_kw is not None else ch, "discharge_kw")
    cap = vec(fleet.capacity_kwh, "capacity_kwh")
    soc0 = vec(fleet.soc_kwh, "soc_kwh")
    smin = vec(fleet.soc_min_kwh, "soc_min_kwh")
    eta_c = vec(fleet.eta_charge, "eta_charge", 1e-9)
    eta_d = vec(fleet.eta_discharge, "eta_discharge", 1e-9)
    cost = vec(fleet.cost_per_kwh, "cost_per_kwh")
    for what, arr in (("eta_charge", eta_c), ("eta_discharge", eta_d)):
        if (arr > 1).any():
            i = int(np.argmax(arr > 1))
            raise InvalidInputError(f"storage device {name(i)!r}: {what} = {arr[i]} > 1")
    bad_soc = (soc0 > cap) | (smin > cap) | (soc0 < smin)
    if bad_soc.any():
        i = int(np.argmax(bad_soc))
        raise InvalidInputError(
            f"storage device {name(i)!r}: need soc_min_kwh ≤ soc_kwh ≤ capacity_kwh "
            f"({smin[i]} ≤ {soc0[i]} ≤ {cap[i]})"
        )
    avail = (
        np.ones((T, n), dtype=bool)
        if fleet.available is None
        else np.asarray(fleet.available, dtype=bool)
    )
    if avail.shape != (T, n):
        raise InvalidInputError(f"storage available has shape {avail.shape}, expected {(T, n)}")
    target = (
        np.full((T, n), np.nan)
        if fleet.soc_target_kwh is None
        else np.asarray(fleet.soc_target_kwh, dtype=np.float64)
    )
    if target.shape != (T, n):
        raise InvalidInputError(
            f"storage soc_target_kwh has shape {target.shape}, expected {(T, n)}"
        )
    if (target > cap).any():
        t, i = (int(v[0]) for v in np.nonzero(target > cap))
        raise InvalidInputError(
            f"storage device {name(i)!r}: target {target[t, i]} kWh in interval {t} exceeds "
            f"its capacity {cap[i]} kWh"
        )
    return _Storage(
        e=e.astype(np.int64),
        ch_max=ch * avail,
        dis_max=dis * avail,
        cap=cap,
        soc0=soc0,
        soc_min=smin,
        eta_c=eta_c,
        eta_d=eta_d,
        target=target,
        cost=cost,
    )


# --- the LP -------------------------------------------------------------------------------


@dataclass
class _Cols:
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
    w: int
    ws: int
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


def _columns(prob: _Problem) -> _Cols:
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
    return _Cols(
        lo=c.cat("lo"),
        hi=c.cat("hi"),
        cost=c.cat("cost"),
        iv=c.cat("iv", np.int64),
        e=col_e,
        aP=c.cat("aP"),
        aQ=c.cat("aQ"),
        w=cw,
        ws=cws,
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


def _net_load(cols: _Cols, x: FloatArray, T: int, E: int) -> tuple[FloatArray, FloatArray]:
    """Net load per (interval, energised bus) for column values ``x`` (kW, kvar)."""
    j = cols.inj
    key = cols.iv[j] * E + cols.e[j]
    p = cols.p_fixed + np.bincount(key, weights=cols.aP[j] * x[j], minlength=T * E).reshape(T, E)
    q = cols.q_fixed + np.bincount(key, weights=cols.aQ[j] * x[j], minlength=T * E).reshape(T, E)
    return p, q


def _thermal_limit(prob: _Problem, lin: Linearisation) -> FloatArray:
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
    prob: _Problem,
    cols: _Cols,
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
class _Solution:
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


def _highs(lp: highspy.HighsLp, basis: Any, threads: int) -> tuple[bool, highspy.Highs]:
    """Solve with HiGHS from ``basis`` (if any); (True if optimal / False if infeasible)."""
    h = highspy.Highs()
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


def _solve(
    prob: _Problem,
    cols: _Cols,
    lin: Linearisation,
    threads: int,
    previous: _Solution | None,
    band: tuple[FloatArray, FloatArray],
) -> _Solution:
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
            return _Solution(
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


# --- results ------------------------------------------------------------------------------


def _ac(prob: _Problem, sol: _Solution) -> PowerFlowResult:
    """AC power flow (power-grid-model) of the cleared net load."""
    feeder = prob.net.feeder
    P = np.zeros((prob.T, feeder.n_bus))
    Q = np.zeros((prob.T, feeder.n_bus))
    P[:, prob.net.bus] = sol.p
    Q[:, prob.net.bus] = sol.q
    return run_powerflow(feeder, Injections(P, Q))


def _result(
    prob: _Problem,
    cols: _Cols,
    sol: _Solution,
    ac: PowerFlowResult | None,
    err: FloatArray | None,
    iterations: int,
    converged: bool,
) -> NetworkClearing:
    net, T, E = prob.net, prob.T, prob.net.n
    feeder = net.feeder
    nb = feeder.n_bus
    x, yr, yc, sk, lay = sol.x, sol.row_dual, sol.col_dual, sol.sk, sol.lay
    roots = net.roots
    nt, ne = sk.node_t, sk.node_e
    root = net.parent[ne] < 0

    # Right-hand sides of Mᵀy = g at the network variables, split by the kind of row.
    energy = -yr[:T]  # duals of the link rows: the marginal wholesale price
    gP_e = np.zeros((T, E))
    gP_e[:, roots] = energy[:, None]
    gP_c = np.zeros((T, E))
    gQ_c = np.zeros((T, E))
    gv = np.zeros((T, E))
    P_col, Q_col, V_col = lay.node_col, lay.node_col + 1, lay.node_col + 2
    np.subtract.at(gP_c, (nt[root], ne[root]), yc[P_col[root]])  # export limit
    np.subtract.at(gv, (nt[~root], ne[~root]), yc[V_col[~root]])  # voltage band
    theta = 2 * np.pi * sk.th_k / prob.thermal_sides
    yth = yr[lay.th_row]
    np.subtract.at(gP_c, (sk.th_t, sk.th_e), yth * np.cos(theta))
    np.subtract.at(gQ_c, (sk.th_t, sk.th_e), yth * np.sin(theta))
    del Q_col
    zero = np.zeros((T, E))
    with_loss, q_e = adjoint_solve(net, sol.lin, gP_e, zero, zero)
    congestion, q_c = adjoint_solve(net, sol.lin, gP_c, gQ_c, zero)
    voltage, q_v = adjoint_solve(net, sol.lin, zero, zero, gv)
    loss = with_loss - energy[:, None]
    dlmp = with_loss + congestion + voltage

    # Shedding, curtailment (incl. bids at ±VOLL), storage, status.
    shed = np.zeros((T, E))
    curt = np.zeros((T, E))
    np.add.at(shed, cols.shed_te, x[cols.shed : cols.shed + cols.shed_te[0].size])
    np.add.at(curt, cols.curt_te, x[cols.curt : cols.curt + cols.curt_te[0].size])
    nseg = prob.seg_bid.size
    y = x[cols.seg : cols.seg + nseg]
    if nseg:
        skey = (prob.bid_iv * E + prob.bid_e)[prob.seg_bid]
        unserved = np.where(prob.seg_price >= prob.voll, prob.seg_ub - y, 0.0)
        unsold = np.where(prob.seg_price <= -prob.voll, y, 0.0)
        shed += np.bincount(skey, weights=unserved, minlength=T * E).reshape(T, E)
        curt += np.bincount(skey, weights=unsold, minlength=T * E).reshape(T, E)
    awards = prob.bid_base + np.bincount(prob.seg_bid, weights=y, minlength=prob.n_bids)
    if prob.storage is not None:
        n = prob.storage.n
        ch = x[cols.ch : cols.ch + T * n].reshape(T, n)
        dis = x[cols.dis : cols.dis + T * n].reshape(T, n)
        soc = x[cols.soc : cols.soc + T * n].reshape(T, n)
        unmet = np.zeros((T, n))
        unmet[cols.unmet_tn] = x[cols.unmet : cols.unmet + cols.unmet_tn[0].size]
    else:
        ch = dis = soc = unmet = np.zeros((T, 0))
    status = np.full(T, OPTIMAL, dtype="<U10")
    slack = (shed > _SLACK_TOL).any(axis=1) | (curt > _SLACK_TOL).any(axis=1)
    status[slack | (unmet > _SLACK_TOL).any(axis=1)] = SHED
    if sol.soft:
        reg = x[lay.node_col + 3] + x[lay.node_col + 4]
        status[np.unique(nt[reg > 1e-9])] = INFEASIBLE
    bad = status == INFEASIBLE

    def full(a: FloatArray, nan_bad: bool = True) -> FloatArray:
        out = np.full((T, nb), np.nan)
        out[:, net.bus] = a
        if nan_bad:
            out[bad] = np.nan
        return out

    flow_p = np.full((T, feeder.n_branch), np.nan)
    flow_q = np.full((T, feeder.n_branch), np.nan)
    nr = np.flatnonzero(net.nonroot)
    sign = np.where(net.forward[nr], 1.0, -1.0)
    flow_p[:, net.branch[nr]] = sol.P[:, nr] * sign
    flow_q[:, net.branch[nr]] = sol.Q[:, nr] * sign
    imports = sol.P[:, roots].sum(axis=1)
    welfare = -np.bincount(cols.iv, weights=cols.cost * x[: cols.n], minlength=T).astype(np.float64)
    return NetworkClearing(
        status=status,
        dlmp=full(dlmp),
        energy=full(np.broadcast_to(energy[:, None], (T, E))),
        loss=full(loss),
        congestion=full(congestion),
        voltage=full(voltage),
        dlmp_q=full(q_e + q_c + q_v),
        awards=awards,
        interval=prob.bid_iv,
        bid_bus=net.bus[prob.bid_e],
        voltage_pu=full(sol.vm, nan_bad=False),
        flow_p_kw=flow_p,
        flow_q_kvar=flow_q,
        substation_import_kw=imports,
        losses_kw=imports - sol.p.sum(axis=1),
        shed_kw=np.nan_to_num(full(shed, nan_bad=False)),
        curtailed_kw=np.nan_to_num(full(curt, nan_bad=False)),
        net_load_kw=np.nan_to_num(full(sol.p, nan_bad=False)),
        net_load_kvar=np.nan_to_num(full(sol.q, nan_bad=False)),
        storage_charge_kw=ch,
        storage_discharge_kw=dis,
        storage_soc_kwh=soc,
        storage_unmet_kwh=unmet,
        welfare=welfare,
        iterations=iterations,
        converged=converged,
        bus_names=feeder.bus_names,
        ac=ac,
        ac_voltage_pu=None if ac is None else ac.vm_pu,
        voltage_error_pu=err,
        violations=None if ac is None else check_limits(feeder, ac, prob.limits),
    )
