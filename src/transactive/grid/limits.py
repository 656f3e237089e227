"""Limit checks on power-flow results: voltage band, thermal loading, reverse power flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.grid._steps import time_at
from transactive.grid.model import Feeder

__all__ = [
    "VIOLATION_COLUMNS",
    "VIOLATION_SUMMARY_COLUMNS",
    "FlowArrays",
    "Limits",
    "ViolationAccumulator",
    "check_limits",
    "excess",
    "finish_violations",
    "step_hours",
    "summarise_violations",
    "violation_rows",
]

VIOLATION_COLUMNS = ["time", "element", "element_type", "kind", "value", "limit", "magnitude"]
VIOLATION_SUMMARY_COLUMNS = [
    "element",
    "element_type",
    "kind",
    "n_steps",
    "hours",
    "first_time",
    "last_time",
    "worst_time",
    "worst_step",
    "value",
    "limit",
    "magnitude",
]


@dataclass(frozen=True)
class Limits:
    """Operating limits. Voltages in pu (default ANSI C84.1 range A, 0.95–1.05 pu),
    loadings in %, reverse flow in kW: the substation may export at most
    ``max_reverse_flow_kw`` (None disables the check). Source (slack) buses are not
    checked for voltage unless ``check_source_voltage`` is set."""

    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    max_line_loading_percent: float = 100.0
    max_trafo_loading_percent: float = 100.0
    max_reverse_flow_kw: float | None = 0.0
    check_source_voltage: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.v_min_pu < self.v_max_pu:
            raise InvalidInputError(
                f"voltage band must satisfy 0 < v_min_pu < v_max_pu, got "
                f"{self.v_min_pu}..{self.v_max_pu}"
            )
        for name in ("max_line_loading_percent", "max_trafo_loading_percent"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_reverse_flow_kw is not None and self.max_reverse_flow_kw < 0:
            raise InvalidInputError(
                f"max_reverse_flow_kw must be ≥ 0 or None, got {self.max_reverse_flow_kw}"
            )


@dataclass(frozen=True)
class Excess:
    """How far each monitored quantity is beyond its limit (≥ 0; 0 = within limits).

    ``undervoltage``/``overvoltage``: time × bus (pu), ``line``/``trafo``: time × branch (%),
    ``reverse``: time × source (kW)."""

    undervoltage: np.ndarray
    overvoltage: np.ndarray
    line: np.ndarray
    trafo: np.ndarray
    reverse: np.ndarray


def excess(
    feeder: Feeder,
    vm_pu: np.ndarray,
    loading_percent: np.ndarray,
    source_p_kw: np.ndarray,
    limits: Limits,
) -> Excess:
    """Vectorised limit excess for arrays shaped (scenario, element)."""
    monitored = feeder.topology.energized.copy()
    if not limits.check_source_voltage:
        monitored[feeder.source_buses] = False
    vm = np.where(monitored, vm_pu, np.nan)
    with np.errstate(invalid="ignore"):
        under = np.nan_to_num(np.maximum(limits.v_min_pu - vm, 0.0))
        over = np.nan_to_num(np.maximum(vm - limits.v_max_pu, 0.0))
        kind = feeder.branches["kind"].to_numpy()
        load = np.nan_to_num(loading_percent)
        line = np.where(kind == "line", np.maximum(load - limits.max_line_loading_percent, 0), 0)
        trafo = np.where(kind == "trafo", np.maximum(load - limits.max_trafo_loading_percent, 0), 0)
    if limits.max_reverse_flow_kw is None:
        reverse = np.zeros_like(source_p_kw)
    else:
        reverse = np.maximum(-source_p_kw - limits.max_reverse_flow_kw, 0.0)
    return Excess(under, over, line, trafo, reverse)


class FlowArrays(Protocol):
    """What :func:`check_limits` reads of a power-flow result (a
    :class:`~transactive.grid.results.PowerFlowResult`): ``time``, ``vm_pu`` time × bus (pu),
    ``loading_percent`` time × branch (%), ``source_p_kw`` time × source (kW imported) and
    the element names. ``keep`` is ``"full"`` for a result with per-step arrays."""

    @property
    def keep(self) -> str: ...
    @property
    def time(self) -> pd.Index: ...
    @property
    def vm_pu(self) -> np.ndarray: ...
    @property
    def loading_percent(self) -> np.ndarray: ...
    @property
    def source_p_kw(self) -> np.ndarray: ...
    @property
    def bus_names(self) -> list[str]: ...
    @property
    def branch_names(self) -> list[str]: ...
    @property
    def source_names(self) -> list[str]: ...


def check_limits(feeder: Feeder, result: FlowArrays, limits: Limits) -> pd.DataFrame:
    """Violations of ``limits`` as a tidy DataFrame, one row per (time step, element, kind),
    with columns ``time``, ``element`` (name), ``element_type`` ('bus' | 'line' | 'trafo' |
    'source'), ``kind`` ('undervoltage', 'overvoltage', 'line_overload', 'trafo_overload',
    'reverse_flow'), ``value`` (pu, % or exported kW), ``limit`` and ``magnitude`` (how
    far beyond the limit, same unit).

    Needs a ``keep="full"`` result: a ``keep="summary"`` result holds per-element
    summaries only (``result.violation_summary``) and raises InvalidInputError."""
    if result.keep != "full":
        raise InvalidInputError(
            "check_limits needs per-step arrays, but this is a keep='summary' power-flow "
            "result: it holds per-element violation summaries for the limits given to "
            f"run_powerflow ({getattr(result, 'limits', None)}) in result.violation_summary; "
            "run it with keep='full' for per-step violation rows"
        )
    rows = violation_rows(
        feeder,
        result.time,
        result.vm_pu,
        result.loading_percent,
        result.source_p_kw,
        limits,
        result.bus_names,
        result.branch_names,
        result.source_names,
    )
    return finish_violations([rows])


@dataclass(frozen=True)
class _Part:
    """One violation kind of a chunk: ``magnitude`` (> 0 where violated) and ``value``,
    both time × element, for elements ``names`` of type ``element_type``."""

    magnitude: np.ndarray
    value: np.ndarray
    names: np.ndarray
    element_type: str
    kind: str
    limit: float


def _violation_parts(
    feeder: Feeder,
    vm_pu: np.ndarray,
    loading_percent: np.ndarray,
    source_p_kw: np.ndarray,
    limits: Limits,
    bus_names: Sequence[str],
    branch_names: Sequence[str],
    source_names: Sequence[str],
) -> list[_Part]:
    """The violation rules, applied to one chunk of steps: the only place that decides
    what is a violation (used by :func:`violation_rows` and :class:`ViolationAccumulator`)."""
    ex = excess(feeder, vm_pu, loading_percent, source_p_kw, limits)
    bus = np.asarray(bus_names, dtype=object)
    br = np.asarray(branch_names, dtype=object)
    src = np.asarray(source_names, dtype=object)
    rev_limit = limits.max_reverse_flow_kw if limits.max_reverse_flow_kw is not None else np.nan
    return [
        _Part(ex.undervoltage, vm_pu, bus, "bus", "undervoltage", limits.v_min_pu),
        _Part(ex.overvoltage, vm_pu, bus, "bus", "overvoltage", limits.v_max_pu),
        _Part(
            ex.line, loading_percent, br, "line", "line_overload",
            limits.max_line_loading_percent,
        ),
        _Part(
            ex.trafo, loading_percent, br, "trafo", "trafo_overload",
            limits.max_trafo_loading_percent,
        ),
        _Part(ex.reverse, -source_p_kw, src, "source", "reverse_flow", float(rev_limit)),
    ]  # fmt: skip


def violation_rows(
    feeder: Feeder,
    time: pd.Index,
    vm_pu: np.ndarray,
    loading_percent: np.ndarray,
    source_p_kw: np.ndarray,
    limits: Limits,
    bus_names: Sequence[str],
    branch_names: Sequence[str],
    source_names: Sequence[str],
) -> pd.DataFrame:
    """Unsorted violation rows (columns as :func:`check_limits`) of one chunk of steps:
    ``time`` (steps), ``vm_pu`` time × bus (pu), ``loading_percent`` time × branch (%),
    ``source_p_kw`` time × source (kW imported). Join chunks with :func:`finish_violations`."""
    parts = _violation_parts(
        feeder, vm_pu, loading_percent, source_p_kw, limits,
        bus_names, branch_names, source_names,
    )  # fmt: skip
    frames = []
    for p in parts:
        hit = p.magnitude > 0
        if not hit.any():  # the common case in a simulation step: no frame to build
            continue
        t_idx, e_idx = np.nonzero(hit)
        frames.append(
            pd.DataFrame(
                {
                    "time": time[t_idx],
                    "element": p.names[e_idx],
                    "element_type": p.element_type,
                    "kind": p.kind,
                    "value": p.value[t_idx, e_idx],
                    "limit": float(p.limit),
                    "magnitude": p.magnitude[t_idx, e_idx],
                }
            )
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_TYPES.items()})
    return pd.concat(frames, ignore_index=True)


def finish_violations(chunks: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join :func:`violation_rows` of consecutive chunks into the :func:`check_limits`
    table, sorted by time, kind and element."""
    full = [c for c in chunks if not c.empty]
    if not full:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_TYPES.items()})
    out = full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)
    return out.sort_values(["time", "kind", "element"], kind="stable", ignore_index=True)


