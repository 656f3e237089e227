"""Network-constrained DSO clearing with distribution locational marginal prices (DLMPs).

The DSO clears its area by maximising welfare over every bid curve placed at its bus,
subject to a LinDistFlow model of the radial feeder, for one interval or a horizon of
intervals coupled by storage and EV energy. The problem is a linear programme solved with
HiGHS (``highspy``); the DLMPs come from its duals.

Formulation (per interval ``t``; kW, kvar, $/kWh, pu)
-----------------------------------------------------
*Network model.* LinDistFlow (Baran–Wu) on the radial feeder
(:mod:`transactive.grid.lindistflow`): per energised bus ``e`` the flow ``P_e, Q_e`` into
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
dispatch is run through the grid's AC power flow (its public API:
:class:`~transactive.grid.powerflow.PowerFlow`, built once per clearing and run once per
pass) and the DistFlow equations are linearised at the AC flows
(:func:`~transactive.grid.lindistflow.linearise`): the loss
``r(P²+Q²)/V²`` of every branch becomes its tangent (matching the AC losses there, shunt and
iron losses included), the ``(r²+x²)·ℓ`` term of the voltage drop its tangent, and the
voltage equation gets the AC residual as a constant, so the AC point satisfies the linear
model exactly and the model is its first-order expansion. The LP is re-solved (from the
previous basis) and the cycle repeats until the LinDistFlow voltages agree with the AC
voltages of the cleared dispatch within ``tol_pu`` (default 1e-4 pu) or ``loss_iterations``
passes (required: the caller chooses the accuracy it pays for) are done; ``converged``
says which. An LP can hop between equally good dispatches (storage shifting between
intervals of nearly the same price), so from the second pass on, where a LinDistFlow
voltage is still above the AC voltage, the band of the next pass is tightened by that gap:
the dispatch stays AC-feasible even when the iteration does not settle.
``losses="none"``: the single lossless pass (pure Baran–Wu LinDistFlow; no AC power flow
is run).

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
(:func:`~transactive.grid.lindistflow.adjoint_solve`), so the components sum to the DLMP
by construction; the tests check the total against an independent branch-flow LP (nodal
balance rows, dense matrices, ``scipy.optimize.linprog``), against the skeleton's own
balance duals and against the prices of the marginal bids. ``dlmp_q`` is the same for
reactive load ($/kvarh); a bid with power factor < 1 is cleared at ``dlmp + tan φ·dlmp_q``.

Verification: this module builds and solves the market LP only. The loss iteration reports
the LinDistFlow-vs-AC voltage gap of the final dispatch it measured
(``voltage_error_pu``); an independent AC check of a result — AC power flow, voltage gap
and AC limit violations — is the grid's :func:`transactive.grid.lindistflow.verify`,
called by whoever needs it: ``verify(feeder, res.net_load_kw, res.net_load_kvar,
res.voltage_pu, limits)``.

Code layout: this module holds the public API, the loss iteration and the results;
:mod:`~transactive.market._network_problem` turns the inputs into LP arrays,
:mod:`~transactive.market._network_lp` builds and solves the LP and
:mod:`~transactive.market._network_areas` splits a problem by source.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from transactive.core.curves import Curves
from transactive.errors import InvalidInputError, PowerFlowError, plain
from transactive.grid.limits import Limits
from transactive.grid.lindistflow import (
    RadialNetwork,
    adjoint_solve,
    linearise,
    lossless,
    radial,
)
from transactive.grid.model import Feeder, Injections
from transactive.grid.powerflow import PowerFlow
from transactive.grid.results import PowerFlowResult
from transactive.market._network_areas import Area, sub_problem
from transactive.market._network_lp import Cols, Solution, columns
from transactive.market._network_lp import solve as _solve  # module-level: tests spy on it
from transactive.market._network_problem import Problem, Storage, bus_positions, prepare
from transactive.market.auction import Book

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
#: Slack (kW, kWh) below which shedding, curtailment or unmet energy counts as zero.
_SLACK_TOL = 1e-6
#: From this loss pass on, a LinDistFlow-vs-AC voltage gap that has not closed tightens the
#: voltage band of the next pass by that gap (an LP can hop between equally good dispatches,
#: e.g. storage schedules, so the fixed point is not always reached).
_TIGHTEN_FROM = 2


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
    voltage_error_pu: T, max |LinDistFlow − AC| voltage of the final dispatch as measured
        by the loss iteration (None with ``losses="none"`` or when the AC power flow did
        not converge); for an AC check use :func:`transactive.grid.lindistflow.verify`.
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
    voltage_error_pu: FloatArray | None = None

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


def clear_network(
    feeder: Feeder,
    book: Book,
    bus: ArrayLike,
    wholesale_price: ArrayLike | Curves,
    *,
    limits: Limits,
    loss_iterations: int,
    storage: StorageFleet | None = None,
    fixed_load_kw: ArrayLike | None = None,
    fixed_load_kvar: ArrayLike | None = None,
    price_taking: ArrayLike | None = None,
    power_factor: ArrayLike = 1.0,
    interval_hours: float = 1.0,
    voll: float = VOLL,
    losses: Literal["iterative", "none"] = "iterative",
    tol_pu: float = 1e-4,
    thermal_sides: int = 16,
    ramp_steps: int = 4,
    threads: int = 0,
) -> NetworkClearing:
    """Clear ``book`` on ``feeder`` subject to the network (see the module docstring).

    bus: bus of every bid (feeder positions or bus names), in the book's order.
    wholesale_price: $/kWh at the substation, scalar or one per interval; or a
        :class:`Curves` with one curve per interval: the upstream market's net curve at the
        substation (− it sells to the DSO, + it buys from it).
    limits: voltage band, loading limits (%) and substation export limit
        (``max_reverse_flow_kw``; None = export allowed).
    loss_iterations: most LP passes of the loss iteration (≥ 1; 1 = the lossless pass
        only, an AC power flow per further pass; ignored with ``losses="none"``).
    storage: batteries / EVs optimised over the horizon.
    fixed_load_kw, fixed_load_kvar: unresponsive net load per bus, shape T × bus or (bus,)
        (+ consumption, − generation), sheddable / curtailable at ``voll``.
    price_taking: per bid, True for an unresponsive (block) bid: cleared at ``±voll``.
    power_factor: per bid or scalar, in (0, 1]; q = p·tan φ.
    interval_hours: length of an interval (h), for the storage energy balance.
    losses: ``"iterative"`` (linearised losses, AC fixed point) or ``"none"`` (lossless).
    tol_pu: LinDistFlow-vs-AC voltage tolerance that ends the loss iteration.
    thermal_sides: sides of the thermal polygon (even, ≥ 4); ramp_steps: steps per ramp.
    threads: HiGHS threads (0 = its default).

    Raises InvalidInputError / InvalidBidError (naming the bid) for bad input,
    NetworkTopologyError for a meshed feeder and NetworkClearingError if HiGHS fails.
    """
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
    if loss_iterations < 1:
        raise InvalidInputError(f"loss_iterations must be ≥ 1, got {loss_iterations}")
    net, pf = _network_of(feeder)
    prob = prepare(
        net,
        book,
        bus,
        wholesale_price,
        limits,
        fixed_load_kw,
        fixed_load_kvar,
        price_taking,
        power_factor,
        interval_hours,
        voll,
        thermal_sides,
        ramp_steps,
    )
    if storage is not None:
        prob.storage = _storage(net, storage, prob.T)
    opts = _Options(losses, loss_iterations, tol_pu, threads)
    if net.roots.size > 1 and prob.price is not None:
        return _clear_by_source(prob, opts)
    return _clear(prob, opts, pf)


#: Radial data and AC power flow of recently cleared feeders (a simulation clears the same
#: few feeders every interval; building them is a third of a small clearing's time).
_NETWORKS: dict[int, tuple[Feeder, RadialNetwork, PowerFlow]] = {}


def _network_of(feeder: Feeder) -> tuple[RadialNetwork, PowerFlow | None]:
    """The radial network of ``feeder`` and its power flow, built once per feeder object."""
    hit = _NETWORKS.get(id(feeder))
    if hit is None or hit[0] is not feeder:
        if len(_NETWORKS) >= 16:
            _NETWORKS.clear()
        net = radial(feeder)
        hit = (feeder, net, PowerFlow(feeder))
        _NETWORKS[id(feeder)] = hit
    return hit[1], hit[2]


@dataclass(frozen=True)
class _Options:
    losses: str
    loss_iterations: int
    tol_pu: float
    threads: int


def _clear(prob: Problem, opts: _Options, powerflow: PowerFlow | None = None) -> NetworkClearing:
    """Clear one problem: the loss passes, each with its rounds of monitoring;
    ``powerflow``: the feeder's AC power flow if already built."""
    net = prob.net
    cols = columns(prob)
    lin = lossless(net, prob.T)
    passes = 1 if opts.losses == "none" else opts.loss_iterations
    converged = opts.losses == "none"
    sol: Solution | None = None
    err: FloatArray | None = None
    # the loss iteration linearises at AC flows: the grid's power flow, built once here
    pf = (powerflow or PowerFlow(net.feeder)) if passes > 1 else None
    lim = prob.limits
    band = (np.full((prob.T, net.n), lim.v_min_pu**2), np.full((prob.T, net.n), lim.v_max_pu**2))
    it = 0
    for it in range(1, passes + 1):  # a handful of LP passes (loss iteration)
        sol = _solve(prob, cols, lin, opts.threads, sol, band)
        if pf is None:  # lossless: one pass, no AC power flow
            break
        try:
            ac = _ac(prob, sol, pf)
        except PowerFlowError:  # the AC power flow cannot linearise this dispatch
            err, converged = None, False
            break
        err = np.abs(sol.vm - ac.vm_pu[:, net.bus]).max(axis=1, initial=0.0)
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
    return _result(prob, cols, sol, err, it, converged)


