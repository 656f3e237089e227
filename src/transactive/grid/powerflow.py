"""AC power flow time series with power-grid-model batch calculations.

The :class:`Feeder` tables are converted to a power-grid-model input dataset (nodes, lines,
links, transformers, sources, one constant-power ``sym_load`` per bus that carries a
non-zero injection) and every time step is one scenario of a batch calculation. Units are
converted at this edge: the platform speaks kW/kvar, power-grid-model W/var/VA/V.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np
import pandas as pd
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
    TransactiveError,
    UnsupportedComponentError,
)
from transactive.grid.model import Feeder, Injections

if TYPE_CHECKING:
    from transactive.grid.limits import Limits

__all__ = [
    "Extremes",
    "Keep",
    "PowerFlowResult",
    "PowerFlowSummary",
    "StepStats",
    "SummaryOnlyError",
    "run_powerflow",
]

Keep = Literal["full", "summary"]

# Source short-circuit power (VA): large enough that the source behaves as an ideal
# voltage source like pandapower's ext_grid (drop across it < 1e-9 pu on these feeders).
SOURCE_SK_VA = 1e15
_BRANCH_ATTRS: list[str] = ["p_from", "q_from", "p_to", "q_to", "i_from", "i_to"]


class SummaryOnlyError(TransactiveError, AttributeError):
    """A time × element array asked of a result computed with ``keep="summary"``."""


def _arg_extreme(x: np.ndarray, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring min (or max) of ``x`` along ``axis`` and the position of its first
    occurrence; where a slice is all NaN the value is ±inf (the fill) and the position −1."""
    nan = np.isnan(x)
    filled = np.where(nan, -np.inf if largest else np.inf, x)
    pos = np.argmax(filled, axis=axis) if largest else np.argmin(filled, axis=axis)
    value = np.take_along_axis(filled, np.expand_dims(pos, axis), axis).squeeze(axis)
    return value, np.where(nan.all(axis=axis), -1, pos)


def _names_at(names: Sequence[str], pos: np.ndarray) -> np.ndarray:
    """Element names at positions ``pos`` (None where ``pos`` is −1)."""
    return np.asarray([*names, None], dtype=object)[pos]


def _time_at(time: pd.Index, step: np.ndarray) -> pd.Index:
    """Time stamps at step positions ``step`` (missing where ``step`` is −1)."""
    at = time[np.maximum(step, 0)]
    if at.dtype.kind in "iu":  # step numbers (no time stamps): nullable, not float
        at = at.astype("Int64")
    return at.where(step >= 0)


class _NotKept:
    """A full-result array that a summary result does not keep (raises on access)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> np.ndarray:
        raise _summary_only(self.name)


@dataclass(frozen=True)
class StepStats:
    """Per-step extremes: lowest / highest bus voltage (pu) and highest branch loading (%),
    each with the bus / branch position where it occurs (−1: none; loading −inf then)."""

    vm_min_pu: np.ndarray
    vm_min_bus: np.ndarray
    vm_max_pu: np.ndarray
    vm_max_bus: np.ndarray
    max_loading_percent: np.ndarray
    max_loading_branch: np.ndarray

    @classmethod
    def of(cls, vm_pu: np.ndarray, loading_percent: np.ndarray) -> StepStats:
        """Statistics of time × bus voltages (pu) and time × branch loadings (%)."""
        vmin, imin = _arg_extreme(vm_pu, 1, largest=False)
        vmax, imax = _arg_extreme(vm_pu, 1, largest=True)
        lmax, ilmax = _arg_extreme(loading_percent, 1, largest=True)
        return cls(
            np.where(imin < 0, np.nan, vmin),
            imin,
            np.where(imax < 0, np.nan, vmax),
            imax,
            lmax,
            ilmax,
        )

    @classmethod
    def concat(cls, parts: Sequence[StepStats]) -> StepStats:
        """Statistics of consecutive chunks of steps joined in order."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _STEP_FIELDS))