_EMPTY_TYPES = {
    "time": "object",
    "element": "object",
    "element_type": "object",
    "kind": "object",
    "value": "float64",
    "limit": "float64",
    "magnitude": "float64",
}


# -- per-element summaries ----------------------------------------------------------------
def step_hours(time: pd.Index) -> float:
    """Length of one step (h) if ``time`` is a DatetimeIndex with a constant positive step;
    NaN otherwise (numbered steps without time stamps, a single step, irregular steps)."""
    if not isinstance(time, pd.DatetimeIndex) or len(time) < 2:
        return float("nan")
    d = time[1:] - time[:-1]
    if d[0] <= pd.Timedelta(0) or not (d == d[0]).all():
        return float("nan")
    return float(d[0] / pd.Timedelta(hours=1))


def _summary_frame(
    time: pd.Index,
    element: np.ndarray,
    element_type: np.ndarray,
    kind: np.ndarray,
    n_steps: np.ndarray,
    first_step: np.ndarray,
    last_step: np.ndarray,
    worst_step: np.ndarray,
    value: np.ndarray,
    limit: np.ndarray,
    magnitude: np.ndarray,
) -> pd.DataFrame:
    """The per-element violation table (see :func:`summarise_violations`) from per-row
    arrays; steps are positions in ``time``. Sorted by kind and element."""
    n = np.asarray(n_steps, dtype=np.int64)
    out = pd.DataFrame(
        {
            "element": np.asarray(element, dtype=object),
            "element_type": np.asarray(element_type, dtype=object),
            "kind": np.asarray(kind, dtype=object),
            "n_steps": n,
            "hours": n * step_hours(time),
            "first_time": time_at(time, np.asarray(first_step, dtype=np.int64)),
            "last_time": time_at(time, np.asarray(last_step, dtype=np.int64)),
            "worst_time": time_at(time, np.asarray(worst_step, dtype=np.int64)),
            "worst_step": np.asarray(worst_step, dtype=np.int64),
            "value": np.asarray(value, dtype=np.float64),
            "limit": np.asarray(limit, dtype=np.float64),
            "magnitude": np.asarray(magnitude, dtype=np.float64),
        }
    )
    return out.sort_values(["kind", "element"], kind="stable", ignore_index=True)