# --- areas below different sources are independent at a fixed wholesale price ------------


def _clear_by_source(prob: Problem, opts: _Options) -> NetworkClearing:
    """Clear every source's area on its own (in parallel threads) and merge the results.

    At a fixed wholesale price nothing couples the areas fed by different sources: the
    objective and every constraint (export limits are per source, devices sit in one area)
    separate, so this is the same optimum as the joint LP, found faster."""
    R = prob.net.roots.size
    subs = [sub_problem(prob, r) for r in range(R)]
    workers = min(R, os.cpu_count() or 1)
    inner = replace(opts, threads=1 if workers > 1 else opts.threads)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda sub: _clear(sub[0], inner), subs))
    return _merge(prob, subs, results)


def _merge(
    prob: Problem, subs: list[tuple[Problem, Area]], parts: list[NetworkClearing]
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
        voltage_error_pu=err,
    )


# --- validating the storage fleet ---------------------------------------------------------


def _storage(net: RadialNetwork, fleet: StorageFleet, T: int) -> Storage:
    n = fleet.n
    pos, bad = bus_positions(net.feeder, fleet.bus, n, "storage devices")
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
    return Storage(
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


# --- results ------------------------------------------------------------------------------


def _ac(prob: Problem, sol: Solution, pf: PowerFlow) -> PowerFlowResult:
    """AC power flow (the grid's :class:`PowerFlow`) of the cleared net load."""
    feeder = prob.net.feeder
    P = np.zeros((prob.T, feeder.n_bus))
    Q = np.zeros((prob.T, feeder.n_bus))
    P[:, prob.net.bus] = sol.p
    Q[:, prob.net.bus] = sol.q
    return pf.run(Injections(P, Q))


def _result(
    prob: Problem,
    cols: Cols,
    sol: Solution,
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
    P_col, V_col = lay.node_col, lay.node_col + 2
    np.subtract.at(gP_c, (nt[root], ne[root]), yc[P_col[root]])  # export limit
    np.subtract.at(gv, (nt[~root], ne[~root]), yc[V_col[~root]])  # voltage band
    theta = 2 * np.pi * sk.th_k / prob.thermal_sides
    yth = yr[lay.th_row]
    np.subtract.at(gP_c, (sk.th_t, sk.th_e), yth * np.cos(theta))
    np.subtract.at(gQ_c, (sk.th_t, sk.th_e), yth * np.sin(theta))
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
        voltage_error_pu=err,
    )