_STEP_FIELDS = list(StepStats.__dataclass_fields__)


@dataclass(frozen=True)
class Extremes:
    """Per-element extremes over the period: lowest / highest voltage per bus (pu, NaN if
    never energised) and highest loading per branch (%, NaN if never defined), each with
    the step (position in ``time``) of its first occurrence (−1 if none)."""

    vm_min_pu: np.ndarray
    vm_min_step: np.ndarray
    vm_max_pu: np.ndarray
    vm_max_step: np.ndarray
    max_loading_percent: np.ndarray
    max_loading_step: np.ndarray


class _ExtremesAccumulator:
    """Running per-element extremes over chunks of steps fed in time order."""

    def __init__(self, n_bus: int, n_branch: int) -> None:
        self.vmin = np.full(n_bus, np.inf)
        self.vmax = np.full(n_bus, -np.inf)
        self.lmax = np.full(n_branch, -np.inf)
        self.imin = np.full(n_bus, -1)
        self.imax = np.full(n_bus, -1)
        self.ilmax = np.full(n_branch, -1)

    def add(self, first_step: int, vm_pu: np.ndarray, loading_percent: np.ndarray) -> None:
        """Fold in a chunk (time × bus pu, time × branch %) starting at ``first_step``."""
        for best, ibest, x, largest in (
            (self.vmin, self.imin, vm_pu, False),
            (self.vmax, self.imax, vm_pu, True),
            (self.lmax, self.ilmax, loading_percent, True),
        ):
            value, pos = _arg_extreme(x, 0, largest)
            better = (pos >= 0) & ((value > best) if largest else (value < best))
            best[better] = value[better]  # strict: ties keep the earlier step
            ibest[better] = pos[better] + first_step

    def result(self) -> Extremes:
        """The extremes so far."""
        return Extremes(
            np.where(self.imin < 0, np.nan, self.vmin),
            self.imin.copy(),
            np.where(self.imax < 0, np.nan, self.vmax),
            self.imax.copy(),
            np.where(self.ilmax < 0, np.nan, self.lmax),
            self.ilmax.copy(),
        )


class _ResultViews(ABC):
    """Tables shared by full and summary results (needs the attributes below)."""

    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray

    @abstractmethod
    def step_stats(self) -> StepStats:
        """Per-step extremes: min/max voltage and max loading with where they occur."""

    @abstractmethod
    def extremes(self) -> Extremes:
        """Per-element extremes over the whole period."""

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return len(self.time)

    @property
    def substation_p_kw(self) -> np.ndarray:
        """Active power imported at the substation(s) per step (kW, negative = export)."""
        return np.asarray(self.source_p_kw.sum(axis=1))

    @property
    def substation_q_kvar(self) -> np.ndarray:
        """Reactive power imported at the substation(s) per step (kvar)."""
        return np.asarray(self.source_q_kvar.sum(axis=1))

    def summary(self) -> pd.DataFrame:
        """Per-step summary: substation import (kW, kvar), losses (kW), min/max voltage
        (pu), maximum branch loading (%, −inf if no branch has one) and the bus / branch
        name where each extreme occurs."""
        st = self.step_stats()
        return pd.DataFrame(
            {
                "substation_p_kw": self.substation_p_kw,
                "substation_q_kvar": self.substation_q_kvar,
                "losses_kw": self.losses_kw,
                "vm_min_pu": st.vm_min_pu,
                "vm_max_pu": st.vm_max_pu,
                "max_loading_percent": st.max_loading_percent,
                "vm_min_bus": _names_at(self.bus_names, st.vm_min_bus),
                "vm_max_bus": _names_at(self.bus_names, st.vm_max_bus),
                "max_loading_branch": _names_at(self.branch_names, st.max_loading_branch),
            },
            index=self.time,
        )

    def bus_extremes(self) -> pd.DataFrame:
        """Per bus (row = bus position): lowest and highest voltage over the period (pu)
        and when each first occurs."""
        ex = self.extremes()
        return pd.DataFrame(
            {
                "bus": np.asarray(self.bus_names, dtype=object),
                "vm_min_pu": ex.vm_min_pu,
                "vm_min_time": _time_at(self.time, ex.vm_min_step),
                "vm_max_pu": ex.vm_max_pu,
                "vm_max_time": _time_at(self.time, ex.vm_max_step),
            }
        )

    def branch_extremes(self) -> pd.DataFrame:
        """Per branch (row = branch position): highest loading over the period (%) and
        when it first occurs."""
        ex = self.extremes()
        return pd.DataFrame(
            {
                "branch": np.asarray(self.branch_names, dtype=object),
                "max_loading_percent": ex.max_loading_percent,
                "max_loading_time": _time_at(self.time, ex.max_loading_step),
            }
        )