def summarise_violations(violations: pd.DataFrame, time: pd.Index) -> pd.DataFrame:
    """Per-element summary of the :func:`check_limits` rows of a full result whose steps
    are ``time`` (``result.time``): the same table ``run_powerflow(..., keep="summary")``
    keeps as ``violation_summary``.

    One row per (element, kind) that is ever violated, sorted by kind and element:
    ``element``, ``element_type``, ``kind``; ``n_steps`` (violating steps); ``hours``
    (``n_steps`` × step length in h, NaN unless ``time`` is regular, see
    :func:`step_hours`); ``first_time``/``last_time`` (first / last violating step's time
    stamp, or step number when there are no time stamps); ``worst_time``/``worst_step``
    (time and position of the largest magnitude, the earliest on ties); ``value`` and
    ``limit`` at the worst step and its ``magnitude`` (pu, % or kW)."""
    missing = set(VIOLATION_COLUMNS) - set(violations.columns)
    if missing:
        raise InvalidInputError(
            f"violations lack column(s) {sorted(missing)}: pass the check_limits table"
        )
    step = time.get_indexer(pd.Index(violations["time"]))
    if (step < 0).any():
        bad = violations["time"].iloc[int(np.flatnonzero(step < 0)[0])]
        raise InvalidInputError(f"violation time {bad!r} is not a step of the given time index")
    df = violations.assign(_step=step).sort_values("_step", kind="stable", ignore_index=True)
    g = df.groupby(["kind", "element", "element_type"], sort=False)
    worst = df.loc[g["magnitude"].idxmax().to_numpy()]
    return _summary_frame(
        time,
        worst["element"].to_numpy(),
        worst["element_type"].to_numpy(),
        worst["kind"].to_numpy(),
        g.size().to_numpy(),
        g["_step"].min().to_numpy(),
        g["_step"].max().to_numpy(),
        worst["_step"].to_numpy(),
        worst["value"].to_numpy(),
        worst["limit"].to_numpy(),
        worst["magnitude"].to_numpy(),
    )


