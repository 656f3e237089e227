"""AC power flow with power-grid-model: the only module that imports power-grid-model.

:class:`PowerFlow` converts a :class:`Feeder` once to a power-grid-model model (nodes, lines,
links, transformers, sources and one constant-power ``sym_load`` per bus) and then runs any
number of calls on it: :meth:`PowerFlow.run` for time series (every step one scenario of a
batch calculation), :meth:`PowerFlow.screen` and :meth:`PowerFlow.screen_changes` for
what-if scenarios (hosting capacity). :func:`run_powerflow` is a one-call convenience that
builds the model each time. Units are converted at this edge: the platform speaks kW/kvar,
power-grid-model W/var/VA/V.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from power_grid_model import (
    BranchSide,
    ComponentType,
    DatasetType,
    LoadGenType,
    PowerGridModel,
    WindingType,
    initialize_array,
)
from power_grid_model.errors import PowerGridError

from transactive.errors import (
    BalanceError,
    InvalidInputError,
    PowerFlowError,
    UnsupportedComponentError,
)
from transactive.grid.limits import Limits, ViolationAccumulator
from transactive.grid.model import Feeder, Injections
from transactive.grid.results import (
    Keep,
    PowerFlowResult,
    PowerFlowSummary,
    StepStats,
    _ExtremesAccumulator,
)

__all__ = [
    "PowerFlow",
    "Screening",
    "check_energy_balance",
    "run_powerflow",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Source short-circuit power (VA): large enough that the source behaves as an ideal
# voltage source like pandapower's ext_grid (drop across it < 1e-9 pu on these feeders).
SOURCE_SK_VA = 1e15
_BRANCH_ATTRS: list[str] = ["p_from", "q_from", "p_to", "q_to", "i_from", "i_to"]


# -- power-grid-model input ---------------------------------------------------------------
@dataclass(frozen=True)
class PgmNetwork:
    """A power-grid-model model of a feeder plus the id maps to read results back."""

    model: PowerGridModel
    load_ids: np.ndarray  # sym_load id per entry of load_buses
    load_buses: np.ndarray  # bus position of each sym_load
    line_pos: np.ndarray  # branch positions of lines / trafos / switches, in pgm order
    trafo_pos: np.ndarray
    switch_pos: np.ndarray
    trafo_u: np.ndarray  # (n_trafo, 2) rated voltages in V
    trafo_sn: np.ndarray  # rated power in VA
    line_i_n: np.ndarray  # rated current in A


def build_network(
    feeder: Feeder, load_buses: np.ndarray, p_kw: np.ndarray, q_kvar: np.ndarray
) -> PgmNetwork:
    """Build a power-grid-model model with one sym_load per bus in ``load_buses`` at the
    given base injections (net load, kW / kvar)."""
    br = feeder.branches
    kind = br["kind"].to_numpy()
    line_pos = np.flatnonzero(kind == "line")
    trafo_pos = np.flatnonzero(kind == "trafo")
    switch_pos = np.flatnonzero(kind == "switch")
    n = feeder.n_bus
    next_id = n
    data: dict[Any, np.ndarray] = {}

    node = initialize_array(DatasetType.input, ComponentType.node, n)
    node["id"] = np.arange(n)
    node["u_rated"] = feeder.buses["vn_kv"].to_numpy() * 1e3
    data[ComponentType.node] = node

    def branch_ends(arr: np.ndarray, pos: np.ndarray) -> None:
        arr["from_node"] = br["from_bus"].to_numpy()[pos]
        arr["to_node"] = br["to_bus"].to_numpy()[pos]
        arr["from_status"] = br["from_closed"].to_numpy(dtype=np.int8)[pos]
        arr["to_status"] = br["to_closed"].to_numpy(dtype=np.int8)[pos]

    line = initialize_array(DatasetType.input, ComponentType.line, line_pos.size)
    line["id"] = np.arange(next_id, next_id + line_pos.size)
    next_id += line_pos.size
    branch_ends(line, line_pos)
    b_s = br["b_us"].to_numpy()[line_pos] * 1e-6
    g_s = br["g_us"].to_numpy()[line_pos] * 1e-6
    if np.any((g_s != 0) & (b_s == 0)):
        raise UnsupportedComponentError(f"feeder {feeder.name!r}: line with conductance but no C")
    line["r1"] = br["r_ohm"].to_numpy()[line_pos]
    line["x1"] = br["x_ohm"].to_numpy()[line_pos]
    line["c1"] = b_s / (2 * np.pi * feeder.f_hz)
    line["tan1"] = np.divide(g_s, b_s, out=np.zeros_like(g_s), where=b_s != 0)
    line_i_n = br["i_max_a"].to_numpy()[line_pos]
    line["i_n"] = line_i_n
    data[ComponentType.line] = line

    link = initialize_array(DatasetType.input, ComponentType.link, switch_pos.size)
    link["id"] = np.arange(next_id, next_id + switch_pos.size)
    next_id += switch_pos.size
    branch_ends(link, switch_pos)
    data[ComponentType.link] = link

    tp = feeder.transformers.loc[trafo_pos]
    trafo = initialize_array(DatasetType.input, ComponentType.transformer, trafo_pos.size)
    trafo["id"] = np.arange(next_id, next_id + trafo_pos.size)
    next_id += trafo_pos.size
    branch_ends(trafo, trafo_pos)
    u1 = tp["vn_hv_kv"].to_numpy() * 1e3
    u2 = tp["vn_lv_kv"].to_numpy() * 1e3
    sn = tp["sn_kva"].to_numpy() * 1e3
    trafo["u1"], trafo["u2"], trafo["sn"] = u1, u2, sn
    trafo["uk"] = tp["vk_percent"].to_numpy() / 100
    trafo["pk"] = tp["vkr_percent"].to_numpy() / 100 * sn
    trafo["i0"] = tp["i0_percent"].to_numpy() / 100
    trafo["p0"] = tp["pfe_kw"].to_numpy() * 1e3
    clock = np.round(tp["shift_degree"].to_numpy() / 30).astype(np.int64) % 12
    odd = clock % 2 == 1
    trafo["clock"] = clock
    trafo["winding_from"] = np.where(odd, WindingType.delta, WindingType.wye_n)
    trafo["winding_to"] = WindingType.wye_n
    side = tp["tap_side"].to_numpy().astype(str)
    has_tap = np.isin(side, ["hv", "lv"])
    trafo["tap_side"] = np.where(side == "lv", BranchSide.to_side, BranchSide.from_side)
    pos = np.where(has_tap, tp["tap_pos"].to_numpy(), 0).astype(np.int64)
    nom = np.where(has_tap, tp["tap_neutral"].to_numpy(), 0).astype(np.int64)
    trafo["tap_pos"], trafo["tap_nom"] = pos, nom
    trafo["tap_min"] = np.minimum(np.where(has_tap, tp["tap_min"].to_numpy(), 0), pos)
    trafo["tap_max"] = np.maximum(np.where(has_tap, tp["tap_max"].to_numpy(), 0), pos)
    u_tap = np.where(side == "lv", u2, u1)
    trafo["tap_size"] = np.where(has_tap, tp["tap_step_percent"].to_numpy() / 100 * u_tap, 0.0)
    data[ComponentType.transformer] = trafo

    src = feeder.sources
    source = initialize_array(DatasetType.input, ComponentType.source, len(src))
    source["id"] = np.arange(next_id, next_id + len(src))
    next_id += len(src)
    source["node"] = src["bus"].to_numpy()
    source["status"] = 1
    source["u_ref"] = src["vm_pu"].to_numpy()
    source["u_ref_angle"] = np.deg2rad(src["va_degree"].to_numpy())
    source["sk"] = SOURCE_SK_VA
    data[ComponentType.source] = source

    load = initialize_array(DatasetType.input, ComponentType.sym_load, load_buses.size)
    load["id"] = np.arange(next_id, next_id + load_buses.size)
    load["node"] = load_buses
    load["status"] = 1
    load["type"] = LoadGenType.const_power
    load["p_specified"] = p_kw * 1e3
    load["q_specified"] = q_kvar * 1e3
    data[ComponentType.sym_load] = load
    try:
        model = PowerGridModel(data, system_frequency=feeder.f_hz)
    except PowerGridError as exc:
        raise PowerFlowError(
            f"feeder {feeder.name!r}: power-grid-model rejected it: {exc}"
        ) from exc
    return PgmNetwork(
        model=model,
        load_ids=load["id"].copy(),
        load_buses=load_buses,
        line_pos=line_pos,
        trafo_pos=trafo_pos,
        switch_pos=switch_pos,
        trafo_u=np.column_stack([u1, u2]),
        trafo_sn=sn,
        line_i_n=line_i_n,
    )


OUTPUT_ATTRS: dict[ComponentType, list[str] | set[str] | Any] = {
    ComponentType.node: ["u_pu", "u_angle"],
    ComponentType.line: _BRANCH_ATTRS,
    ComponentType.transformer: _BRANCH_ATTRS,
    ComponentType.link: ["p_from", "q_from", "p_to", "q_to"],
    ComponentType.source: ["p", "q"],
}
# keep="summary" needs no angles and no branch reactive power: smaller output buffers
_LEAN_BRANCH_ATTRS = ["p_from", "p_to", "i_from", "i_to"]
LEAN_OUTPUT_ATTRS: dict[ComponentType, list[str] | set[str] | Any] = {
    ComponentType.node: ["u_pu"],
    ComponentType.line: _LEAN_BRANCH_ATTRS,
    ComponentType.transformer: _LEAN_BRANCH_ATTRS,
    ComponentType.link: ["p_from", "p_to"],
    ComponentType.source: ["p", "q"],
}
_FLOW_KEYS: tuple[str, ...] = ("p_from", "q_from", "p_to", "q_to")
#: Chunks of at most this many steps ask power-grid-model for whole output rows.
_ROW_BASED_MAX_STEPS = 64
_ROWS: list[ComponentType] = list(OUTPUT_ATTRS)


def calculate(
    net: PgmNetwork,
    update: dict[Any, Any],
    threads: int = 0,
    continue_on_error: bool = False,
    attrs: dict[ComponentType, list[str] | set[str] | Any] | list[ComponentType] | None = None,
) -> tuple[dict[Any, Any], np.ndarray]:
    """Run one power-grid-model batch (output attributes ``attrs``, default
    :data:`OUTPUT_ATTRS`; a list of component types asks for whole rows); returns
    (output, failed-scenario mask)."""
    n_scen = _n_scenarios(update)
    failed = np.zeros(n_scen, dtype=bool)
    try:
        out = net.model.calculate_power_flow(
            update_data=update,
            output_component_types=OUTPUT_ATTRS if attrs is None else attrs,
            threading=threads,
            error_tolerance=1e-10,
            max_iterations=30,
            continue_on_batch_error=continue_on_error,
        )
    except PowerGridError as exc:
        raise PowerFlowError(f"power flow failed: {exc}") from exc
    err = net.model.batch_error
    if err is not None:
        failed[np.asarray(err.failed_scenarios, dtype=np.int64)] = True
    return out, failed


def _n_scenarios(update: dict[Any, Any]) -> int:
    comp = next(iter(update.values()))
    if isinstance(comp, dict) and "indptr" in comp:
        return int(comp["indptr"].size - 1)
    if isinstance(comp, dict):
        return int(next(iter(comp.values())).shape[0])
    return int(comp.shape[0])


def branch_arrays(
    net: PgmNetwork,
    out: dict[Any, Any],
    n_branch: int,
    keys: Sequence[str] = _FLOW_KEYS,
) -> dict[str, np.ndarray]:
    """Assemble branch results in feeder branch order: the flows named in ``keys`` (kW,
    kvar) and ``loading`` (%)."""
    steps = out[ComponentType.node]["u_pu"].shape[0]
    res = {k: np.zeros((steps, n_branch)) for k in keys}
    loading = np.full((steps, n_branch), np.nan)
    for comp, pos in (
        (ComponentType.line, net.line_pos),
        (ComponentType.transformer, net.trafo_pos),
        (ComponentType.link, net.switch_pos),
    ):
        if pos.size == 0:
            continue
        for k in res:
            res[k][:, pos] = out[comp][k] * 1e-3
    if net.line_pos.size:
        o = out[ComponentType.line]
        with np.errstate(divide="ignore", invalid="ignore"):
            loading[:, net.line_pos] = np.maximum(o["i_from"], o["i_to"]) / net.line_i_n * 100
    if net.trafo_pos.size:
        o = out[ComponentType.transformer]
        s_from = o["i_from"] * net.trafo_u[:, 0]
        s_to = o["i_to"] * net.trafo_u[:, 1]
        loading[:, net.trafo_pos] = np.sqrt(3) * np.maximum(s_from, s_to) / net.trafo_sn * 100
    res["loading"] = loading
    return res


@dataclass
class _Chunk:
    """Results of one chunk of steps in feeder order (pu, degrees, kW, kvar, %), with NaN
    voltages at dead buses and NaN loading at branches open at both ends."""

    vm: np.ndarray
    va: np.ndarray | None
    flows: dict[str, np.ndarray]
    source_p: np.ndarray
    source_q: np.ndarray
    losses: np.ndarray


@dataclass(frozen=True)
class _Names:
    """Element names of a feeder, computed once per :class:`PowerFlow`."""

    feeder: str
    bus: list[str]
    branch: list[str]
    source: list[str]


class _FullSink:
    """Collects every chunk into full time × element arrays (keep="full")."""

    def __init__(self, steps: int, nb: int, nbr: int, ns: int) -> None:
        self.vm, self.va = np.empty((steps, nb)), np.empty((steps, nb))
        self.flows = {k: np.empty((steps, nbr)) for k in (*_FLOW_KEYS, "loading")}
        self.sp, self.sq, self.losses = (
            np.empty((steps, ns)),
            np.empty((steps, ns)),
            np.empty(steps),
        )

    def add(self, sl: slice, c: _Chunk) -> None:
        self.vm[sl] = c.vm
        self.va[sl] = c.va
        for k, arr in self.flows.items():
            arr[sl] = c.flows[k]
        self.sp[sl], self.sq[sl], self.losses[sl] = c.source_p, c.source_q, c.losses

    def result(self, names: _Names, time: pd.Index) -> PowerFlowResult:
        return PowerFlowResult(
            feeder_name=names.feeder,
            time=time,
            bus_names=names.bus,
            branch_names=names.branch,
            source_names=names.source,
            vm_pu=self.vm,
            va_degree=self.va,
            p_from_kw=self.flows["p_from"],
            q_from_kvar=self.flows["q_from"],
            p_to_kw=self.flows["p_to"],
            q_to_kvar=self.flows["q_to"],
            loading_percent=self.flows["loading"],
            source_p_kw=self.sp,
            source_q_kvar=self.sq,
            losses_kw=self.losses,
        )


class _SummarySink:
    """Reduces every chunk to per-step summaries, per-element extremes and per-element
    limit-violation statistics, then drops it (keep="summary")."""

    def __init__(self, feeder: Feeder, names: _Names, limits: Limits) -> None:
        self.limits = limits
        self.extremes = _ExtremesAccumulator(feeder.n_bus, feeder.n_branch)
        self.violations = ViolationAccumulator(
            feeder, limits, names.bus, names.branch, names.source
        )
        self.stats: list[StepStats] = []
        self.sp: list[np.ndarray] = []
        self.sq: list[np.ndarray] = []
        self.losses: list[np.ndarray] = []

    def add(self, sl: slice, c: _Chunk) -> None:
        loading = c.flows["loading"]
        self.stats.append(StepStats.of(c.vm, loading))
        self.extremes.add(sl.start, c.vm, loading)
        self.sp.append(c.source_p)
        self.sq.append(c.source_q)
        self.losses.append(c.losses)
        self.violations.add(sl.start, c.vm, loading, c.source_p)

    def result(self, names: _Names, time: pd.Index) -> PowerFlowSummary:
        return PowerFlowSummary(
            feeder_name=names.feeder,
            time=time,
            bus_names=names.bus,
            branch_names=names.branch,
            source_names=names.source,
            source_p_kw=np.concatenate(self.sp),
            source_q_kvar=np.concatenate(self.sq),
            losses_kw=np.concatenate(self.losses),
            stats=StepStats.concat(self.stats),
            element_extremes=self.extremes.result(),
            violation_summary=self.violations.result(time),
            limits=self.limits,
        )


@dataclass(frozen=True)
class Screening:
    """Results of what-if scenarios (:meth:`PowerFlow.screen`, :meth:`PowerFlow.screen_changes`),
    scenario × element: ``vm_pu`` (pu, NaN at buses not connected to a source),
    ``loading_percent`` (%, NaN where undefined), ``source_p_kw`` (kW imported per source)
    and ``converged`` (False: the scenario's power flow failed, its rows are meaningless)."""

    vm_pu: FloatArray
    loading_percent: FloatArray
    source_p_kw: FloatArray
    converged: BoolArray


class PowerFlow:
    """The AC power flow of one feeder, built once and run many times.

    ``PowerFlow(feeder)`` converts the feeder to a power-grid-model model with one
    constant-power load per bus (at ``base``, a one-step :class:`Injections`, default none);
    every call only updates the loads. Use one per feeder for repeated calls (e.g. one step
    per simulated interval): it saves the conversion that :func:`run_powerflow` makes on
    every call. Calls do not change the model, so results never depend on earlier calls."""

    def __init__(self, feeder: Feeder, base: Injections | None = None) -> None:
        self.feeder = feeder
        n = feeder.n_bus
        if base is not None and (base.n_step != 1 or base.p_kw.shape[1] != n):
            raise InvalidInputError(f"base injections must have shape (1, {n}) (one step)")
        p0 = np.zeros(n) if base is None else base.p_kw[0]
        q0 = np.zeros(n) if base is None else base.q_kvar[0]
        self._p0, self._q0 = p0.copy(), q0.copy()
        self._base_buses = np.flatnonzero((p0 != 0) | (q0 != 0))
        self._net = build_network(feeder, np.arange(n, dtype=np.int64), p0, q0)
        self._names = _Names(
            feeder.name,
            feeder.bus_names,
            feeder.branch_names,
            [str(x) for x in feeder.sources["name"]],
        )
        self._dead = ~feeder.topology.energized
        br = feeder.branches
        self._open = ~(br["from_closed"] | br["to_closed"]).to_numpy(dtype=bool)

    @overload
    def run(
        self,
        injections: Injections,
        *,
        keep: Literal["full"] = ...,
        limits: None = ...,
        threads: int = ...,
        chunk_size: int = ...,
        check_balance: bool = ...,
    ) -> PowerFlowResult: ...

    @overload
    def run(
        self,
        injections: Injections,
        *,
        keep: Literal["summary"],
        limits: Limits,
        threads: int = ...,
        chunk_size: int = ...,
        check_balance: bool = ...,
    ) -> PowerFlowSummary: ...

    def run(
        self,
        injections: Injections,
        *,
        keep: Keep = "full",
        limits: Limits | None = None,
        threads: int = 0,
        chunk_size: int = 4096,
        check_balance: bool = True,
    ) -> PowerFlowResult | PowerFlowSummary:
        """AC power flow for every time step of ``injections`` (per-bus net load, kW/kvar,
        + consumption, − generation, shape time × bus).

        Runs power-grid-model batch calculations (Newton-Raphson, ``threads`` worker
        threads, 0 = all cores) in chunks of ``chunk_size`` steps. ``keep="full"`` returns
        every time × element array (:class:`PowerFlowResult`, ~7 × 8 bytes × steps ×
        elements); ``keep="summary"`` reduces each chunk as it is computed and returns a
        :class:`PowerFlowSummary` (per-step summaries, per-element extremes and the
        per-element ``violation_summary`` of ``limits``, required), so memory is bounded by
        the chunk plus a few values per step and per element. Raises PowerFlowError if a
        step does not converge and BalanceError if substation import ≠ load − generation +
        losses."""
        feeder = self.feeder
        if injections.p_kw.shape[1] != feeder.n_bus:
            raise InvalidInputError(
                f"injections have {injections.p_kw.shape[1]} bus columns, feeder "
                f"{feeder.name!r} has {feeder.n_bus} buses"
            )
        if chunk_size < 1:
            raise InvalidInputError(f"chunk_size must be ≥ 1, got {chunk_size}")
        if keep not in ("full", "summary"):
            raise InvalidInputError(f"keep must be 'full' or 'summary', got {keep!r}")
        if keep == "full" and limits is not None:
            raise InvalidInputError(
                "limits apply to keep='summary' only; on a full result call check_limits"
            )
        if keep == "summary" and limits is None:
            raise InvalidInputError("keep='summary' checks limits: pass limits=Limits(...)")
        p, q = injections.p_kw, injections.q_kvar
        # update only the loads that carry an injection now or in the base (no p != 0 copy)
        live = np.any(p, axis=0) | np.any(q, axis=0)
        live[self._base_buses] = True
        buses = np.flatnonzero(live)
        if buses.size == 0:  # keep one (zero) load so every step is a batch scenario
            buses = feeder.source_buses[:1]
        net = self._net
        steps = injections.n_step
        time = injections.time if injections.time is not None else pd.RangeIndex(steps)
        sink: _FullSink | _SummarySink
        if keep == "full":
            sink = _FullSink(steps, feeder.n_bus, feeder.n_branch, len(feeder.sources))
            attrs, keys = OUTPUT_ATTRS, _FLOW_KEYS
        else:
            assert limits is not None
            sink = _SummarySink(feeder, self._names, limits)
            attrs, keys = LEAN_OUTPUT_ATTRS, ("p_from", "p_to")
        for start in range(0, steps, chunk_size):  # chunks of thousands of steps
            sl = slice(start, min(start + chunk_size, steps))
            update: dict[Any, Any] = {
                ComponentType.sym_load: {
                    "id": np.broadcast_to(net.load_ids[buses], (sl.stop - sl.start, buses.size)),
                    "p_specified": p[sl, buses] * 1e3,
                    "q_specified": q[sl, buses] * 1e3,
                }
            }
            # a few steps: whole rows are cheaper than power-grid-model's per-attribute
            # buffers; many steps: only the attributes needed (smaller output)
            small = sl.stop - sl.start <= _ROW_BASED_MAX_STEPS
            out, _ = calculate(net, update, threads=threads, attrs=_ROWS if small else attrs)
            del update
            node = out[ComponentType.node]
            vm = np.array(node["u_pu"], dtype=np.float64)  # contiguous, owned
            vm[:, self._dead] = np.nan
            va = None
            if keep == "full":
                va = np.rad2deg(node["u_angle"])
                va[:, self._dead] = np.nan
            flows = branch_arrays(net, out, feeder.n_branch, keys)
            flows["loading"][:, self._open] = np.nan  # both ends open: no loading
            losses = (flows["p_from"] + flows["p_to"]).sum(axis=1)
            src = out[ComponentType.source]
            chunk = _Chunk(vm, va, flows, src["p"] * 1e-3, src["q"] * 1e-3, losses)
            del out, node, src, vm, va, flows  # release power-grid-model buffers
            sink.add(sl, chunk)
            del chunk
        result = sink.result(self._names, time)
        if check_balance:
            check_energy_balance(feeder, injections, result, chunk_size=chunk_size)
        return result

    def screen(self, p_kw: FloatArray, q_kvar: FloatArray, *, threads: int = 0) -> Screening:
        """What-if scenarios given as whole injections: row ``k`` of ``p_kw``/``q_kvar``
        (scenario × bus, kW / kvar net load) is scenario ``k``. A scenario that does not
        converge is flagged in ``converged``, never raised."""
        p = np.atleast_2d(np.asarray(p_kw, dtype=np.float64))
        q = np.atleast_2d(np.asarray(q_kvar, dtype=np.float64))
        if p.shape != q.shape or p.shape[1] != self.feeder.n_bus:
            raise InvalidInputError(
                f"screen: p_kw {p.shape} and q_kvar {q.shape} must both be "
                f"(scenarios, {self.feeder.n_bus})"
            )
        update: dict[Any, Any] = {
            ComponentType.sym_load: {
                "id": np.broadcast_to(self._net.load_ids, p.shape),
                "p_specified": p * 1e3,
                "q_specified": q * 1e3,
            }
        }
        return self._screening(update, threads)

    def screen_changes(
        self, bus: IntArray, p_kw: FloatArray, q_kvar: FloatArray, *, threads: int = 0
    ) -> Screening:
        """What-if scenarios that each change one bus: scenario ``k`` sets the net load of
        bus ``bus[k]`` (position) to ``p_kw[k]``, ``q_kvar[k]`` (kW, kvar); every other bus
        keeps the base injections of this :class:`PowerFlow`. A sparse update: the cost
        does not grow with the number of buses that stay unchanged."""
        b = np.asarray(bus, dtype=np.int64).ravel()
        p = np.asarray(p_kw, dtype=np.float64).ravel()
        q = np.asarray(q_kvar, dtype=np.float64).ravel()
        if not (b.size == p.size == q.size):
            raise InvalidInputError(
                f"screen_changes: {b.size} buses, {p.size} p_kw, {q.size} q_kvar values"
            )
        if b.size and (b.min() < 0 or b.max() >= self.feeder.n_bus):
            raise InvalidInputError(
                f"screen_changes: bus positions outside 0..{self.feeder.n_bus - 1}"
            )
        update: dict[Any, Any] = {
            ComponentType.sym_load: {
                "data": {
                    "id": self._net.load_ids[b],
                    "p_specified": p * 1e3,
                    "q_specified": q * 1e3,
                },
                "indptr": np.arange(b.size + 1, dtype=np.int64),
            }
        }
        return self._screening(update, threads)

    @property
    def base(self) -> Injections:
        """The one-step base injections (kW, kvar) the scenarios of :meth:`screen_changes`
        start from."""
        return Injections(self._p0[None, :], self._q0[None, :])

    def _screening(self, update: dict[Any, Any], threads: int) -> Screening:
        out, failed = calculate(self._net, update, threads=threads, continue_on_error=True)
        vm = np.asarray(out[ComponentType.node]["u_pu"], dtype=np.float64)
        vm[:, self._dead] = np.nan
        loading = branch_arrays(self._net, out, self.feeder.n_branch)["loading"]
        loading[:, self._open] = np.nan
        src_p = np.asarray(out[ComponentType.source]["p"], dtype=np.float64) * 1e-3
        return Screening(vm, loading, src_p, ~failed)


# -- one-call convenience -----------------------------------------------------------------
@overload
def run_powerflow(
    feeder: Feeder,
    injections: Injections,
    *,
    threads: int = ...,
    chunk_size: int = ...,
    check_balance: bool = ...,
    keep: Literal["full"] = ...,
    limits: None = ...,
) -> PowerFlowResult: ...


@overload
def run_powerflow(
    feeder: Feeder,
    injections: Injections,
    *,
    threads: int = ...,
    chunk_size: int = ...,
    check_balance: bool = ...,
    keep: Literal["summary"],
    limits: Limits,
) -> PowerFlowSummary: ...


def run_powerflow(
    feeder: Feeder,
    injections: Injections,
    *,
    threads: int = 0,
    chunk_size: int = 4096,
    check_balance: bool = True,
    keep: Keep = "full",
    limits: Limits | None = None,
) -> PowerFlowResult | PowerFlowSummary:
    """``PowerFlow(feeder).run(injections, ...)`` in one call (see :meth:`PowerFlow.run`);
    builds the power-grid-model model every call, so for repeated calls on one feeder keep
    a :class:`PowerFlow`."""
    pf = PowerFlow(feeder)
    if keep == "summary":
        if limits is None:
            raise InvalidInputError("keep='summary' checks limits: pass limits=Limits(...)")
        return pf.run(
            injections,
            keep="summary",
            limits=limits,
            threads=threads,
            chunk_size=chunk_size,
            check_balance=check_balance,
        )
    if keep != "full":
        raise InvalidInputError(f"keep must be 'full' or 'summary', got {keep!r}")
    if limits is not None:
        raise InvalidInputError(
            "limits apply to keep='summary' only; on a full result call check_limits"
        )
    return pf.run(injections, threads=threads, chunk_size=chunk_size, check_balance=check_balance)


def check_energy_balance(
    feeder: Feeder,
    injections: Injections,
    result: PowerFlowResult | PowerFlowSummary,
    rtol: float = 1e-6,
    chunk_size: int = 4096,
) -> None:
    """Raise BalanceError unless, every step, substation import = net load at energised
    buses + branch losses (kW), within ``rtol`` of the gross flow plus 1 W. Reads the
    injections ``chunk_size`` steps at a time."""
    live = feeder.topology.energized
    p = injections.p_kw
    net_load, gross = np.empty(p.shape[0]), np.empty(p.shape[0])
    for start in range(0, p.shape[0], chunk_size):  # bounded copies of the injections
        sl = slice(start, start + chunk_size)
        p_live = p[sl, live]
        net_load[sl] = p_live.sum(axis=1)
        gross[sl] = np.abs(p_live).sum(axis=1)
    gross += np.abs(result.losses_kw)
    mismatch = result.substation_p_kw - net_load - result.losses_kw
    tol = rtol * gross + 1e-3
    bad = np.flatnonzero(np.abs(mismatch) > tol)
    if bad.size:
        i = int(bad[0])
        raise BalanceError(
            f"feeder {feeder.name!r}, step {i}: substation import {result.substation_p_kw[i]:.6f} "
            f"kW ≠ net load {net_load[i]:.6f} kW + losses {result.losses_kw[i]:.6f} kW "
            f"(mismatch {mismatch[i]:.3e} kW, {bad.size} step(s) affected)"
        )