@dataclass(frozen=True)
class PowerFlowResult(_ResultViews):
    """Time × element results of an AC power flow (kW, kvar, pu, %, degrees) —
    ``run_powerflow(..., keep="full")``.

    ``vm_pu``/``va_degree``: time × bus (NaN at buses not connected to a source);
    ``p_from_kw``, ``q_from_kvar``, ``p_to_kw``, ``q_to_kvar``: time × branch, power
    flowing *into* the branch at each end; ``loading_percent``: time × branch (current
    relative to rating; NaN for switches and for branches open at both ends);
    ``source_p_kw``/``source_q_kvar``: time ×
    source, power imported from the upstream grid (negative = export);
    ``losses_kw``: time, active losses in all branches."""

    feeder_name: str
    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_names: list[str]
    vm_pu: np.ndarray
    va_degree: np.ndarray
    p_from_kw: np.ndarray
    q_from_kvar: np.ndarray
    p_to_kw: np.ndarray
    q_to_kvar: np.ndarray
    loading_percent: np.ndarray
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray

    keep: ClassVar[Keep] = "full"

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return int(self.vm_pu.shape[0])

    def vm_frame(self) -> pd.DataFrame:
        """Bus voltages (pu) as a DataFrame, time × bus name."""
        return pd.DataFrame(self.vm_pu, index=self.time, columns=self.bus_names)

    def loading_frame(self) -> pd.DataFrame:
        """Branch loading (%) as a DataFrame, time × branch name."""
        return pd.DataFrame(self.loading_percent, index=self.time, columns=self.branch_names)

    def step_stats(self) -> StepStats:
        """Per-step voltage / loading extremes and where they occur."""
        return StepStats.of(self.vm_pu, self.loading_percent)

    def extremes(self) -> Extremes:
        """Per-element voltage / loading extremes over the period."""
        acc = _ExtremesAccumulator(len(self.bus_names), len(self.branch_names))
        acc.add(0, self.vm_pu, self.loading_percent)
        return acc.result()


def _summary_only(name: str) -> SummaryOnlyError:
    return SummaryOnlyError(
        f"{name} is not kept by run_powerflow(..., keep='summary'), which holds per-step "
        f"summaries, per-element extremes and limit violations only; run it with "
        f"keep='full' for time × element arrays"
    )