class _KindTally:
    """Running statistics of one violation kind, one entry per element."""

    def __init__(self, part: _Part) -> None:
        n = part.names.size
        self.names, self.element_type, self.kind = part.names, part.element_type, part.kind
        self.limit = float(part.limit)
        self.count = np.zeros(n, dtype=np.int64)
        self.first = np.full(n, -1, dtype=np.int64)
        self.last = np.full(n, -1, dtype=np.int64)
        self.worst = np.zeros(n)  # magnitude; > 0 once violated
        self.worst_step = np.full(n, -1, dtype=np.int64)
        self.worst_value = np.full(n, np.nan)

    def add(self, first_step: int, part: _Part) -> None:
        """Fold in a chunk whose first row is step ``first_step`` (vectorised over it)."""
        mask = part.magnitude > 0
        n = mask.sum(axis=0)
        hit = n > 0
        new = hit & (self.first < 0)
        self.first[new] = np.argmax(mask, axis=0)[new] + first_step
        last = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)
        self.last[hit] = last[hit] + first_step
        self.count += n
        pos = np.argmax(part.magnitude, axis=0)[None]  # first step of the chunk maximum
        best = np.take_along_axis(part.magnitude, pos, 0)[0]
        better = best > self.worst  # strict: ties keep the earlier step
        self.worst[better] = best[better]
        self.worst_step[better] = pos[0][better] + first_step
        self.worst_value[better] = np.take_along_axis(part.value, pos, 0)[0][better]


class ViolationAccumulator:
    """Per (element, kind) violation statistics over chunks of steps fed in time order
    (``keep="summary"``): memory ∝ number of elements, independent of the steps."""

    def __init__(
        self,
        feeder: Feeder,
        limits: Limits,
        bus_names: Sequence[str],
        branch_names: Sequence[str],
        source_names: Sequence[str],
    ) -> None:
        self.feeder, self.limits = feeder, limits
        self.names = (bus_names, branch_names, source_names)
        self.tallies: list[_KindTally] = []

    def add(
        self,
        first_step: int,
        vm_pu: np.ndarray,
        loading_percent: np.ndarray,
        source_p_kw: np.ndarray,
    ) -> None:
        """Fold in a chunk: ``vm_pu`` time × bus (pu), ``loading_percent`` time × branch (%),
        ``source_p_kw`` time × source (kW imported), its first row being ``first_step``."""
        parts = _violation_parts(
            self.feeder, vm_pu, loading_percent, source_p_kw, self.limits, *self.names
        )
        if not self.tallies:
            self.tallies = [_KindTally(p) for p in parts]
        for tally, part in zip(self.tallies, parts, strict=True):
            tally.add(first_step, part)

    def result(self, time: pd.Index) -> pd.DataFrame:
        """The :func:`summarise_violations` table of the steps fed so far (``time``: all
        steps of the run)."""
        cols: list[list[np.ndarray]] = [[] for _ in range(10)]
        for t in self.tallies:
            hit = np.flatnonzero(t.count > 0)
            k = hit.size
            for col, arr in zip(
                cols,
                (
                    t.names[hit],
                    np.full(k, t.element_type, dtype=object),
                    np.full(k, t.kind, dtype=object),
                    t.count[hit],
                    t.first[hit],
                    t.last[hit],
                    t.worst_step[hit],
                    t.worst_value[hit],
                    np.full(k, t.limit),
                    t.worst[hit],
                ),
                strict=True,
            ):
                col.append(arr)
        empty = (np.empty(0, dtype=object),) * 3 + (np.empty(0, dtype=np.int64),) * 4
        arrays = [
            np.concatenate(c) if c else e
            for c, e in zip(cols, (*empty, *(np.empty(0),) * 3), strict=True)
        ]
        return _summary_frame(time, *arrays)