@dataclass(frozen=True)
class PowerFlowSummary(_ResultViews):
    """Lean AC power-flow result — ``run_powerflow(..., keep="summary")``.

    Holds only what is small: ``source_p_kw``/``source_q_kvar`` (time × source, kW/kvar
    imported), ``losses_kw`` (time), per-step voltage/loading extremes (``stats``),
    per-element extremes over the period (``element_extremes``) and, for ``limits``, the
    per-element ``violation_summary`` (one row per violated (element, kind): steps, hours,
    first/last/worst time, worst value and magnitude — the table
    :func:`~transactive.grid.limits.summarise_violations` makes of the full result's
    :func:`~transactive.grid.check_limits` rows). The time × element arrays (``vm_pu``,
    ``loading_percent``, …) and the per-step ``violations`` raise
    :class:`SummaryOnlyError`."""

    feeder_name: str
    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_names: list[str]
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray
    stats: StepStats
    element_extremes: Extremes
    violation_summary: pd.DataFrame
    limits: Limits

    keep: ClassVar[Keep] = "summary"

    def step_stats(self) -> StepStats:
        """Per-step voltage / loading extremes and where they occur."""
        return self.stats

    def extremes(self) -> Extremes:
        """Per-element voltage / loading extremes over the period."""
        return self.element_extremes

    @property
    def violations(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError (per-element: ``violation_summary``)."""
        raise SummaryOnlyError(
            "per-step violation rows are not kept by run_powerflow(..., keep='summary'): "
            "use violation_summary (one row per violated element and kind), or run it with "
            "keep='full' and call check_limits for per-step rows"
        )

    # Full-result arrays a summary does not keep: reading one raises SummaryOnlyError.
    vm_pu = _NotKept()
    va_degree = _NotKept()
    p_from_kw = _NotKept()
    q_from_kvar = _NotKept()
    p_to_kw = _NotKept()
    q_to_kvar = _NotKept()
    loading_percent = _NotKept()

    def vm_frame(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError."""
        raise _summary_only("vm_frame()")

    def loading_frame(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError."""
        raise _summary_only("loading_frame()")


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


def calculate(
    net: PgmNetwork,
    update: dict[Any, Any],
    threads: int = 0,
    continue_on_error: bool = False,
    attrs: dict[ComponentType, list[str] | set[str] | Any] | None = None,
) -> tuple[dict[Any, Any], np.ndarray]:
    """Run one power-grid-model batch (output attributes ``attrs``, default
    :data:`OUTPUT_ATTRS`); returns (output, failed-scenario mask)."""
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

    def result(self, feeder: Feeder, time: pd.Index) -> PowerFlowResult:
        return PowerFlowResult(
            feeder_name=feeder.name,
            time=time,
            bus_names=feeder.bus_names,
            branch_names=feeder.branch_names,
            source_names=[str(x) for x in feeder.sources["name"]],
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

    def __init__(self, feeder: Feeder, time: pd.Index, limits: Limits) -> None:
        from transactive.grid.limits import ViolationAccumulator

        self.feeder, self.time, self.limits = feeder, time, limits
        self.source_names = [str(x) for x in feeder.sources["name"]]
        self.extremes = _ExtremesAccumulator(feeder.n_bus, feeder.n_branch)
        self.violations = ViolationAccumulator(
            feeder, limits, feeder.bus_names, feeder.branch_names, self.source_names
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

    def result(self, feeder: Feeder, time: pd.Index) -> PowerFlowSummary:
        return PowerFlowSummary(
            feeder_name=feeder.name,
            time=time,
            bus_names=feeder.bus_names,
            branch_names=feeder.branch_names,
            source_names=self.source_names,
            source_p_kw=np.concatenate(self.sp),
            source_q_kvar=np.concatenate(self.sq),
            losses_kw=np.concatenate(self.losses),
            stats=StepStats.concat(self.stats),
            element_extremes=self.extremes.result(),
            violation_summary=self.violations.result(time),
            limits=self.limits,
        )


# -- public entry point -------------------------------------------------------------------
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
    limits: Limits | None = ...,
) -> PowerFlowSummary: ...


@overload
def run_powerflow(
    feeder: Feeder,
    injections: Injections,
    *,
    threads: int = ...,
    chunk_size: int = ...,
    check_balance: bool = ...,
    keep: Keep,
    limits: Limits | None = ...,
) -> PowerFlowResult | PowerFlowSummary: ...


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
    """AC power flow for every time step of ``injections`` (per-bus net load, kW/kvar,
    + consumption, − generation, shape time × bus) on ``feeder``.

    Runs power-grid-model batch calculations (Newton-Raphson, ``threads`` worker threads,
    0 = all cores) in chunks of ``chunk_size`` steps. ``keep="full"`` returns every
    time × element array (:class:`PowerFlowResult`, ~7 × 8 bytes × steps × elements);
    ``keep="summary"`` reduces each chunk as it is computed and returns a
    :class:`PowerFlowSummary` (per-step summaries, per-element extremes and the per-element
    ``violation_summary`` of ``limits``, default :class:`~transactive.grid.Limits`), so
    memory is bounded by the chunk plus a few values per step and per element, however
    many violations there are. Raises PowerFlowError if a step does not
    converge and BalanceError if substation import ≠ load − generation + losses.
    """
    if injections.p_kw.shape[1] != feeder.n_bus:
        raise InvalidInputError(
            f"injections have {injections.p_kw.shape[1]} bus columns, feeder {feeder.name!r} "
            f"has {feeder.n_bus} buses"
        )
    if chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be ≥ 1, got {chunk_size}")
    if keep not in ("full", "summary"):
        raise InvalidInputError(f"keep must be 'full' or 'summary', got {keep!r}")
    if keep == "full" and limits is not None:
        raise InvalidInputError(
            "limits apply to keep='summary' only; on a full result call check_limits"
        )
    p, q = injections.p_kw, injections.q_kvar
    load_buses = np.flatnonzero(np.any(p, axis=0) | np.any(q, axis=0))  # no p != 0 copy
    if load_buses.size == 0:  # keep one (zero) load so every step is a batch scenario
        load_buses = feeder.source_buses[:1]
    net = build_network(feeder, load_buses, p[0, load_buses], q[0, load_buses])
    steps = injections.n_step
    time = injections.time if injections.time is not None else pd.RangeIndex(steps)
    sink: _FullSink | _SummarySink
    if keep == "full":
        sink = _FullSink(steps, feeder.n_bus, feeder.n_branch, len(feeder.sources))
        attrs, keys = OUTPUT_ATTRS, _FLOW_KEYS
    else:
        from transactive.grid.limits import Limits

        sink = _SummarySink(feeder, time, limits if limits is not None else Limits())
        attrs, keys = LEAN_OUTPUT_ATTRS, ("p_from", "p_to")
    dead = ~feeder.topology.energized
    out_of_operation = ~(feeder.branches["from_closed"] | feeder.branches["to_closed"]).to_numpy()
    for start in range(0, steps, chunk_size):  # chunks of thousands of steps, not per step
        sl = slice(start, min(start + chunk_size, steps))
        update: dict[Any, Any] = {
            ComponentType.sym_load: {
                "id": np.broadcast_to(net.load_ids, (sl.stop - sl.start, load_buses.size)),
                "p_specified": p[sl, load_buses] * 1e3,
                "q_specified": q[sl, load_buses] * 1e3,
            }
        }
        out, _ = calculate(net, update, threads=threads, attrs=attrs)
        del update
        node = out[ComponentType.node]
        vm = node["u_pu"]
        vm[:, dead] = np.nan
        va = None
        if "u_angle" in node:
            va = np.rad2deg(node["u_angle"])
            va[:, dead] = np.nan
        flows = branch_arrays(net, out, feeder.n_branch, keys)
        flows["loading"][:, out_of_operation] = np.nan  # both ends open: no loading to report
        losses = (flows["p_from"] + flows["p_to"]).sum(axis=1)
        src = out[ComponentType.source]
        chunk = _Chunk(vm, va, flows, src["p"] * 1e-3, src["q"] * 1e-3, losses)
        del out, node, src, vm, va, flows  # release power-grid-model buffers with the chunk
        sink.add(sl, chunk)
        del chunk
    result = sink.result(feeder, time)
    if check_balance:
        check_energy_balance(feeder, injections, result, chunk_size=chunk_size)
    return result


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
